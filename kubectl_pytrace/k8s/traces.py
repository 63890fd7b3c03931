"""Traces in the cluster: created, found, listed and deleted by their objects.

A trace is a ConfigMap and one Job per node in the tracer namespace, all labelled
`kubectl-pytrace/trace=NAME` (and `app.kubernetes.io/managed-by=kubectl-pytrace`); the ConfigMap
is owned by the Jobs (ownerReferences), the pods by their Job, so deleting the Jobs lets the
garbage collector remove the rest, and `delete` removes all three kinds itself so that nothing is
left even when the collector is slow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from kubectl_pytrace.errors import ClusterError
from kubectl_pytrace.k8s import manifests as m
from kubectl_pytrace.k8s.client import Kube, batch, core
from kubectl_pytrace.k8s.errors import Conflict, Forbidden, NotFound

SELECTOR = f"{m.MANAGED_BY}={m.MANAGER}"


def trace_selector(name: Optional[str] = None) -> str:
    return f"{SELECTOR},{m.TRACE_LABEL}={name}" if name else f"{SELECTOR},{m.TRACE_LABEL}"


# ---- creating ---------------------------------------------------------------------------------

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"


def ensure_namespace(kube: Kube, name: str) -> None:
    """The tracer namespace, created on first use with the Pod Security labels tracers need."""
    try:
        ns = kube.get(core("namespaces", name=name))
        level = ns["metadata"].get("labels", {}).get(PSA_ENFORCE, "privileged")
        if level != "privileged":
            raise ClusterError(f"the tracer namespace {name} enforces the Pod Security level {level!r}, which "
                               f"refuses tracer pods (privileged, with the host's PIDs and paths)",
                               hint=f"use a namespace that allows privileged pods with --tracer-namespace (the "
                                    f"default, kubectl-pytrace, is made so), or label {name} "
                                    f"{PSA_ENFORCE}=privileged")
        return
    except NotFound:
        pass
    except Forbidden:
        return  # cannot look: creating the Jobs will say whether it exists
    try:
        kube.create(core("namespaces"), m.namespace(name))
    except Conflict:
        pass  # created meanwhile
    except Forbidden as e:
        raise Forbidden(f"the tracer namespace {name} does not exist and you may not create it ({e.message})",
                        hint="a cluster admin can create it with `kubectl apply -f manifests/rbac.yaml`, or "
                             "choose an existing namespace that allows privileged pods with "
                             "--tracer-namespace") from None


def create(kube: Kube, req: m.TraceRequest, dry_run: bool = False) -> List[Dict[str, Any]]:
    """Creates the trace's objects (ConfigMap first, then the Jobs, then the ConfigMap's owners);
    on any failure deletes what it created. With dry_run the API server validates the objects
    (server-side dry run) and nothing is stored. Returns the objects as created."""
    objs = m.objects(req)
    dry = {"dryRun": "All"} if dry_run else {}
    created: List[Dict[str, Any]] = []
    try:
        cm = kube.create(core("configmaps", req.namespace), objs[0], **dry)
        created.append(cm)
        for job in objs[1:]:
            created.append(kube.create(batch("jobs", req.namespace), job, **dry))
        if not dry_run:
            owners = [_owner(j) for j in created[1:]]
            created[0] = kube.patch(core("configmaps", req.namespace, cm["metadata"]["name"]),
                                    {"metadata": {"ownerReferences": owners}})
    except BaseException:
        if not dry_run and created:
            delete(kube, req.namespace, req.name, grace_seconds=0)
        raise
    return created


def _owner(job: Dict[str, Any]) -> Dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
            "uid": job["metadata"]["uid"], "blockOwnerDeletion": False}


# ---- finding ----------------------------------------------------------------------------------

@dataclass
class TraceJob:
    """One tracer Job of a trace, with its pod (if it has one yet)."""

    job: Dict[str, Any]
    pod: Optional[Dict[str, Any]] = None

    @property
    def name(self) -> str:
        return self.job["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.job["metadata"]["namespace"]

    @property
    def trace(self) -> str:
        return self.job["metadata"]["labels"].get(m.TRACE_LABEL, "")

    @property
    def node(self) -> str:
        return self.job["metadata"].get("annotations", {}).get(m.NODE_ANNOTATION, "")

    @property
    def target(self) -> str:
        return self.job["metadata"].get("annotations", {}).get(m.TARGET_ANNOTATION, "")

    @property
    def created(self) -> str:
        return self.job["metadata"].get("creationTimestamp", "")

    def status(self) -> str:
        """Pending, Running, Succeeded, Failed (why), Terminating."""
        if self.job["metadata"].get("deletionTimestamp"):
            return "Terminating"
        for c in self.job.get("status", {}).get("conditions", []) or []:
            if c.get("status") != "True":
                continue
            if c.get("type") == "Complete":
                return "Succeeded"
            if c.get("type") == "Failed":
                return f"Failed ({c.get('reason', '')})" if c.get("reason") else "Failed"
        if self.pod is not None:
            return self.pod.get("status", {}).get("phase", "Pending")
        return "Pending"


def jobs(kube: Kube, namespace: Optional[str], name: Optional[str] = None) -> List[TraceJob]:
    """The tracer Jobs of one trace (or of all), with their pods; namespace None: every namespace."""
    sel = trace_selector(name)
    found = kube.list(batch("jobs", namespace), labelSelector=sel)
    pods = kube.list(core("pods", namespace), labelSelector=sel)
    by_job: Dict[str, Dict[str, Any]] = {}
    for p in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
        by_job[p["metadata"].get("labels", {}).get("job-name", "")] = p
    out = [TraceJob(j, by_job.get(j["metadata"]["name"])) for j in found]
    out.sort(key=lambda t: (t.namespace, t.trace, t.node))
    return out


def find(kube: Kube, namespace: str, name: str) -> List[TraceJob]:
    found = jobs(kube, namespace, name)
    if not found:
        raise NotFound(f"trace {name!r} not found in namespace {namespace!r}",
                       hint="`kubectl pytrace get` lists the traces (-A: in every namespace)")
    return found


# ---- deleting ---------------------------------------------------------------------------------

def delete(kube: Kube, namespace: str, name: Optional[str] = None, grace_seconds: Optional[int] = None,
           wait: float = 0) -> int:
    """Deletes the Jobs, pods and ConfigMaps of one trace (or of every trace, name None).

    grace_seconds: the tracers' time for END and the maps (None: the pods' own, 0: at once).
    wait: seconds to wait until no object is left. Returns the number of Jobs deleted."""
    sel = trace_selector(name)
    found = kube.list(batch("jobs", namespace), labelSelector=sel)
    grace = {} if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
    for j in found:
        _ignore_missing(kube.delete, batch("jobs", namespace, j["metadata"]["name"]),
                        propagationPolicy="Background", **grace)
    for p in kube.list(core("pods", namespace), labelSelector=sel):
        _ignore_missing(kube.delete, core("pods", namespace, p["metadata"]["name"]), **grace)
    for c in kube.list(core("configmaps", namespace), labelSelector=sel):
        _ignore_missing(kube.delete, core("configmaps", namespace, c["metadata"]["name"]))
    if wait:
        wait_gone(kube, namespace, sel, wait)
    return len(found)


def _ignore_missing(call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except NotFound:
        pass


def leftovers(kube: Kube, namespace: str, selector: str) -> List[str]:
    out = []
    for kind, path in (("job", batch("jobs", namespace)), ("pod", core("pods", namespace)),
                       ("configmap", core("configmaps", namespace))):
        out += [f"{kind}/{o['metadata']['name']}" for o in kube.list(path, labelSelector=selector)]
    return out


def wait_gone(kube: Kube, namespace: str, selector: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    left = leftovers(kube, namespace, selector)
    while left and time.monotonic() < end:
        time.sleep(0.25)
        left = leftovers(kube, namespace, selector)
    if left:
        raise ClusterError(f"still there after {timeout:.0f}s: {', '.join(left)}")
