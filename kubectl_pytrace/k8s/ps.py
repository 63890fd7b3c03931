"""`kubectl pytrace ps` in a cluster: one short-lived tracer pod per node lists the BPF programs
loaded there (tracer/ps.py); the containers that hold them are named by their pods."""

from __future__ import annotations

import io
import sys
from typing import IO, Any, Dict, List, Optional, Tuple

from kubectl_pytrace.k8s import manifests as m
from kubectl_pytrace.k8s import traces
from kubectl_pytrace.k8s.client import Kube, KubeOptions, core
from kubectl_pytrace.k8s.follow import Follower
from kubectl_pytrace.k8s.render import TraceView
from kubectl_pytrace.k8s.targets import Selection

NodePrograms = Tuple[str, Dict[str, Any]]  # (node, a program as tracer/ps.py's Program.to_json)


def run(opts: KubeOptions, node: Optional[str], tracer_namespace: str, image: Optional[str],
        stderr: IO = sys.stderr) -> List[NodePrograms]:
    kube = Kube.connect(opts)
    nodes = [node] if node else sorted(n["metadata"]["name"] for n in kube.list(core("nodes")))
    req = m.TraceRequest(name=f"pytrace-ps-{m.new_trace_name()[8:]}", program="", filename="ps",
                         selection=Selection("ps", None, {n: [] for n in nodes}), namespace=tracer_namespace,
                         image=image or m.default_image(), command="ps", ttl=60)
    traces.ensure_namespace(kube, tracer_namespace)
    traces.create(kube, req)
    try:
        view = TraceView("json", False, io.StringIO(), stderr, tracers_expected=len(nodes))
        code = Follower(kube, traces.find(kube, tracer_namespace, req.name), view, stderr, quiet=True).run()
    finally:
        traces.delete(kube, tracer_namespace, req.name, grace_seconds=0)
    if code:
        sys.exit(code)
    pods = _pods_by_container(kube)
    out = []
    for n, tv in sorted(view.tracers.items()):
        for p in tv.ps or []:
            for h in p["holders"]:
                h["pod"] = pods.get(h["container_id"], "")
            out.append((n, p))
    return out


def _pods_by_container(kube: Kube) -> Dict[str, str]:
    """container ID -> namespace/pod/container, for every pod of the cluster."""
    out = {}
    for pod in kube.list(core("pods")):
        meta = pod["metadata"]
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            cid = (cs.get("containerID") or "").partition("://")[2]
            if cid:
                out[cid] = f"{meta['namespace']}/{meta['name']}/{cs['name']}"
    return out
