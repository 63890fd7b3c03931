"""The trace engine: loads a compiled program with BCC, attaches it, streams its events, ends it.

    engine = Engine(compiled, output, resolve_path=..., stderr=...)
    status = engine.run(deadline=30.0, command=["ls"])      # blocks; always detaches

Lifecycle, as bpftrace: compile C -> attach every probe ("Attached N probes") -> BEGIN ->
events until exit(), the deadline, SIGINT/SIGTERM or the end of the -c command -> detach every
probe -> END -> print every map -> release the program. Every path out of run() detaches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Dict, Iterator, List, Optional

from kubectl_pytrace.kernel import headers as kheaders
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import Compiled
from kubectl_pytrace.lang import printf as printf_format
from kubectl_pytrace.lang.codegen import AttachSpec, CONFIG_CPID, CONFIG_START_NS, EventSpec
from kubectl_pytrace.tracer import bpfsys
from kubectl_pytrace.tracer.decode import RecordDecoder, Symbols
from kubectl_pytrace.tracer.maps import MapReader
from kubectl_pytrace.tracer.output import Output
from kubectl_pytrace.tracer.ringbuf import RingBuffer

POLL_INTERVAL = 0.05  # seconds between ring-buffer reads when the kernel sends no wakeup
LOST_CHECK_INTERVAL = 1.0
_ID = struct.Struct("<Q")


class TraceError(Exception):
    """A failure the user can act on; str() is the whole message."""


@dataclass
class RunResult:
    exit_code: int = 0
    lost_events: int = 0
    events: int = 0


@contextlib.contextmanager
def captured_stderr() -> Iterator[List[str]]:
    """Collects what C code (clang, libbpf, the verifier log) writes to fd 2 during the block."""
    lines: List[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def _tail(lines: List[str], n: int = 12) -> str:
    kept = [line for line in lines if line.strip()]
    return "\n".join("  " + line for line in kept[-n:])


def setup_headers(stderr: IO) -> kheaders.KernelHeaders:
    """Finds kernel headers for BCC and says which ones when they are not the running kernel's."""
    try:
        found = kheaders.find_headers()
    except kheaders.HeadersNotFound as e:
        raise TraceError(str(e)) from None
    os.environ.update(found.env())
    if found.warning:
        print(found.warning, file=stderr)
    elif not found.matches_running_kernel:
        print(f"kubectl-pytrace: using kernel headers {found.path} ({found.release or 'unknown release'}),"
              f" not the running kernel's ({os.uname().release}); kernel struct fields are read with "
              f"offsets from BTF", file=stderr)
    return found


