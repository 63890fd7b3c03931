"""The API server, through the official kubernetes client: its configuration loading (kubeconfig
with every auth kind, in-cluster service accounts) and its HTTP transport, with objects as plain
dicts (what the API sends and what manifests/ renders), not the client's generated models.

    kube = Kube.connect(kubeconfig=None, context=None, namespace=None, as_user=None, as_groups=())
    pod = kube.get(core("pods", "shop", "web-1"))
    kube.create(batch("jobs", "kubectl-pytrace"), job)
    for line in kube.stream(core("pods", ns, name, "log"), follow="true", timestamps="true"): ...

The client's package __init__ imports every API, model and pydantic (~0.5 s here); this module
imports only the transport and the config loader it uses, and only when a command talks to the API
(`--help`, completion of flags, `--dry-run=client` and `run --local` never do).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote, urlencode

from kubectl_pytrace.k8s.errors import api_error, connection_error

REQUEST_TIMEOUT = (10, 60)  # seconds to connect, to wait for an answer


def _import_client():
    """The client's HTTP transport (kubernetes.client.rest) and configuration, without the package
    __init__s: kubernetes.client's imports every API group and model, and its api_client module
    imports pydantic and the models (~0.35 s together, most of `kubectl pytrace get`'s time).
    kube_config imports ApiClient by name but calls it only to build clients we do not use: it
    gets a stand-in that imports the real one when called."""
    if "kubernetes" not in sys.modules:
        spec = importlib.util.find_spec("kubernetes")
        if spec is None or not spec.submodule_search_locations:
            from kubectl_pytrace.errors import UserError

            raise UserError("the kubernetes Python client is not installed", hint="pip install kubernetes")
        root = list(spec.submodule_search_locations)[0]
        for name in ("kubernetes", "kubernetes.client", "kubernetes.config", "kubernetes.utils"):
            pkg = types.ModuleType(name)
            pkg.__path__ = [os.path.join(root, *name.split(".")[1:])]  # type: ignore[attr-defined]
            sys.modules[name] = pkg
        from kubernetes.client.configuration import Configuration as _Configuration

        client = sys.modules["kubernetes.client"]
        client.Configuration = _Configuration  # type: ignore[attr-defined]
        client.ApiClient = _api_client  # type: ignore[attr-defined]
        _defer_oidc_imports()
    from kubernetes.client.configuration import Configuration
    from kubernetes.client.rest import RESTClientObject

    return RESTClientObject, Configuration


class _OnFirstUse(types.ModuleType):
    """A module kube_config imports at its top but uses only to refresh an OIDC token: the real one
    (with requests and ~90 regular expressions compiled at import: ~50 ms) is imported when an
    attribute is first read."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        real = _real_module(self.__name__)
        try:
            return getattr(real, attr)
        except AttributeError:
            return _real_module(f"{self.__name__}.{attr}")  # a subpackage (oauthlib.oauth2)


def _real_module(name: str) -> types.ModuleType:
    for n in [n for n, m in sys.modules.items() if isinstance(m, _OnFirstUse)]:
        del sys.modules[n]
    return importlib.import_module(name)


def _oauth2_session(*args, **kwargs):
    """requests_oauthlib.OAuth2Session, imported when kube_config builds one (an OIDC refresh)."""
    return _real_module("requests_oauthlib").OAuth2Session(*args, **kwargs)


def _defer_oidc_imports() -> None:
    names = ("oauthlib", "oauthlib.oauth2", "requests_oauthlib")
    if any(n in sys.modules for n in names) or any(importlib.util.find_spec(n.split(".")[0]) is None for n in names):
        return  # imported already, or missing: kube_config's own import says so
    for n in names:
        sys.modules[n] = _OnFirstUse(n)
    sys.modules["requests_oauthlib"].OAuth2Session = _oauth2_session  # type: ignore[attr-defined]


def _api_client(*args, **kwargs):
    from kubernetes.client.api_client import ApiClient

    return ApiClient(*args, **kwargs)


def core(resource: str, namespace: Optional[str] = None, name: Optional[str] = None, sub: str = "") -> str:
    """The path of a core/v1 resource: core("pods", "ns", "p", "log")."""
    return _path("/api/v1", resource, namespace, name, sub)


def batch(resource: str, namespace: Optional[str] = None, name: Optional[str] = None) -> str:
    return _path("/apis/batch/v1", resource, namespace, name)


def apps(resource: str, namespace: Optional[str] = None, name: Optional[str] = None) -> str:
    return _path("/apis/apps/v1", resource, namespace, name)


def _path(prefix: str, resource: str, namespace: Optional[str], name: Optional[str], sub: str = "") -> str:
    p = prefix
    if namespace is not None:
        p += "/namespaces/" + quote(namespace, safe="")
    p += "/" + resource
    if name is not None:
        p += "/" + quote(name, safe="")
    if sub:
        p += "/" + sub
    return p


@dataclass
class KubeOptions:
    """kubectl's connection flags."""

    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    namespace: Optional[str] = None
    as_user: Optional[str] = None
    as_groups: Sequence[str] = field(default_factory=tuple)
    request_timeout: Optional[float] = None


class Kube:
    def __init__(self, rest, cfg, headers: List[Tuple[str, str]], namespace: str, context: str):
        self.rest = rest  # the client's transport (urllib3 underneath)
        self.cfg = cfg  # the client's configuration: host, TLS, credentials (refreshed as they expire)
        self.headers = headers  # sent with every request: user agent, impersonation
        self.namespace = namespace  # -n, else the context's namespace, else "default"
        self.context = context  # for messages

    @classmethod
    def connect(cls, opts: KubeOptions) -> "Kube":
        RESTClientObject, Configuration = _import_client()
        cfg = Configuration()
        namespace, context = _load_config(cfg, opts)
        headers = [("User-Agent", f"kubectl-pytrace/{_version()}")]
        if opts.as_user:
            headers.append(("Impersonate-User", opts.as_user))
        headers += [("Impersonate-Group", g) for g in opts.as_groups]  # one header per group
        return cls(RESTClientObject(cfg), cfg, headers, opts.namespace or namespace or "default", context)

    # ---- requests -----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, query: Optional[Dict[str, Any]] = None,
                content_type: str = "application/json", stream: bool = False, timeout: Any = REQUEST_TIMEOUT):
        from urllib3 import HTTPHeaderDict

        headers = HTTPHeaderDict({"Accept": "application/json"})
        for k, v in self.headers:
            headers.add(k, v)
        for auth in self.cfg.auth_settings().values():  # a bearer token, read again when it expires
            if auth["in"] == "header" and auth["value"]:
                headers[auth["key"]] = auth["value"]
        if body is not None:
            headers["Content-Type"] = content_type
        url = self.cfg.host + path
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        if params:
            url += "?" + urlencode(params)
        try:
            resp = self.rest.request(method, url, headers=headers, body=body, _request_timeout=timeout)
        except Exception as e:  # urllib3's connection errors: the server cannot be reached
            raise connection_error(e, self.cfg.host) from None
        if not 200 <= resp.status <= 299:
            data = resp.read()
            raise api_error(resp.status, data, method, path)
        if stream:
            return resp.response
        data = resp.read()
        return json.loads(data) if data else {}

    def get(self, path: str, **query) -> Dict[str, Any]:
        return self.request("GET", path, query=query)

    def list(self, path: str, **query) -> List[Dict[str, Any]]:
        return self.request("GET", path, query=query).get("items", [])

    def create(self, path: str, body: Dict[str, Any], **query) -> Dict[str, Any]:
        return self.request("POST", path, body=body, query=query)

    def delete(self, path: str, **query) -> Dict[str, Any]:
        return self.request("DELETE", path, query=query)

    def patch(self, path: str, body: Any, kind: str = "merge") -> Dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=f"application/{kind}-patch+json")

    def stream(self, path: str, timeout: Any = (10, None), **query) -> Iterator[bytes]:
        """The body of a streaming GET (pod logs with follow), line by line, as bytes. The request
        is made now (errors are raised here); the lines are read as they are iterated."""
        resp = self.request("GET", path, query=query, stream=True, timeout=timeout)
        return _lines(resp)


