"""What the user asked to trace -> what runs where: the nodes, and on each the containers.

    selection = select(kube, "deploy/web", namespace="shop", container=None, selector=None)
    selection.nodes   -> {"worker-1": [ContainerTarget(...), ...], "worker-2": [...]}

Targets, as kubectl spells them: `node/NAME`, `pod/NAME` (`-c CONTAINER` when the pod has
several), `deploy/NAME`, `statefulset/NAME` (`sts/`), `daemonset/NAME` (`ds/`), `job/NAME`, or
`-l SELECTOR` for pods by label. A node target traces the whole node; any other one the named
containers only, each scoped in the kernel by its container ID (from the pod's status). Pods must
be Running with the container ready: a pod target that is not is an error that says why; pods
of a workload that are not are left out with a warning (an error if none is left).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from kubectl_pytrace.errors import ClusterError, UsageError
from kubectl_pytrace.k8s.client import Kube, apps, batch, core
from kubectl_pytrace.k8s.errors import NotFound

KINDS = {
    "pod": "pod", "pods": "pod", "po": "pod",
    "node": "node", "nodes": "node", "no": "node",
    "deploy": "deployment", "deployment": "deployment", "deployments": "deployment",
    "statefulset": "statefulset", "statefulsets": "statefulset", "sts": "statefulset",
    "daemonset": "daemonset", "daemonsets": "daemonset", "ds": "daemonset",
    "job": "job", "jobs": "job",
}
WORKLOAD_PATHS = {"deployment": apps, "statefulset": apps, "daemonset": apps, "job": batch}
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"  # as kubectl honours it


@dataclass(frozen=True)
class ContainerTarget:
    namespace: str
    pod: str
    container: str
    container_id: str  # containerd://..., docker://..., cri-o://...
    node: str
    pod_uid: str = ""

    def label(self) -> str:
        return f"pod/{self.pod}/{self.container}"

    def to_config(self) -> Dict[str, str]:
        return {"namespace": self.namespace, "pod": self.pod, "container": self.container,
                "container_id": self.container_id, "pod_uid": self.pod_uid}


@dataclass
class Selection:
    description: str  # "pod/web-1", "deploy/web", "node/worker-1", "pods -l app=web"
    namespace: Optional[str]  # of the targets (None for a node)
    nodes: Dict[str, List[ContainerTarget]] = field(default_factory=dict)  # [] = the whole node
    warnings: List[str] = field(default_factory=list)

    @property
    def containers(self) -> List[ContainerTarget]:
        return [t for ts in self.nodes.values() for t in ts]


def parse_target(text: str) -> Tuple[str, str]:
    """("deployment", "web") from "deploy/web"."""
    kind, sep, name = text.partition("/")
    if not sep or not name or "/" in name:
        raise UsageError(f"target {text!r} is not TYPE/NAME",
                         hint="e.g. pod/web-7d9, deploy/web, statefulset/db, daemonset/agent, job/batch-1, "
                              "node/worker-1, or -l SELECTOR")
    if kind.lower() not in KINDS:
        raise UsageError(f"unknown target type {kind!r} in {text!r}",
                         hint="pod, deploy, statefulset (sts), daemonset (ds), job or node")
    return KINDS[kind.lower()], name


def select(kube: Kube, target: Optional[str], namespace: str, container: Optional[str] = None,
           selector: Optional[str] = None) -> Selection:
    if (target is None) == (selector is None):
        raise UsageError("give one target (TYPE/NAME) or a label selector (-l)")
    if selector is not None:
        pods = kube.list(core("pods", namespace), labelSelector=selector)
        return _from_pods(f"pods -l {selector}", namespace, pods, container, f"no pod in namespace {namespace} "
                          f"matches {selector!r}")
    kind, name = parse_target(target)  # type: ignore[arg-type]
    if kind == "node":
        if container is not None:
            raise UsageError("-c/--container goes with pod targets, not with a node")
        return _node(kube, name)
    if kind == "pod":
        pod = kube.get(core("pods", namespace, name))
        s = Selection(f"pod/{name}", namespace)
        t = _container_of(pod, container, strict=True)
        s.nodes[t.node] = [t]
        return s
    return _workload(kube, kind, name, namespace, container)


def _node(kube: Kube, name: str) -> Selection:
    node = kube.get(core("nodes", name=name))
    ready = next((c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        why = (ready or {}).get("message") or "it does not report Ready"
        raise ClusterError(f"node {name} is not Ready: {why}")
    return Selection(f"node/{name}", None, {name: []})


def _workload(kube: Kube, kind: str, name: str, namespace: str, container: Optional[str]) -> Selection:
    resource = kind + "s"
    try:
        obj = kube.get(WORKLOAD_PATHS[kind](resource, namespace, name))
    except NotFound:
        raise NotFound(f"{kind} {name!r} not found in namespace {namespace!r}") from None
    selector = label_selector(obj.get("spec", {}).get("selector") or {})
    if not selector:
        raise ClusterError(f"{kind} {name} has no pod selector")
    pods = kube.list(core("pods", namespace), labelSelector=selector)
    short = {"deployment": "deploy", "statefulset": "statefulset", "daemonset": "daemonset", "job": "job"}[kind]
    return _from_pods(f"{short}/{name}", namespace, pods, container,
                      f"{kind} {name} has no pods (selector {selector})")


def label_selector(sel: Dict[str, Any]) -> str:
    """A LabelSelector object as the query string the API takes."""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _from_pods(description: str, namespace: str, pods: List[Dict[str, Any]], container: Optional[str],
               none: str) -> Selection:
    s = Selection(description, namespace)
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if not pods:
        raise NotFound(none)
    problems = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        try:
            t = _container_of(pod, container, strict=False)
        except ClusterError as e:
            problems.append(e.message)
            continue
        s.nodes.setdefault(t.node, []).append(t)
    if not s.nodes:
        raise ClusterError(f"no pod of {description} can be traced: " + "; ".join(problems))
    s.warnings = [f"left out: {p}" for p in problems]
    return s


def _container_of(pod: Dict[str, Any], container: Optional[str], strict: bool) -> ContainerTarget:
    """The container to trace in a pod, checked to be running and ready."""
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    name = meta["name"]
    names = [c["name"] for c in spec.get("containers", [])]
    if container is None:
        container = meta.get("annotations", {}).get(DEFAULT_CONTAINER)
        if container is None:
            if len(names) > 1 and strict:
                raise UsageError(f"pod {name} has {len(names)} containers ({', '.join(names)}): choose one with -c")
            container = names[0]
    if container not in names:
        raise NotFound(f"pod {name} has no container {container!r} (it has {', '.join(names)})")
    phase = status.get("phase", "Unknown")
    if phase != "Running":
        raise ClusterError(f"pod {name} is {phase}{_why_not_running(status)}",
                           hint="only running pods can be traced")
    cs = next((c for c in status.get("containerStatuses", []) if c.get("name") == container), None)
    if cs is None or "running" not in (cs.get("state") or {}) or not cs.get("containerID"):
        raise ClusterError(f"container {container} of pod {name} is not running{_container_why(cs)}")
    if not cs.get("ready"):
        raise ClusterError(f"container {container} of pod {name} is not ready{_container_why(cs)}",
                           hint="wait until the pod is ready (kubectl get pod " + name + ")")
    node = spec.get("nodeName")
    if not node:
        raise ClusterError(f"pod {name} is on no node")
    return ContainerTarget(meta["namespace"], name, container, cs["containerID"], node, meta.get("uid", ""))


def _why_not_running(status: Dict[str, Any]) -> str:
    for cs in status.get("containerStatuses", []) or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return f" ({cs['name']}: {waiting['reason']}{': ' + waiting['message'] if waiting.get('message') else ''})"
    for c in status.get("conditions", []) or []:
        if c.get("status") == "False" and c.get("message"):
            return f" ({c['message']})"
    return f" ({status['reason']})" if status.get("reason") else ""


def _container_why(cs: Optional[Dict[str, Any]]) -> str:
    if not cs:
        return ""
    state = cs.get("state") or {}
    for key in ("waiting", "terminated"):
        if key in state and state[key].get("reason"):
            return f" ({state[key]['reason']})"
    return ""
