"""Following a trace's tracer pods: progress while they start, their logs as they come, and how
each ended.

    follower = Follower(kube, trace_jobs, view, stderr)
    code = follower.run(stop=should_stop)    # blocks until every tracer has ended

One thread per tracer pod waits for it to start (scheduled -> image -> starting), failing at once
on an image that cannot be pulled, then reads its log with `follow` and timestamps. A log stream
that breaks (the API server or the kubelet restarted) is opened again from the last timestamp
seen (sinceTime, which the API takes in whole seconds): lines up to and including the last one
printed are skipped, so no line is lost or repeated. A tracer that ends without its final
{"exit": ...} record was killed: its pod's state, events and last lines say why.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from kubectl_pytrace.errors import ClusterError
from kubectl_pytrace.k8s.client import Kube, core
from kubectl_pytrace.k8s.errors import NotFound, Unreachable
from kubectl_pytrace.k8s.render import TraceView
from kubectl_pytrace.k8s.traces import TraceJob
from kubectl_pytrace.output.wire import parse_line

IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                  "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
POLL = 0.2
API_DOWN_PATIENCE = 120.0  # seconds an unreachable API server is waited for before giving up
START_TIMEOUT = 300.0  # seconds a tracer pod may take to start (image pull included)


def ts_key(ts: str) -> Tuple[str, int]:
    """A log timestamp (RFC 3339, nanoseconds with trailing zeros trimmed, as the kubelet writes
    them) as something that orders: (seconds, nanoseconds)."""
    head, _, frac = ts.rstrip("Z").partition(".")
    digits = "".join(c for c in frac if c.isdigit())
    return head, int(digits.ljust(9, "0")[:9]) if digits else 0


@dataclass
class LogCursor:
    """Where a log stream is: the timestamp of the last line handled, and how many lines with
    exactly that timestamp were handled (lines written together can share one)."""

    last: Tuple[str, int] = ("", -1)
    same: int = 0
    again: int = 0  # lines at `last` seen in the current stream

    def begin(self) -> None:
        """A new stream starts (from since())."""
        self.again = 0

    def fresh(self, ts: str) -> bool:
        """True for a line not handled yet (and counts it as handled)."""
        key = ts_key(ts)
        if key < self.last:
            return False
        if key == self.last:
            self.again += 1
            if self.again <= self.same:
                return False
            self.same += 1
            return True
        self.last, self.same, self.again = key, 1, 1
        return True

    def since(self) -> Optional[str]:
        return self.last[0] + "Z" if self.last[0] else None  # whole seconds: the API's sinceTime


@dataclass
class Tracer:
    job: TraceJob
    pod: Optional[str] = None
    cursor: LogCursor = field(default_factory=LogCursor)
    ended: bool = False
    failure: Optional[str] = None  # why it ended badly, when it did
    hint: Optional[str] = None
    tail: List[str] = field(default_factory=list)  # its last raw lines (for the failure message)


class Follower:
    def __init__(self, kube: Kube, jobs: List[TraceJob], view: TraceView, stderr: IO, quiet: bool = False):
        self.kube = kube
        self.view = view
        self.stderr = stderr
        self.quiet = quiet
        self.tracers = [Tracer(j) for j in jobs]
        self.events: "queue.Queue[Tuple[Tracer, str, Any]]" = queue.Queue()
        self.stopping = threading.Event()
        self.abandoned = threading.Event()  # stop waiting for tracers that do not end

    # ---- the main thread: print what the tracers send ----------------------------------------
    def run(self, follow: bool = True, poll: Callable[[], None] = lambda: None) -> int:
        """Prints every tracer's output until all have ended (follow=False: what their logs hold
        now). poll() runs between events (Ctrl-C handling, target checks)."""
        threads = [threading.Thread(target=self._follow, args=(t, follow), daemon=True) for t in self.tracers]
        for th in threads:
            th.start()
        running = len(threads)
        while running and not self.abandoned.is_set():
            try:
                tracer, kind, data = self.events.get(timeout=POLL)
            except queue.Empty:
                poll()
                continue
            if kind == "line":
                self._line(tracer, data)
            elif kind == "progress":
                if not self.quiet:
                    self.view.note(self.view.tracer(tracer.job.node), f"kubectl-pytrace: {data}")
            elif kind == "done":
                running -= 1
            poll()
        self.view.finish()
        return self.exit_code()

    def _line(self, t: Tracer, line: str) -> None:
        tv = self.view.tracer(t.job.node)
        rec = parse_line(line)
        if rec is None:
            t.tail = (t.tail + [line])[-12:]
            tv.raw(line)
            return
        tv.record(rec)

    def exit_code(self) -> int:
        code = 0
        for t in self.tracers:
            tv = self.view.tracers.get(t.job.node)
            if tv is not None and tv.exit is not None:
                code = max(code, int(tv.exit["exit"]))
                if tv.exit.get("error"):
                    self._report(t, tv.exit["error"], tv.exit.get("hint"), tv.exit.get("kind"))
            elif t.failure is not None:
                code = max(code, 1)
                self._report(t, t.failure, t.hint)
            elif not self.stopping.is_set():
                code = max(code, 1)
        return code

    def _report(self, t: Tracer, message: str, hint: Optional[str], kind: Optional[str] = None) -> None:
        where = f"node/{t.job.node}: " if len(self.tracers) > 1 else ""
        text = message if kind == "CompileError" else f"error: {where}{message}"
        if hint:
            text += f"\n{hint}"
        print(text, file=self.stderr, flush=True)

    # ---- one thread per tracer -----------------------------------------------------------------
    def _follow(self, t: Tracer, follow: bool) -> None:
        try:
            if self._wait_started(t):
                self._read_logs(t, follow)
        except ClusterError as e:
            t.failure, t.hint = e.message, e.hint
        except Exception as e:  # a bug: say it rather than hang the main thread
            t.failure = f"following the tracer failed: {type(e).__name__}: {e}"
        finally:
            self.events.put((t, "done", None))

    def _pod(self, t: Tracer) -> Optional[Dict[str, Any]]:
        pods = self.kube.list(core("pods", t.job.namespace), labelSelector=f"job-name={t.job.name}")
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
        return pods[-1] if pods else None

    def _wait_started(self, t: Tracer) -> bool:
        """Reports progress until the tracer container runs (or has run); False when it never will."""
        said = ""
        seen: set = set()
        started = time.monotonic()
        while True:
            if time.monotonic() - started > START_TIMEOUT:
                raise ClusterError(f"the tracer pod {t.pod or '(none)'} did not start on node {t.job.node} in "
                                   f"{START_TIMEOUT:.0f}s", hint=self._events_text(t) or None)
            pod = self._pod(t)
            if self.stopping.is_set() and not self._started(pod):
                return False  # stopped before it ran: nothing to read
            if pod is None:
                if self._job_gone(t):
                    return False
                if time.monotonic() - started > 1:  # give the Job controller a moment first
                    self._job_cannot_create(t)
                step = "waiting for the tracer pod"
            else:
                t.pod = pod["metadata"]["name"]
                step, done = self._start_step(t, pod)
                if done:
                    return True
                if time.monotonic() - started > 5:
                    self._warnings(t, seen)
            if step != said:
                self.events.put((t, "progress", step))
                said = step
            time.sleep(POLL)

    @staticmethod
    def _started(pod: Optional[Dict[str, Any]]) -> bool:
        cs = next(iter((pod or {}).get("status", {}).get("containerStatuses") or []), None)
        state = (cs or {}).get("state") or {}
        return "running" in state or "terminated" in state

    def _start_step(self, t: Tracer, pod: Dict[str, Any]) -> Tuple[str, bool]:
        status = pod.get("status", {})
        self.view.mark("tracer pod seen", time.time())
        cs = next(iter(status.get("containerStatuses") or []), None)
        state = (cs or {}).get("state") or {}
        if "running" in state or "terminated" in state or status.get("phase") in ("Succeeded", "Failed"):
            # the kubelet says so at its next relist (up to a second after the start): its log
            # can be read from then on
            self.view.mark("tracer running (kubelet)", time.time())
            return "started", True
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in IMAGE_FAILURES:
            raise ClusterError(f"the tracer pod {t.pod} cannot start on node {t.job.node}: {waiting['reason']}: "
                               f"{waiting.get('message', '')}".rstrip(": "),
                               hint=self._events_text(t) or "check --image and --image-pull-policy")
        if not pod.get("spec", {}).get("nodeName"):
            return "scheduling", False
        if waiting.get("reason") == "ContainerCreating" or not cs:
            return f"starting the tracer pod {t.pod} on node {t.job.node}", False
        return f"tracer pod {t.pod}: {waiting.get('reason', status.get('phase', 'Pending'))}", False

    def _events_text(self, t: Tracer) -> str:
        try:
            evs = self.kube.list(core("events", t.job.namespace),
                                 fieldSelector=f"involvedObject.name={t.pod}")
        except ClusterError:
            return ""
        evs.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return "\n".join(f"  {e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}" for e in evs[-5:])

    def _job_cannot_create(self, t: Tracer) -> None:
        """A Job whose pod is refused (Pod Security, quota, a webhook) says so in an event."""
        evs = self.kube.list(core("events", t.job.namespace), fieldSelector=f"involvedObject.name={t.job.name}")
        failed = [e for e in evs if e.get("reason") == "FailedCreate"]
        if failed:
            raise ClusterError(f"the tracer pod of node {t.job.node} cannot be created: {failed[-1].get('message')}")

    def _warnings(self, t: Tracer, seen: set) -> None:
        """New events of a pod that does not start yet: pulling its image, and every warning
        (FailedMount, FailedScheduling...)."""
        try:
            evs = self.kube.list(core("events", t.job.namespace), fieldSelector=f"involvedObject.name={t.pod}")
        except ClusterError:
            return
        for e in evs:
            key = (e.get("reason"), e.get("message"))
            if (e.get("type") == "Warning" or e.get("reason") in ("Pulling", "Pulled")) and key not in seen:
                seen.add(key)
                self.events.put((t, "progress", f"{e.get('reason')}: {e.get('message')}"))

    def _job_gone(self, t: Tracer) -> bool:
        try:
            self.kube.get(f"/apis/batch/v1/namespaces/{t.job.namespace}/jobs/{t.job.name}")
            return False
        except NotFound:
            t.failure = f"the tracer Job {t.job.name} was deleted before its pod started"
            return True

    def _read_logs(self, t: Tracer, follow: bool) -> None:
        tv = self.view.tracer(t.job.node)
        while True:
            self._read_once(t, follow)
            if tv.exit is not None or not follow:
                return
            state = self._container_state(t)
            if state == "running":
                time.sleep(POLL)  # the stream broke: open it again from the cursor
                continue
            self._read_once(t, follow=False)  # what was written after the break, if it broke
            if tv.exit is None:
                self._killed(t, state)
            return

    def _read_once(self, t: Tracer, follow: bool) -> None:
        query: Dict[str, Any] = {"container": "tracer", "timestamps": "true"}
        if follow:
            query["follow"] = "true"
        since = t.cursor.since()
        if since:
            query["sinceTime"] = since
        t.cursor.begin()
        try:
            for raw in self.kube.stream(core("pods", t.job.namespace, t.pod, "log"), **query):
                ts, _, line = raw.decode("utf-8", "surrogateescape").partition(" ")
                if t.cursor.fresh(ts):
                    self.events.put((t, "line", line))
        except NotFound:
            return
        except Unreachable:
            self._wait_api()
        except Exception:  # the connection broke mid-stream (urllib3 ProtocolError and kin)
            return

    def _wait_api(self) -> None:
        end = time.monotonic() + API_DOWN_PATIENCE
        while time.monotonic() < end:
            try:
                self.kube.get("/version")
                return
            except ClusterError:
                time.sleep(0.5)
        raise ClusterError(f"the API server did not answer for {API_DOWN_PATIENCE:.0f}s")

    def _container_state(self, t: Tracer) -> str:
        """running, gone (the pod was deleted) or how the container ended."""
        while True:
            try:
                pod = self.kube.get(core("pods", t.job.namespace, t.pod))
                break
            except NotFound:
                return "gone"
            except Unreachable:
                self._wait_api()
        cs = next(iter(pod.get("status", {}).get("containerStatuses") or []), {})
        state = cs.get("state") or {}
        if "running" in state:
            return "running"
        term = state.get("terminated") or {}
        if term:
            return f"{term.get('reason', 'terminated')} (exit code {term.get('exitCode')})"
        return pod.get("status", {}).get("phase", "unknown")

    def _killed(self, t: Tracer, state: str) -> None:
        if self.stopping.is_set() and state == "gone":
            return
        last = "\n".join("  " + line for line in t.tail[-6:])
        t.failure = (f"the tracer pod {t.pod} on node {t.job.node} ended without finishing the trace: "
                     f"{'the pod was deleted' if state == 'gone' else state}")
        events = self._events_text(t)
        t.hint = "\n".join(x for x in (f"its last lines:\n{last}" if last else "",
                                        f"its events:\n{events}" if events else "") if x) or None
