"""A trace as Kubernetes objects: one ConfigMap (the program and, per node, the containers) and one
Job per node, rendered from the jinja2 templates in manifests/ (pure functions: no API calls).

Every value reaches YAML through the `yaml` filter, which writes it as JSON (a valid YAML flow
scalar or collection, with every quote, newline, `{{`, `&anchor` or `#` inside a string escaped
or quoted): the rendered text is then parsed back into dicts, and the API gets those as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional

from kubectl_pytrace import __version__, traceconfig
from kubectl_pytrace.errors import UsageError
from kubectl_pytrace.k8s.targets import Selection
from kubectl_pytrace.resources import resource_dir

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kubectl-pytrace"
TRACE_LABEL = "kubectl-pytrace/trace"  # the trace's name, on every object of the trace
NODE_ANNOTATION = "kubectl-pytrace/node"
TARGET_ANNOTATION = "kubectl-pytrace/target"  # what the user asked for: "deploy/web"
TARGET_NS_ANNOTATION = "kubectl-pytrace/target-namespace"
PODS_ANNOTATION = "kubectl-pytrace/pods"  # the pods traced on this node, JSON
VERSION_ANNOTATION = "kubectl-pytrace/version"
DEFAULT_NAMESPACE = "kubectl-pytrace"
DEFAULT_IMAGE_REPOSITORY = "ghcr.io/kubectl-pytrace/tracer"
GRACE_SECONDS = 30  # after SIGTERM: END and the maps; also added to --deadline for the Job's own deadline
START_ALLOWANCE = 300  # what activeDeadlineSeconds allows beyond --deadline for image pull and start-up
DEFAULT_TTL = 3600  # a finished trace's objects stay this long, so its logs can be read
# measured peak of the tracer (README, Performance): requests what it uses while tracing, and a
# limit with room for the BCC compiler process of a cold start
RESOURCES = {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def default_image() -> str:
    """$KUBECTL_PYTRACE_IMAGE, else the tracer image of this client's version."""
    return os.environ.get("KUBECTL_PYTRACE_IMAGE") or f"{DEFAULT_IMAGE_REPOSITORY}:v{__version__}"


def new_trace_name() -> str:
    return f"pytrace-{secrets.token_hex(4)}"


def check_name(name: str) -> str:
    if len(name) > 52 or not _NAME.match(name):  # room for "-<node hash>" in the Jobs' names
        raise UsageError(f"invalid trace name {name!r}",
                         hint="lower-case letters, digits and '-', starting and ending with a letter or "
                              "digit, at most 52 characters")
    return name


def job_name(trace: str, node: str) -> str:
    return f"{trace}-{hashlib.sha256(node.encode()).hexdigest()[:6]}"


@dataclass
class TraceRequest:
    name: str
    program: str
    filename: str
    selection: Selection
    params: List[str] = field(default_factory=list)
    namespace: str = DEFAULT_NAMESPACE  # where the Jobs and the ConfigMap live
    image: str = field(default_factory=default_image)
    pull_policy: str = "IfNotPresent"
    service_account: Optional[str] = None
    deadline: Optional[float] = None
    ttl: int = DEFAULT_TTL
    ns_pids: bool = False
    unsafe: bool = False
    patch: Optional[Any] = None  # a JSON merge patch applied to every Job (--patch)
    command: str = "trace"  # what the tracer pods run: a trace, or `ps` (traceconfig.COMMANDS)


# ---- rendering --------------------------------------------------------------------------------

def to_yaml(value: Any) -> str:
    """The `yaml` filter: a value as JSON, which YAML reads back as the same value."""
    return json.dumps(value, ensure_ascii=True, sort_keys=isinstance(value, dict))


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(resource_dir("manifests")),
                             undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["yaml"] = to_yaml
    return env


def render(template: str, **values: Any) -> Dict[str, Any]:
    """One object from a template of manifests/."""
    import yaml

    text = _environment().get_template(template).render(**values)
    obj = yaml.safe_load(text)
    if not isinstance(obj, dict):
        raise ValueError(f"{template} did not render to an object")
    return obj


def labels(trace: str) -> Dict[str, str]:
    return {MANAGED_BY: MANAGER, TRACE_LABEL: trace, "app.kubernetes.io/name": "kubectl-pytrace-tracer"}


def trace_config(req: TraceRequest) -> Dict[str, Any]:
    """What every tracer of the trace reads (tracer/node.py)."""
    return {"config_version": traceconfig.CONFIG_VERSION, "client_version": __version__, "name": req.name,
            "command": req.command,
            "filename": req.filename, "params": list(req.params), "deadline": req.deadline,
            "ns_pids": req.ns_pids, "unsafe": req.unsafe,
            "nodes": {node: [t.to_config() for t in ts] for node, ts in sorted(req.selection.nodes.items())}}


def configmap(req: TraceRequest) -> Dict[str, Any]:
    return render("configmap.yaml.j2", name=req.name, namespace=req.namespace, labels=labels(req.name),
                  annotations=_annotations(req), config=json.dumps(trace_config(req), indent=1),
                  program=req.program)  # keys: traceconfig.CONFIG_FILE, traceconfig.PROGRAM_FILE


def job(req: TraceRequest, node: str) -> Dict[str, Any]:
    pods = [t.to_config() for t in req.selection.nodes[node]]
    annotations = dict(_annotations(req), **{NODE_ANNOTATION: node, PODS_ANNOTATION: json.dumps(pods)})
    obj = render("job.yaml.j2", job_name=job_name(req.name, node), namespace=req.namespace,
                 labels=labels(req.name), annotations=annotations, node=node, image=req.image,
                 pull_policy=req.pull_policy, service_account=req.service_account, ttl=req.ttl,
                 active_deadline=(int(req.deadline) + GRACE_SECONDS + START_ALLOWANCE
                                  if req.deadline is not None else None),
                 grace=GRACE_SECONDS, resources=RESOURCES, configmap_name=req.name)
    if req.patch is not None:
        obj = merge_patch(obj, req.patch)
    return obj


def namespace(name: str) -> Dict[str, Any]:
    lbl = {MANAGED_BY: MANAGER}
    for mode in ("enforce", "audit", "warn"):
        lbl[f"pod-security.kubernetes.io/{mode}"] = "privileged"
    return render("namespace.yaml.j2", name=name, labels=lbl)


def objects(req: TraceRequest) -> List[Dict[str, Any]]:
    """The ConfigMap, then one Job per node."""
    return [configmap(req)] + [job(req, node) for node in sorted(req.selection.nodes)]


def _annotations(req: TraceRequest) -> Dict[str, str]:
    out = {TARGET_ANNOTATION: req.selection.description, VERSION_ANNOTATION: __version__}
    if req.selection.namespace:
        out[TARGET_NS_ANNOTATION] = req.selection.namespace
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merged key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out
