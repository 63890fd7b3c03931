"""A trace in the cluster, from the command line to the last object deleted.

    run(ClusterTrace(...))       compile on the client, resolve the target, create the ConfigMap
                                 and Jobs, and with --attach follow the tracers until they end
    attach(opts, name, ...)      follow a trace that runs; Ctrl-C stops it and deletes it
    logs(opts, name, follow)     print what a trace's tracers wrote

Ctrl-C while following (or SIGTERM, or a deleted target pod) stops the trace gracefully: its Jobs
are deleted, the tracer pods get SIGTERM, print END and the maps, and end; then every object of the
trace is deleted and waited for. A second Ctrl-C deletes everything at once and exits 130.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, List, Optional

from kubectl_pytrace import files
from kubectl_pytrace.errors import ClusterError, Interrupted, UsageError
from kubectl_pytrace.k8s import manifests as m
from kubectl_pytrace.k8s import traces
from kubectl_pytrace.k8s.client import Kube, KubeOptions, core
from kubectl_pytrace.k8s.errors import NotFound
from kubectl_pytrace.k8s.follow import Follower
from kubectl_pytrace.k8s.render import TraceView
from kubectl_pytrace.k8s.targets import ContainerTarget, Selection, parse_target, select

CLEANUP_WAIT = 90.0  # seconds to wait for the trace's objects to be gone after it ended
TARGET_CHECK_INTERVAL = 2.0
STOP_PATIENCE = m.GRACE_SECONDS + 60.0  # after a stop, how long tracers may take to print END and end


@dataclass
class ClusterTrace:
    """`kubectl pytrace run TARGET ...` as the flags say it."""

    kube: KubeOptions
    program: str
    filename: str = "stdin"
    target: Optional[str] = None
    selector: Optional[str] = None
    container: Optional[str] = None
    params: List[str] = field(default_factory=list)
    deadline: Optional[float] = None
    output: str = "text"  # text | json (events), yaml | json (objects) with dry_run
    merge: bool = False
    attach: bool = False
    name: Optional[str] = None
    image: Optional[str] = None
    pull_policy: str = "IfNotPresent"
    service_account: Optional[str] = None
    tracer_namespace: str = m.DEFAULT_NAMESPACE
    patch: Optional[Any] = None
    ttl: int = m.DEFAULT_TTL
    dry_run: Optional[str] = None  # None, "client", "server"
    ns_pids: bool = False
    unsafe: bool = False  # --unsafe: system(), signal(), override() allowed
    verbose: bool = False  # -v: where the time to the first event went, and the tracers' memory


def check(t: ClusterTrace) -> str:
    """The program compiled on the client, far from any node: errors before anything exists."""
    from kubectl_pytrace.lang import check_program

    return check_program(t.program, t.filename, params=t.params, unsafe=t.unsafe)


def _request(t: ClusterTrace, selection: Selection) -> m.TraceRequest:
    return m.TraceRequest(
        name=m.check_name(t.name) if t.name else m.new_trace_name(), program=t.program, filename=t.filename,
        selection=selection, params=list(t.params), namespace=t.tracer_namespace,
        image=t.image or m.default_image(), pull_policy=t.pull_policy, service_account=t.service_account,
        deadline=t.deadline, ttl=t.ttl, ns_pids=t.ns_pids, unsafe=t.unsafe, patch=t.patch)


def _print_objects(objs: List[Dict[str, Any]], fmt: str, stdout: IO) -> None:
    if fmt == "json":
        stdout.write(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}, indent=2) + "\n")
        return
    import yaml

    stdout.write(yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False))


def _validate(t: ClusterTrace) -> None:
    """What the flags alone say is wrong, before the cluster is asked anything."""
    if (t.target is None) == (t.selector is None):
        raise UsageError("give one target (TYPE/NAME) or a label selector (-l)")
    if t.target is not None:
        parse_target(t.target)
    if t.name is not None:
        m.check_name(t.name)


def run(t: ClusterTrace, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> int:
    marks = {"start": files.process_start()}
    _validate(t)
    warnings = check(t)
    marks["compiled on the client"] = time.time()
    if warnings:
        print(warnings, file=stderr)
    if t.dry_run == "client" and t.target and parse_target(t.target)[0] == "node":
        # a node needs no lookup: rendered without the API (nor the kubernetes client)
        selection = Selection(t.target, None, {parse_target(t.target)[1]: []})
        _print_objects(m.objects(_request(t, selection)), t.output, stdout)
        return 0
    kube = Kube.connect(t.kube)
    selection = select(kube, t.target, kube.namespace, t.container, t.selector)
    for w in selection.warnings:
        print(f"warning: {w}", file=stderr)
    req = _request(t, selection)
    if t.dry_run == "client":
        _print_objects(m.objects(req), t.output, stdout)
        return 0
    if t.dry_run != "server":
        traces.ensure_namespace(kube, req.namespace)
    created = traces.create(kube, req, dry_run=t.dry_run == "server")
    marks["objects created"] = time.time()
    if t.dry_run == "server":
        _print_objects(created, t.output, stdout)
        return 0
    if not t.attach:
        print(f"trace/{req.name} created ({selection.description}: {_where(selection)})", file=stdout)
        return 0
    try:
        return _attached(kube, req.namespace, req.name, t.output, t.merge, stdout, stderr, selection,
                         marks if t.verbose else None)
    except BaseException:
        # a Ctrl-C before the tracers are followed (its handler is not installed yet), an API error:
        # the trace was created for this command, and goes with it
        _cleanup(kube, req.namespace, req.name, stderr, grace=0)
        raise


def _where(s: Selection) -> str:
    nodes = ", ".join(sorted(s.nodes))
    n = len(s.containers)
    pods = f"{n} container{'s' if n != 1 else ''} on " if n else ""
    return f"{pods}node{'s' if len(s.nodes) != 1 else ''} {nodes}"


# ---- following ----------------------------------------------------------------------------------

class _Stopper:
    """Ctrl-C/SIGTERM while following: the first stops the trace gracefully, the second at once."""

    def __init__(self, kube: Kube, namespace: str, name: str, follower: Follower, stderr: IO,
                 targets: List[ContainerTarget]):
        self.kube, self.namespace, self.name = kube, namespace, name
        self.follower, self.stderr, self.targets = follower, stderr, targets
        self.signals = 0
        self.requested: Optional[str] = None
        self.stopped = False
        self.stopped_at = 0.0
        self.next_check = time.monotonic() + TARGET_CHECK_INTERVAL

    def on_signal(self, signum, frame) -> None:
        self.signals += 1
        if self.signals > 1:
            raise Interrupted("interrupted: the trace was deleted without its END output and maps")
        self.requested = "interrupted"

    def poll(self) -> None:
        if self.stopped and not self.follower.abandoned.is_set() and \
                time.monotonic() - self.stopped_at > STOP_PATIENCE:
            print(f"warning: the tracers did not end {STOP_PATIENCE:.0f} s after they were stopped: "
                  f"deleting them without their END output and maps", file=self.stderr)
            traces.delete(self.kube, self.namespace, self.name, grace_seconds=0)
            self.follower.abandoned.set()
        if self.requested and not self.stopped:
            self.stop(self.requested)
        elif not self.stopped and self.targets and time.monotonic() >= self.next_check:
            self.next_check = time.monotonic() + TARGET_CHECK_INTERVAL
            gone = self._targets_gone()
            if gone:
                print(f"kubectl-pytrace: the target pod {gone} was deleted: ending the trace", file=self.stderr)
                self.stop("target deleted")

    def stop(self, why: str) -> None:
        """Deletes the trace's objects, its pods gracefully (not left to the garbage collector,
        which can be slow to act): they get SIGTERM and end the trace (END, maps)."""
        self.stopped, self.stopped_at = True, time.monotonic()
        self.follower.stopping.set()
        traces.delete(self.kube, self.namespace, self.name)

    def _targets_gone(self) -> Optional[str]:
        gone = []
        for t in self.targets:
            try:
                pod = self.kube.get(core("pods", t.namespace, t.pod))
                if pod["metadata"].get("uid") != t.pod_uid or pod["metadata"].get("deletionTimestamp"):
                    gone.append(t)
            except NotFound:
                gone.append(t)
            except ClusterError:
                return None  # the API server may be restarting: check later
        if len(gone) == len(self.targets):
            return ", ".join(f"{t.namespace}/{t.pod}" for t in gone)
        return None


def _attached(kube: Kube, namespace: str, name: str, output: str, merge: bool, stdout: IO, stderr: IO,
              selection: Optional[Selection] = None, marks: Optional[Dict[str, float]] = None,
              records: Optional[Callable] = None) -> int:
    jobs = traces.find(kube, namespace, name)
    targets = selection.containers if selection else []
    view = TraceView(output, merge, stdout, stderr, tracers_expected=len(jobs),
                     targets_expected=max(len(targets), _targets_of(jobs)), records=records)
    follower = Follower(kube, jobs, view, stderr)
    stopper = _Stopper(kube, namespace, name, follower, stderr, targets)
    previous = {s: signal.signal(s, stopper.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 1
    try:
        code = follower.run(follow=True, poll=stopper.poll)  # stopped by Ctrl-C: the tracers' own status
    except Interrupted:
        _cleanup(kube, namespace, name, stderr, grace=0)
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    _cleanup(kube, namespace, name, stderr, grace=0)
    if marks is not None:
        print(timings(dict(marks, **view.marks), view), file=stderr)
    return code


def timings(marks: Dict[str, float], view: TraceView) -> str:
    """-v: when each step happened, in seconds since the command started, and the tracers' peak memory."""
    start = marks.pop("start")
    steps = sorted(marks.items(), key=lambda kv: kv[1])
    text = "timings: " + ", ".join(f"{what} {when - start:.2f} s" for what, when in steps)
    for t in view.tracers.values():
        mem = (t.exit or {}).get("memory") or {}
        if mem:
            text += (f"\nnode/{t.node}: tracer peak memory {mem.get('tracer_kib', 0) / 1024:.0f} MiB, "
                     f"compiler {mem.get('compiler_kib', 0) / 1024:.0f} MiB")
    return text


