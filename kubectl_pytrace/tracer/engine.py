"""The trace engine: runs one compiled program in the kernel from load to the last map printed.

    engine = Engine(program, output, resolve_paths=..., stderr=...)  # program: lang.program.CProgram
    result = engine.run(deadline=30.0, command=["ls"])     # blocks; always detaches

Lifecycle, as bpftrace: the C becomes a BPF object (BCC in a subprocess, cached: bpf/objects.py)
-> maps created, programs loaded and attached with bpf(2)/perf_event_open(2) ("Attached N
probes", attach.py) -> BEGIN -> events (events.py) until exit(), the deadline, SIGINT/SIGTERM or
the end of the -c command (command.py) -> every probe detached -> END -> every map printed ->
every file descriptor closed. Every path out of run() closes everything: a BPF program, map or
link lives only as long as the descriptors of this process.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Callable, Dict, List, Optional, Sequence

from kubectl_pytrace.bpf import objects as bpfobj
from kubectl_pytrace.bpf import syscalls as bpfsys
from kubectl_pytrace.bpf.loader import Loader
from kubectl_pytrace.bpf.ringbuf import RingBuffer
from kubectl_pytrace.errors import Interrupted, TraceError
from kubectl_pytrace.kernel import headers as kheaders
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import scope as scope_c
from kubectl_pytrace.lang.program import (
    CONFIG_CPID, CONFIG_MAP, CONFIG_START_NS, EVENTS_MAP, FUNCS_MAP, LOST_MAP, STACKS_MAP, CProgram,
)
from kubectl_pytrace.output.decode import Symbols
from kubectl_pytrace.output.maps import MapReader
from kubectl_pytrace.output.printer import Output
from kubectl_pytrace.tracer.attach import Attacher, tail
from kubectl_pytrace.tracer.command import Command
from kubectl_pytrace.tracer.events import EventHandlers

if TYPE_CHECKING:
    from kubectl_pytrace.containers.resolve import FilterWatcher, TaskFilter

POLL_INTERVAL = 0.05  # seconds between ring-buffer reads when the kernel sends no wakeup
# Records handled before their space goes back to the kernel: a drain of a big backlog frees the
# ring as it goes (a single pass over 400,000 records kept all of it for seconds: 130,000 lost)
DRAIN_BATCH = 4096
LOST_CHECK_INTERVAL = 1.0
_KEY0 = struct.pack("<I", 0)


@dataclass
class RunResult:
    exit_code: int = 0
    lost_events: int = 0
    events: int = 0


def setup_headers(stderr: IO) -> kheaders.KernelHeaders:
    """Finds kernel headers for BCC and says which ones when they are not the running kernel's."""
    found = kheaders.find_headers()
    os.environ.update(found.env())
    if found.warning:
        print(found.warning, file=stderr)
    elif not found.matches_running_kernel:
        print(f"kubectl-pytrace: using kernel headers {found.path} ({found.release or 'unknown release'}),"
              f" not the running kernel's ({os.uname().release}); kernel struct fields are read with "
              f"offsets from BTF", file=stderr)
    return found


