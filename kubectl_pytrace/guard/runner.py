"""Running a firewall or a shaper until it should end, reporting its counters as it goes.

    code = run(Job(kind="firewall", units=[...], interval=5, deadline=None), emit)

The same loop runs on this host (`--local`) and in a tracer pod (tracer/node.py); `emit` takes
records (output/wire.py's form: {"firewall": {...}, "src": 1}, {"stderr": "..."}) and either
prints them (report.py) or writes them to the pod's log for the plugin to print.

It ends on SIGINT/SIGTERM/SIGHUP, at the deadline, or when an interface goes away (the pod was
deleted); then every unit reports once more ("final") and is detached. Each attachment is a BPF
link owned by this process, so a SIGKILL or a crash detaches too (attach.py).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol

POLL = 0.2
Emit = Callable[[Dict[str, Any]], None]


class Unit(Protocol):
    """One attached program: a Firewall or a Shaper."""

    def report(self, final: bool = False) -> Dict[str, Any]: ...

    def alive(self) -> bool: ...

    def close(self) -> None: ...


@dataclass
class Job:
    kind: str  # "firewall" | "shape": the records' key
    units: List[Unit]  # in the order of the targets: record "src" i+1
    interval: float = 5.0
    deadline: Optional[float] = None
    updates: Optional[Callable[[], Optional[Any]]] = None  # polled: new settings, or None
    apply: Optional[Callable[[Unit, Any], str]] = None  # applies them to a unit; returns a note
    applied: Optional[Callable[[Any], None]] = None  # told once every unit has them
    started: float = field(default_factory=time.monotonic)


class _Stop:
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.reason: Optional[str] = None
        self.previous: Dict[int, Any] = {}

    def __enter__(self) -> "_Stop":
        for s in self.SIGNALS:
            self.previous[s] = signal.signal(s, self._on_signal)
        return self

    def _on_signal(self, signum, frame) -> None:
        self.reason = self.reason or signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


def _tick(job: Job, emit: Emit, stop: _Stop) -> None:
    if job.deadline is not None and time.monotonic() - job.started >= job.deadline:
        stop.reason = "deadline"
        return
    for i, u in enumerate(job.units, 1):
        if not u.alive():
            emit({"stderr": f"kubectl-pytrace: {job.kind}: the interface of target {i} is gone (its pod or "
                            f"network namespace was deleted)", "src": i})
            stop.reason = "interface gone"
            return
    new = job.updates() if job.updates else None
    if new is not None and job.apply is not None:
        for i, u in enumerate(job.units, 1):
            emit({"stderr": f"kubectl-pytrace: {job.apply(u, new)}", "src": i})
        if job.applied is not None:
            job.applied(new)


def run(job: Job, emit: Emit) -> str:
    """Runs until the end; returns why it ended. Always detaches every unit."""
    next_report = time.monotonic() + job.interval
    with _Stop() as stop:
        try:
            while stop.reason is None:
                time.sleep(POLL)
                _tick(job, emit, stop)
                if stop.reason is None and time.monotonic() >= next_report:
                    next_report += job.interval
                    _report(job, emit, final=False)
            _report(job, emit, final=True)
        finally:
            for u in job.units:
                u.close()
    return stop.reason or "ended"


def _report(job: Job, emit: Emit, final: bool) -> None:
    for i, u in enumerate(job.units, 1):
        emit({job.kind: u.report(final=final), "src": i})