def _targets_of(jobs: List[traces.TraceJob]) -> int:
    n = 0
    for j in jobs:
        try:
            n += len(json.loads(j.job["metadata"].get("annotations", {}).get(m.PODS_ANNOTATION, "[]")))
        except ValueError:
            pass
    return n


def _cleanup(kube: Kube, namespace: str, name: str, stderr: IO, grace: int) -> None:
    try:
        traces.delete(kube, namespace, name, grace_seconds=grace, wait=CLEANUP_WAIT)
    except ClusterError as e:
        print(f"warning: trace {name} was not removed completely: {e.message}\n"
              f"`kubectl pytrace delete {name}` removes what is left", file=stderr)


def attach(opts: KubeOptions, name: str, tracer_namespace: str, output: str, merge: bool,
           stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> int:
    kube = Kube.connect(opts)
    return _attached(kube, tracer_namespace, name, output, merge, stdout, stderr)


def logs(opts: KubeOptions, name: str, tracer_namespace: str, output: str, merge: bool, follow: bool,
         stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> int:
    """What the trace's tracers wrote (follow: and what they write until they end), without
    stopping or deleting the trace: Ctrl-C just stops reading."""
    kube = Kube.connect(opts)
    jobs = traces.find(kube, tracer_namespace, name)
    view = TraceView(output, merge, stdout, stderr, tracers_expected=len(jobs), targets_expected=_targets_of(jobs))
    follower = Follower(kube, jobs, view, stderr, quiet=not follow)
    if not follow:
        follower.stopping.set()  # a tracer still running is not a failure
    return follower.run(follow=follow)