class Engine:
    def __init__(self, program: CProgram, output: Output, resolve_paths: Callable[[str], List[str]],
                 stderr: IO = sys.stderr, json: bool = False, headers: str = "",
                 proc_root: str = "/proc", use_cache: bool = True,
                 watchers: "Sequence[FilterWatcher]" = (), announce: Optional[Callable[[int], None]] = None,
                 verbose: bool = False):
        self.c = program
        self.out = output
        self.resolve_paths = resolve_paths  # a probe's binary -> the host paths to attach to
        self.stderr = stderr
        self.json = json
        self.headers = headers
        self.watchers = list(watchers)  # follow the containers the trace is scoped to, one per target
        self.announce = announce or self._print_attached  # told how many probes are attached
        self.scope_gen = 0
        self.proc_root = proc_root
        self.use_cache = use_cache
        self.loader: Optional[Loader] = None
        self.attacher: Optional[Attacher] = None
        self.ring: Optional[RingBuffer] = None
        self.config: Optional[bpfsys.RawMap] = None
        self.readers: Dict[str, MapReader] = {}
        self.events: Optional[EventHandlers] = None
        self.stop_reason: Optional[str] = None
        self.lost_reported = 0
        self.child: Optional[Command] = None
        self.verbose = verbose  # which way the probes went in, and how long attaching and detaching took
        self.attached = False  # before: a signal interrupts loading (a BCC compile can take minutes)

    # ---- loading ------------------------------------------------------------------------------
    def _compile(self) -> bpfobj.BpfObject:
        functions = sorted({a.fn_name for a in self.c.attachments})
        try:
            return bpfobj.compile_bpf(self.c.text, functions, self.headers, use_cache=self.use_cache)
        except bpfobj.CompileFailed as e:
            if "BPF stack limit" in e.log:
                raise TraceError("the program needs more than the 512 bytes of stack a BPF program may use "
                                 "(too many large strings, tuples or map keys in one probe): use fewer or "
                                 "shorter ones, e.g. str(x, 32)") from None
            raise TraceError(f"BCC could not compile the generated program: {e}\n"
                             f"{tail(e.log.splitlines(), 25)}\n"
                             f"(this is a kubectl-pytrace bug; `--dump c` shows the C)") from None

    def load(self) -> None:
        obj = self._compile()
        self.loader = Loader(obj, tracefs.ensure_tracefs())
        self.loader.create_maps()
        fds = self.loader.map_fds
        self.ring = RingBuffer(fds[EVENTS_MAP], obj.maps[EVENTS_MAP].max_entries)
        stacks = obj.maps.get(STACKS_MAP)
        stack_map = bpfsys.RawMap(fds[STACKS_MAP], 4, stacks.value_size) if stacks else None
        sym = Symbols(self.c.probe_names, stack_map, self.proc_root)
        self.readers = {name: MapReader(spec, fds[spec.cname], sym) for name, spec in self.c.maps.items()}
        self.events = EventHandlers(self.c, self.out, self.readers, sym, self.json, self.stderr)
        for i, w in enumerate(self.watchers):
            self.write_scope(i, w.current)
        self.config = bpfsys.RawMap(fds[CONFIG_MAP], 4, 8)
        self.config.update(struct.pack("<I", CONFIG_START_NS), struct.pack("<Q", time.monotonic_ns()))
        if FUNCS_MAP in obj.maps:
            self._write_func_names(bpfsys.RawMap(fds[FUNCS_MAP], 4, obj.maps[FUNCS_MAP].value_size))
        self.attacher = Attacher(self.c, self.loader, self.resolve_paths, self.stderr)

    def _write_func_names(self, funcs: bpfsys.RawMap) -> None:
        """`func` of the attach points whose function reads it by cookie (their probe id)."""
        for a in self.c.attachments:
            if a.by_cookie:
                funcs.update(struct.pack("<I", a.probe_id), a.spec.func.encode()[:funcs.value_size - 1])

    def write_scope(self, index: int, f: "TaskFilter") -> None:
        """Writes a target container's ids into the program (and invalidates cached verdicts)."""
        fds = self.loader.map_fds  # type: ignore[union-attr]
        cfg = bpfsys.RawMap(fds[scope_c.CFG_MAP], 4, struct.calcsize(scope_c.CFG_FORMAT))
        cfg.update(struct.pack("<I", index), scope_c.pack_config(
            f.cgroup_id, f.cgroup_level, f.pidns_dev, f.pidns_ino, f.mntns_ino, f.tgid))
        if self.scope_gen:
            self.bump_scope_gen()

    def bump_scope_gen(self) -> None:
        """Starts (or restarts) the per-CPU cache of scope verdicts: only once the probes that
        invalidate it are attached."""
        fds = self.loader.map_fds  # type: ignore[union-attr]
        if scope_c.GEN_MAP in fds:
            self.scope_gen += 1
            bpfsys.RawMap(fds[scope_c.GEN_MAP], 4, 8).update(_KEY0, struct.pack("<Q", self.scope_gen))

    def attach(self) -> int:
        assert self.attacher is not None
        return self.attacher.attach_all(before_first=self.bump_scope_gen)  # (no-op without a scope cache)

    def detach_probes(self) -> None:
        """Detaches every probe (END stays loaded: it runs after).

        The scope cache is turned off first: the probes that invalidate it (sched_switch,
        cgroup_attach_task) may be detached before the program's, and a verdict cached then
        would be taken by every task that later runs on that CPU (another container's)."""
        if self.loader is not None:
            if self.scope_gen:  # set only where the program has the cache (bump_scope_gen)
                self.scope_gen = 0
                bpfsys.RawMap(self.loader.map_fds[scope_c.GEN_MAP], 4, 8).update(_KEY0, struct.pack("<Q", 0))
            self.loader.detach()

    # ---- events -------------------------------------------------------------------------------
    def drain(self, until: float = float("inf")) -> None:
        """Handles the records in the ring, batch by batch, until it is empty, an exit() record
        is handled or the monotonic clock passes `until`."""
        if self.ring is None or self.events is None:
            return
        while time.monotonic() < until:
            exiting = self.events.exit_requested
            n = self.ring.drain(self.events.dispatch, DRAIN_BATCH)
            self.events.flush_text()
            self.out.flush()
            if self.events.exit_requested and not exiting:  # the batch stopped at exit()
                self.stop_reason = self.stop_reason or "exit"
                return
            if n < DRAIN_BATCH and not self.ring.backlog():
                return

    def lost(self) -> int:
        if self.loader is None:
            return 0
        raw = bpfsys.RawMap(self.loader.map_fds[LOST_MAP], 4, 8, per_cpu=True)
        v = raw.lookup(_KEY0)
        return sum(struct.unpack_from("<Q", s)[0] for s in raw.cpu_slots(v)) if v else 0

    def report_lost(self) -> None:
        n = self.lost()
        if n > self.lost_reported:
            delta = n - self.lost_reported
            self.lost_reported = n
            if self.json:
                self.out.lost_events(delta)
                self.out.flush()
            else:
                print(f"Lost {delta} events", file=self.stderr, flush=True)

    def run_prog(self, fd: Optional[int]) -> None:
        if fd is not None:
            bpfsys.test_run(fd)

    def _announce_child(self, pid: int) -> None:
        self.config.update(struct.pack("<I", CONFIG_CPID), struct.pack("<Q", pid))  # type: ignore[union-attr]

    # ---- running ------------------------------------------------------------------------------
    def run(self, deadline: Optional[float] = None, command: Optional[List[str]] = None) -> RunResult:
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.getsignal(s) for s in stop_signals}

        def on_signal(signum, frame):
            if self.stop_reason == "signal" or not self.attached:  # a second Ctrl-C, or still loading:
                raise Interrupted("interrupted")                   # stop waiting for anything
            self.stop_reason = "signal"

        for s in stop_signals:
            signal.signal(s, on_signal)
        try:
            self._start(command)
            self._loop(deadline)
            self._finish()
            return RunResult(0, self.lost_reported, self.events.count if self.events else 0)
        finally:
            self.close()
            for s, h in previous.items():
                signal.signal(s, h)

    def _start(self, command: Optional[List[str]]) -> None:
        self.load()
        start = time.monotonic()
        n = self.attach()
        self.attached = True
        self.announce(n)
        if self.verbose:
            self._print_paths(time.monotonic() - start)
        self.run_prog(self.attacher.begin_fd)  # type: ignore[union-attr]
        self.drain()  # BEGIN's output now, not at the next poll
        if command:
            self.child = Command.start(command, self._announce_child)

    def _print_attached(self, n: int) -> None:
        # stdout carries only the program's output (bpftrace prints "Attaching N probes..."
        # there); the count goes to stderr
        print(f"Attached {n} probe{'s' if n != 1 else ''}", file=self.stderr, flush=True)

    def _print_paths(self, seconds: float) -> None:
        for p in self.attacher.paths.values():  # type: ignore[union-attr]
            objects = f"{p.objects} kernel object{'s' if p.objects != 1 else ''}, " if p.objects else ""
            print(f"kubectl-pytrace: {p.points} attach point{'s' if p.points != 1 else ''}: {p.kind} "
                  f"({objects}{p.seconds:.3f} s)", file=self.stderr)
        print(f"kubectl-pytrace: attached in {seconds:.3f} s", file=self.stderr, flush=True)

    def _finish(self) -> None:
        """Detach, END, the maps: what every way of stopping but a second Ctrl-C prints."""
        start, n = time.monotonic(), len(self.loader.links) if self.loader else 0
        self.detach_probes()
        if self.verbose:
            print(f"kubectl-pytrace: detached {n} kernel object{'s' if n != 1 else ''} in "
                  f"{time.monotonic() - start:.3f} s", file=self.stderr, flush=True)
        self.drain()
        if self.child is not None:
            self.child.terminate()
        end_fd = self.attacher.end_fd if self.attacher else None
        if end_fd is not None:
            self.stop_reason = None
            if self.events is not None:
                self.events.exit_requested = False
            self.run_prog(end_fd)
            self.drain()
        self.report_lost()
        self.out.exit_dump([r.dump() for r in self.readers.values()])
        self.out.flush()

    def _loop(self, deadline: Optional[float]) -> None:
        assert self.ring is not None
        end = None if deadline is None else time.monotonic() + deadline
        next_lost = time.monotonic() + LOST_CHECK_INTERVAL
        while self.stop_reason is None:
            timeout = POLL_INTERVAL
            now = time.monotonic()
            if end is not None:
                if now >= end:
                    self.stop_reason = "deadline"
                    break
                timeout = min(timeout, end - now)
            if not self.ring.backlog():  # else the producer is ahead: no sleeping
                self.ring.wait(timeout)
            self.drain(until=time.monotonic() + POLL_INTERVAL)
            if now >= next_lost:
                self._every_second()
                next_lost = now + LOST_CHECK_INTERVAL
            if self.child is not None and self.child.poll() is not None:
                self.stop_reason = self.stop_reason or "command"

    def _every_second(self) -> None:
        self.report_lost()
        for i, w in enumerate(self.watchers):
            changed = w.poll()  # a restarted container has new ids
            if changed is not None:
                self.write_scope(i, changed)

    def close(self) -> None:
        """Detaches and unloads everything; safe to call twice."""
        if self.child is not None:
            self.child.kill()
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.loader is not None:
            self.loader.close()
            self.loader = None