def _lines(resp) -> Iterator[bytes]:
    """Complete lines only: a stream that breaks mid-line ends before that line (read again when
    the stream is opened again), never with half of it."""
    try:
        pending = b""
        for chunk in resp.stream(64 * 1024, decode_content=False):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from lines
    finally:
        resp.release_conn()


def _query_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def _version() -> str:
    from kubectl_pytrace import __version__

    return __version__


def _load_config(cfg, opts: KubeOptions):
    """Fills the client configuration as kubectl would; returns (context namespace, context name)."""
    from kubernetes.config import incluster_config, kube_config
    from kubernetes.config.config_exception import ConfigException

    path = opts.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    files = [p for p in path.split(os.pathsep) if p]
    if not opts.kubeconfig and not any(os.path.exists(os.path.expanduser(p)) for p in files) \
            and os.environ.get("KUBERNETES_SERVICE_HOST"):
        incluster_config.load_incluster_config(client_configuration=cfg)
        return _incluster_namespace(), "in-cluster"
    from kubectl_pytrace.k8s.errors import ConfigError

    try:
        contexts, active = kube_config.list_kube_config_contexts(config_file=path)
        name = opts.context or active["name"]
        chosen = next((c for c in contexts if c["name"] == name), None)
        if chosen is None:
            raise ConfigError(f"context {name!r} is not in {path}",
                              hint="kubectl config get-contexts lists the contexts")
        kube_config.load_kube_config(config_file=path, context=name, client_configuration=cfg,
                                     persist_config=False)
    except ConfigException as e:
        raise ConfigError(f"cannot use the kubeconfig {path}: {e}",
                          hint="point --kubeconfig or KUBECONFIG at a working kubeconfig") from None
    except OSError as e:
        raise ConfigError(f"cannot read the kubeconfig {path}: {e.strerror}",
                          hint="point --kubeconfig or KUBECONFIG at a working kubeconfig") from None
    return chosen.get("context", {}).get("namespace"), name


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return "default"
