"""`kubectl pytrace firewall|shape TARGET` in a cluster: tracer Jobs that run guard/ on the nodes.

    run(GuardRequest(kind="firewall", target="pod/web", settings={...}, ...))     until Ctrl-C
    update(GuardRequest(..., settings=new))                                       from elsewhere

The objects are a trace's (traces.create: a ConfigMap and one Job per node, the same template),
whose configuration says "command": kind with the settings as "options"; the plugin follows the
tracer pods (Follower) and prints their counter records (guard/report.py), and Ctrl-C stops and
deletes them like a trace: the tracers get SIGTERM, print their final counters and detach.

An update writes new options (with the next "generation") into the trace's ConfigMap and
annotates the tracer pods, which makes the kubelet refresh the mounted ConfigMap at once rather
than at its next periodic sync (up to a minute or more); each tracer applies them and answers with
an {"updated": generation} record in its log, which update() waits for.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional

from kubectl_pytrace import traceconfig
from kubectl_pytrace.errors import ClusterError, UsageError
from kubectl_pytrace.guard import report
from kubectl_pytrace.k8s import manifests as m
from kubectl_pytrace.k8s import session, traces
from kubectl_pytrace.k8s.client import Kube, KubeOptions, core
from kubectl_pytrace.k8s.render import TracerView
from kubectl_pytrace.k8s.targets import parse_target, select
from kubectl_pytrace.output.wire import maps_of, parse_line

GENERATION_ANNOTATION = "kubectl-pytrace/generation"
UPDATE_TIMEOUT = 120.0


@dataclass
class GuardRequest:
    kube: KubeOptions
    kind: str  # firewall | shape
    target: str
    settings: Dict[str, Any]
    container: Optional[str] = None
    output: str = "text"
    deadline: Optional[float] = None
    image: Optional[str] = None
    pull_policy: str = "IfNotPresent"
    tracer_namespace: str = m.DEFAULT_NAMESPACE


class Records:
    """Prints the tracers' counter records (TraceView's `records`): labelled by pod or node."""

    def __init__(self, kind: str, output: str, stdout: IO):
        self.kind, self.output, self.stdout = kind, output, stdout

    def __call__(self, tv: TracerView, rec: Dict[str, Any]) -> bool:
        if "updated" in rec:
            return True  # the tracer's note said it
        if self.kind not in rec:
            return False
        src = int(rec.get("src", 0))
        t = tv.targets[src - 1] if 0 < src <= len(tv.targets) else None
        if self.output == "json":
            labels = {"node": tv.node, **({"namespace": t["namespace"], "pod": t["pod"]} if t else {})}
            self.stdout.write(report.as_json(self.kind, rec[self.kind], labels))
        else:  # the report names the pod or node (the tracer's description of its target)
            self.stdout.write(report.text(self.kind, rec[self.kind]))
        self.stdout.flush()
        return True


def _pod_container(kube: Kube, target: str, container: Optional[str]) -> Optional[str]:
    """For a pod: any container leads to its network namespace (the first, unless -c); a pod on the
    host's network is refused."""
    kind, name = parse_target(target)
    if kind != "pod":
        return container
    pod = kube.get(core("pods", kube.namespace, name))
    if pod.get("spec", {}).get("hostNetwork"):
        raise ClusterError(f"pod {name} uses the host's network (hostNetwork: true): its interfaces are the "
                           f"node's, so a program on them would act on all of the node's traffic",
                           hint=f"target the node (node/{pod['spec'].get('nodeName', 'NAME')} --interface IFACE) "
                                f"if that is what you want")
    return container or pod["spec"]["containers"][0]["name"]