class _Child:
    """The -c command: a forked pid we reap ourselves."""

    def __init__(self, pid: int):
        self.pid = pid
        self.status: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self) -> int:
        if self.status is None:
            self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.status

    def terminate(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class Engine:
    def __init__(self, compiled: Compiled, output: Output, resolve_path: Callable[[str], str],
                 stderr: IO = sys.stderr, json: bool = False):
        self.compiled = compiled
        self.c = compiled.c
        self.out = output
        self.resolve_path = resolve_path
        self.stderr = stderr
        self.json = json
        self.bpf = None
        self.ring: Optional[RingBuffer] = None
        self.readers: Dict[str, MapReader] = {}
        self.handlers: Dict[int, Callable] = {}
        self.end_fd: Optional[int] = None
        self.stop_reason: Optional[str] = None
        self.lost_reported = 0
        self.events = 0
        self.child: Optional[_Child] = None

    # ---- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        from bcc import BPF, USDT

        usdt_contexts = []
        by_path: Dict[str, object] = {}
        for a in self.c.attachments:
            s = a.spec
            if s.provider != "usdt":
                continue
            path = self.resolve_path(s.target)
            ctx = by_path.get(path)
            if ctx is None:
                ctx = by_path[path] = USDT(path=path)
                usdt_contexts.append(ctx)
            probe = f"{s.ns}:{s.func}" if s.ns else s.func
            try:
                ctx.enable_probe(probe=probe, fn_name=a.fn_name)  # type: ignore[attr-defined]
            except Exception as e:
                raise TraceError(f"cannot attach {s.name()}: {e}") from None
        with captured_stderr() as log:
            try:
                self.bpf = BPF(text=self.c.text, usdt_contexts=usdt_contexts,
                               cflags=["-Wno-unused-value", "-Wno-incompatible-pointer-types", "-w"])
            except Exception as e:
                err = e
            else:
                err = None
        if err is not None:
            usdt_failed = [line for line in log if "USDT" in line or "usdt" in line]
            if usdt_failed:
                raise TraceError("cannot attach USDT probes:\n" + _tail(usdt_failed))
            raise TraceError(f"BCC could not compile the generated program ({err}):\n{_tail(log, 25)}\n"
                             f"(this is a kubectl-pytrace bug; `--dump c` shows the C)")
        self.ring = RingBuffer(self.bpf[self.c.ringbuf].map_fd, self.c.ringbuf_pages() if False else
                               self._ringbuf_size())
        sym = Symbols(self.bpf, self.c.probe_names, "pytrace_stacks" if self.c.uses_stacks else None)
        for name, spec in self.c.maps.items():
            self.readers[name] = MapReader(spec, self.bpf[spec.cname].map_fd, sym)
        for ev in self.c.events.values():
            self.handlers[ev.id] = self._handler(ev, sym)
        config = bpfsys.RawMap(self.bpf[self.c.config_map].map_fd, 4, 8)
        config.update(struct.pack("<I", CONFIG_START_NS), struct.pack("<Q", time.monotonic_ns()))

    def _ringbuf_size(self) -> int:
        from kubectl_pytrace.lang.codegen import CodegenOptions  # noqa: F401 (documentation)
        text = self.c.text
        marker = f"BPF_RINGBUF_OUTPUT({self.c.ringbuf}, "
        pages = int(text[text.index(marker) + len(marker):].split(")", 1)[0])
        return pages * 4096

    def _handler(self, ev: EventSpec, sym: Symbols) -> Callable:
        decode = RecordDecoder(ev.record, sym)
        out = self.out
        if ev.kind == "printf":
            fmt = printf_format.compile_format(ev.fmt)  # type: ignore[arg-type]
            return lambda buf: out.printf(fmt(decode(buf)))
        if ev.kind == "print_value":
            return lambda buf: out.print_value(decode(buf)[0])
        if ev.kind == "print_map":
            reader = self.readers[ev.map]  # type: ignore[index]
            return lambda buf: out.print_map(reader.dump(), ev.top, ev.div)
        if ev.kind == "time":
            return lambda buf: out.time(time.strftime(ev.fmt))  # type: ignore[arg-type]
        if ev.kind == "clear":
            return lambda buf: self.readers[ev.map].clear()  # type: ignore[index]
        if ev.kind == "zero":
            return lambda buf: self.readers[ev.map].zero()  # type: ignore[index]
        if ev.kind == "exit":
            return self._on_exit
        raise AssertionError(ev.kind)

    def _on_exit(self, buf) -> bool:
        self.stop_reason = self.stop_reason or "exit"
        return False

    # ---- attaching ----------------------------------------------------------------------------
    def attach(self) -> int:
        from bcc import BPF

        n = 0
        for a in self.c.attachments:
            s = a.spec
            if s.provider == "usdt":
                n += 1  # attached by BCC while loading
                continue
            with captured_stderr() as log:
                try:
                    fd = self._attach_one(BPF, a)
                    error = None
                except TraceError as e:
                    error = str(e)
                except Exception as e:  # BCC raises bare Exceptions
                    error = str(e)
            if error is not None:
                raise TraceError(self._attach_error(a, error, log))
            if s.provider == "END":
                self.end_fd = fd
            n += 1
        return n

    def _attach_error(self, a: AttachSpec, error: str, log: List[str]) -> str:
        s = a.spec
        verifier = [line for line in log if line.strip()]
        if "Failed to load BPF program" in error and verifier:
            return (f"cannot attach {s.name()}: the BPF verifier rejected the program; its last "
                    f"lines:\n{_tail(verifier)}")
        if s.provider in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
            if not os.path.exists(os.path.join(tracefs.ensure_tracefs(), "kprobe_events")):
                return (f"cannot attach {s.name()}: this kernel has no kprobes (CONFIG_KPROBES is not set) "
                        f"and the fentry fallback failed: {error}")
        detail = _tail(log, 4)
        return f"cannot attach {s.name()}: {error}" + (f"\n{detail}" if detail else "")

    def _attach_one(self, BPF, a: AttachSpec) -> Optional[int]:
        b, s, fn = self.bpf, a.spec, a.fn_name
        p = s.provider
        if p in ("BEGIN", "END"):
            return b.load_func(fn, BPF.RAW_TRACEPOINT).fd
        if p == "tracepoint":
            b.attach_tracepoint(tp=f"{s.target}:{s.func}", fn_name=fn)
        elif p in ("uprobe", "uretprobe"):
            path = self.resolve_path(s.target)
            attach = b.attach_uprobe if p == "uprobe" else b.attach_uretprobe
            if s.address is not None:
                attach(name=path, addr=s.address, fn_name=fn)
            else:
                try:
                    attach(name=path, sym=s.func, fn_name=fn)
                except Exception as e:
                    if "could not determine address" in str(e):
                        raise TraceError(f"no function named '{s.func}' in {path}") from None
                    raise
        elif p in ("kprobe", "kretprobe"):
            if fn.startswith(("kfunc__", "kretfunc__")):
                self._attach_fentry(b, fn)
            elif p == "kprobe":
                b.attach_kprobe(event=s.func, fn_name=fn)
            else:
                b.attach_kretprobe(event=s.func, fn_name=fn)
        elif p in ("kfunc", "kretfunc"):
            self._attach_fentry(b, fn)
        elif p in ("profile", "interval"):
            from bcc import PerfSWConfig, PerfType

            kw = {}
            if s.unit == "hz":
                if p == "profile":
                    kw["sample_freq"] = s.rate
                else:
                    kw["sample_period"] = 1_000_000_000 // s.rate
            else:
                kw["sample_period"] = s.rate * {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}[s.unit]
            if p == "interval":
                kw["cpu"] = 0
            b.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK, fn_name=fn, **kw)
        else:
            raise TraceError(f"unsupported probe type {p}")
        return None

    @staticmethod
    def _attach_fentry(b, fn: str) -> None:
        if fn.startswith("kretfunc__"):
            b.attach_kretfunc(fn_name=fn[len("kretfunc__"):])
        else:
            b.attach_kfunc(fn_name=fn[len("kfunc__"):])

    def detach_probes(self) -> None:
        """Detaches every probe (END stays loaded: it runs after)."""
        b = self.bpf
        if b is None:
            return
        for ev in list(getattr(b, "uprobe_fds", {})):
            with contextlib.suppress(Exception):
                b.detach_uprobe_event(ev)
        for tp in list(getattr(b, "tracepoint_fds", {})):
            with contextlib.suppress(Exception):
                b.detach_tracepoint(tp)
        for ev in list(getattr(b, "kprobe_fds", {})):
            with contextlib.suppress(Exception):
                b.detach_kprobe_event(ev)
        for key in list(getattr(b, "open_perf_events", {})):
            with contextlib.suppress(Exception):
                b.detach_perf_event(*key)
        for table in ("kfunc_entry_fds", "kfunc_exit_fds"):
            fds = getattr(b, table, {})
            for name in list(fds):
                with contextlib.suppress(Exception):
                    os.close(fds.pop(name))

    # ---- running ------------------------------------------------------------------------------
    def _dispatch(self, buf) -> bool:
        self.events += 1
        handler = self.handlers.get(_ID.unpack_from(buf, 0)[0])
        if handler is None:
            return True
        return handler(buf) is not False

    def drain(self) -> None:
        if self.ring is not None:
            self.ring.drain(self._dispatch)
            self.out.flush()

    def lost(self) -> int:
        if self.bpf is None:
            return 0
        raw = bpfsys.RawMap(self.bpf[self.c.lost_map].map_fd, 4, 8, per_cpu=True)
        v = raw.lookup(struct.pack("<I", 0))
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

    def start_command(self, command: List[str]) -> None:
        """Starts the -c command with its pid known to BPF before it runs a single instruction.

        The child is forked and waits on a pipe; cpid is written into the config map, then the
        child is released to exec the command (an exec failure comes back through a second pipe).
        """
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(gate_w)
                os.close(err_r)
                os.read(gate_r, 1)
                os.close(gate_r)
                os.execvp(command[0], command)
            except OSError as e:
                os.write(err_w, str(e.errno).encode())
            finally:
                os._exit(127)
        os.close(gate_r)
        os.close(err_w)
        config = bpfsys.RawMap(self.bpf[self.c.config_map].map_fd, 4, 8)
        config.update(struct.pack("<I", CONFIG_CPID), struct.pack("<Q", pid))
        self.child = _Child(pid)
        os.write(gate_w, b"x")
        os.close(gate_w)
        failed = os.read(err_r, 16)
        os.close(err_r)
        if failed:
            self.child.wait()
            self.child = None
            raise TraceError(f"cannot run {command[0]}: {os.strerror(int(failed))}")

    def run(self, deadline: Optional[float] = None, command: Optional[List[str]] = None) -> RunResult:
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.getsignal(s) for s in stop_signals}

        def on_signal(signum, frame):
            if self.stop_reason == "signal":  # a second Ctrl-C: stop waiting for anything
                raise KeyboardInterrupt
            self.stop_reason = "signal"

        for s in stop_signals:
            signal.signal(s, on_signal)
        try:
            self.load()
            n = self.attach()
            print(f"Attached {n} probe{'s' if n != 1 else ''}", file=self.stderr, flush=True)
            if self.json:
                self.out.attached_probes(n)
            begin = [a for a in self.c.attachments if a.spec.provider == "BEGIN"]
            if begin:
                self.run_prog(self.bpf.funcs[begin[0].fn_name.encode()].fd)
            if command:
                self.start_command(command)
            self._loop(deadline)
            self.detach_probes()
            self.drain()
            if self.child is not None and self.child.poll() is None:
                self.child.terminate()
            if self.end_fd is not None:
                self.stop_reason = None
                self.run_prog(self.end_fd)
                self.drain()
            self.report_lost()
            self.out.exit_dump([r.dump() for r in self.readers.values()])
            self.out.flush()
            return RunResult(0, self.lost_reported, self.events)
        finally:
            self.close()
            for s, h in previous.items():
                signal.signal(s, h)

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
            self.ring.wait(timeout)
            self.drain()
            if now >= next_lost:
                self.report_lost()
                next_lost = now + LOST_CHECK_INTERVAL
            if self.child is not None and self.child.poll() is not None:
                self.stop_reason = "command"

    def close(self) -> None:
        """Detaches and unloads everything; safe to call twice."""
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(Exception):
                self.child.kill()
                self.child.wait()
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.bpf is not None:
            self.detach_probes()
            with contextlib.suppress(Exception):
                self.bpf.cleanup()
            self.bpf = None
