"""API failures as the user should read them: what was refused, and what to do about it.

    404  NotFound     'pod "web-1" not found in namespace "shop"'
    403  Forbidden    'forbidden: you (as alice) cannot create jobs in namespace kubectl-pytrace'
                      + the roles of manifests/rbac.yaml
    401  Unauthorized the credentials of the context were refused
    409  Conflict     the object exists already
    other            the API server's own message
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from kubectl_pytrace.errors import ClusterError

RBAC_HINT = ("the roles kubectl-pytrace needs are in manifests/rbac.yaml (ClusterRole "
             "kubectl-pytrace-user, Role kubectl-pytrace-tracer): ask a cluster admin to bind them to you")


class ConfigError(ClusterError):
    """No usable kubeconfig or context."""


class NotFound(ClusterError):
    pass


class Forbidden(ClusterError):
    pass


class Unauthorized(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class Unreachable(ClusterError):
    pass


_FORBIDDEN = re.compile(r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
                        r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<ns>[^"]*)")?')


def _status(data: bytes) -> dict:
    try:
        status = json.loads(data)
        return status if isinstance(status, dict) else {}
    except ValueError:
        return {}


def api_error(code: int, data: bytes, method: str, path: str) -> ClusterError:
    status = _status(data)
    message = status.get("message") or data.decode("utf-8", "replace").strip() or f"HTTP {code}"
    details = status.get("details") or {}
    if code == 404:
        return NotFound(_not_found(details, message, path))
    if code == 403:
        return _forbidden(message)
    if code == 401:
        return Unauthorized("the API server refused the credentials of this context (401 Unauthorized)",
                            hint="log in again or check the user of your kubeconfig context")
    if code == 409:
        return Conflict(message)
    if code == 422:
        return ClusterError(f"the API server refused the object: {message}")
    return ClusterError(f"{method} {path}: {message} ({code})")


def _not_found(details: dict, message: str, path: str) -> str:
    kind, name = details.get("kind"), details.get("name")
    ns = re.search(r"/namespaces/([^/]+)/", path)
    if kind and name:
        singular = kind[:-1] if kind.endswith("s") else kind
        where = f" in namespace {ns.group(1)!r}" if ns else ""
        return f"{singular} {name!r} not found{where}"
    return message


def _forbidden(message: str) -> ClusterError:
    m = _FORBIDDEN.search(message)
    if not m:
        return Forbidden(f"forbidden: {message}", hint=RBAC_HINT)
    resource = m.group("resource")
    if m.group("group"):
        resource += "." + m.group("group")
    where = f" in namespace {m.group('ns')}" if m.group("ns") else " at the cluster scope"
    return Forbidden(f"forbidden: {m.group('user')} cannot {m.group('verb')} {resource}{where}", hint=RBAC_HINT)


def connection_error(e: Exception, host: Optional[str]) -> ClusterError:
    reason: Any = getattr(e, "reason", None) or e
    return Unreachable(f"cannot reach the API server at {host}: {reason}",
                       hint="check the cluster is up and your kubeconfig's server address (kubectl cluster-info)")