def run(req: GuardRequest, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> int:
    kube = Kube.connect(req.kube)
    container = _pod_container(kube, req.target, req.container)
    selection = select(kube, req.target, kube.namespace, container)
    for w in selection.warnings:
        print(f"warning: {w}", file=stderr)
    treq = m.TraceRequest(name=m.new_trace_name(), program="", filename="", selection=selection,
                          namespace=req.tracer_namespace, image=req.image or m.default_image(),
                          pull_policy=req.pull_policy, deadline=req.deadline, command=req.kind,
                          options=req.settings)
    traces.ensure_namespace(kube, treq.namespace)
    traces.create(kube, treq)
    return _follow(kube, treq, selection, stdout, stderr, Records(req.kind, req.output, stdout),
                   f"kubectl-pytrace: {req.kind} {treq.name} created for {selection.description}; Ctrl-C stops it")


def _follow(kube: Kube, treq: m.TraceRequest, selection, stdout: IO, stderr: IO, records, note: str) -> int:
    """Follows the created trace until it ends, then deletes it. Whatever stops it before the
    follower handles Ctrl-C itself (a Ctrl-C that early, an API error) deletes it too: a firewall
    whose plugin is gone would go on dropping."""
    try:
        print(note, file=stderr, flush=True)
        return session._attached(kube, treq.namespace, treq.name, "text", False, stdout, stderr, selection,
                                 records=records)
    except BaseException:
        session._cleanup(kube, treq.namespace, treq.name, stderr, grace=0)
        raise


# ---- updates --------------------------------------------------------------------------------

def _running(kube: Kube, req: GuardRequest) -> List[traces.TraceJob]:
    kind, name = parse_target(req.target)
    found = [j for j in traces.jobs(kube, req.tracer_namespace)
             if j.job["metadata"].get("annotations", {}).get(m.COMMAND_ANNOTATION) == req.kind
             and _same_target(j.target, (kind, name)) and not j.job["metadata"].get("deletionTimestamp")
             and (kind == "node" or j.job["metadata"]["annotations"].get(m.TARGET_NS_ANNOTATION) == kube.namespace)]
    names = sorted({j.trace for j in found})
    if not names:
        raise ClusterError(f"no {req.kind} runs on {req.target} (nothing to --update)",
                           hint="start one: the same command without --update")
    if len(names) > 1:
        raise ClusterError(f"several {req.kind}s run on {req.target}: {', '.join(names)}")
    return found


def _same_target(described: str, target) -> bool:
    """A Job's target as the plugin described it ("deploy/web") is the one asked for ("deployment/web")."""
    try:
        return parse_target(described) == target
    except UsageError:  # "pods -l app=web"
        return False


def update(req: GuardRequest, stderr: IO = sys.stderr) -> int:
    kube = Kube.connect(req.kube)
    jobs = _running(kube, req)
    name, ns = jobs[0].trace, req.tracer_namespace
    cm = kube.get(core("configmaps", ns, name))
    cfg = json.loads(cm["data"][traceconfig.CONFIG_FILE])
    if cfg["options"].get("interface") != req.settings["interface"]:
        raise UsageError(f"the {req.kind} on {req.target} runs on interface {cfg['options'].get('interface')}, "
                         f"not {req.settings['interface']}: an update keeps the interface")
    generation = int(cfg["options"].get("generation", 1)) + 1
    cfg["options"] = dict(req.settings, generation=generation)
    kube.patch(core("configmaps", ns, name), {"data": {traceconfig.CONFIG_FILE: json.dumps(cfg, indent=1)}})
    pods = [j.pod["metadata"]["name"] for j in jobs if j.pod]
    for pod in pods:  # the kubelet syncs a changed pod now, and its ConfigMap volume with it
        kube.patch(core("pods", ns, pod), {"metadata": {"annotations": {GENERATION_ANNOTATION: str(generation)}}})
    for pod in pods:
        _wait_applied(kube, ns, pod, generation)
    print(f"kubectl-pytrace: {req.kind} {name} on {req.target} updated (generation {generation})", file=stderr)
    return 0


def _wait_applied(kube: Kube, ns: str, pod: str, generation: int) -> None:
    end = time.monotonic() + UPDATE_TIMEOUT
    while time.monotonic() < end:
        for raw in kube.stream(core("pods", ns, pod, "log"), timeout=(10, 30)):
            rec = parse_line(raw.decode("utf-8", "replace"))
            if rec and "updated" in rec and int(rec["updated"]) >= generation:
                return
            if rec and "exit" in rec:
                raise ClusterError(f"the tracer pod {pod} ended before it applied the update")
        time.sleep(1.0)
    raise ClusterError(f"the tracer pod {pod} did not apply the update within {UPDATE_TIMEOUT:.0f} s",
                       hint="its kubelet may be slow to refresh ConfigMap volumes; the pod applies the "
                            "update when it sees it")


# ---- seccomp: a trace of the container's system calls ------------------------------------------

@dataclass
class Recording:
    counts: Dict[int, int]  # system call number -> calls, over every traced container
    arch: str  # the nodes' architecture (GOARCH)
    description: str  # pod/web, deploy/web
    namespace: str  # of the target
    code: int  # the tracers' exit status


class _Maps:
    """Takes the tracers' maps at exit (TraceView's `records`), which a trace would print."""

    def __init__(self) -> None:
        self.dumps: Dict[str, list] = {}

    def __call__(self, tv: TracerView, rec: Dict[str, Any]) -> bool:
        if "maps" in rec:
            self.dumps[tv.node] = maps_of(rec)
            return True
        return False


def _architecture(kube: Kube, nodes: List[str]) -> str:
    archs = {n: kube.get(core("nodes", name=n)).get("status", {}).get("nodeInfo", {}).get("architecture", "")
             for n in nodes}
    if len(set(archs.values())) != 1:
        raise ClusterError("the targets run on nodes of different architectures ("
                           + ", ".join(f"{n}: {a or 'unknown'}" for n, a in sorted(archs.items()))
                           + "): record one architecture at a time")
    return next(iter(archs.values()))


def record_syscalls(opts: KubeOptions, target: str, container: Optional[str], duration: float,
                    image: Optional[str] = None, pull_policy: str = "IfNotPresent",
                    tracer_namespace: str = m.DEFAULT_NAMESPACE, stdout: IO = sys.stdout,
                    stderr: IO = sys.stderr) -> Recording:
    from kubectl_pytrace.guard import seccomp

    kube = Kube.connect(opts)
    selection = select(kube, target, kube.namespace, container)
    if not selection.containers:
        raise UsageError("seccomp records the system calls of containers: give a pod or a workload, not a node")
    arch = _architecture(kube, sorted(selection.nodes))
    treq = m.TraceRequest(name=m.new_trace_name(), program=seccomp.PROGRAM, filename="seccomp.bt",
                          selection=selection, namespace=tracer_namespace, image=image or m.default_image(),
                          pull_policy=pull_policy, deadline=duration)
    traces.ensure_namespace(kube, treq.namespace)
    traces.create(kube, treq)
    maps = _Maps()
    code = _follow(kube, treq, selection, stdout, stderr, maps,
                   f"kubectl-pytrace: recording the system calls of {selection.description} for {duration:g} s "
                   f"(trace {treq.name}); Ctrl-C ends it sooner")
    counts = seccomp.syscall_counts(d for dumps in maps.dumps.values() for d in dumps)
    return Recording(counts, arch, selection.description, kube.namespace, code)
