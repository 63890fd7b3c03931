"""The trace engine: loads a compiled program with BCC, attaches it, streams its events, ends it.

    engine = Engine(program, output, resolve_path=..., stderr=...)   # program: lang.program.CProgram
    status = engine.run(deadline=30.0, command=["ls"])      # blocks; always detaches

Lifecycle, as bpftrace: compile C -> attach every probe ("Attached N probes") -> BEGIN ->
events until exit(), the deadline, SIGINT/SIGTERM or the end of the -c command -> detach every
probe -> END -> print every map -> release the program. Every path out of run() detaches.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Dict, Iterator, List, Optional

from kubectl_pytrace.kernel import headers as kheaders
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import printf as printf_format
from kubectl_pytrace.lang.program import AttachSpec, CONFIG_CPID, CONFIG_START_NS, CProgram, EventSpec
from kubectl_pytrace.lang import scope as scope_c
from kubectl_pytrace.lang.probes import TIME_UNITS
from kubectl_pytrace.tracer import bpfobj, bpfsys
from kubectl_pytrace.tracer.errors import TraceError
from kubectl_pytrace.tracer.elf import ELFError, open_elf
from kubectl_pytrace.tracer.loader import AttachFailed, Loader
from kubectl_pytrace.lang.layout import field_count
from kubectl_pytrace.lang.types import StrT
from kubectl_pytrace.tracer.decode import RecordDecoder, Symbols, converter
from kubectl_pytrace.tracer.maps import MapReader
from kubectl_pytrace.tracer.output import Output
from kubectl_pytrace.tracer.ringbuf import RingBuffer
from kubectl_pytrace.tracer.values import from_bytes

CAT_BYTES_MAX = 10240  # bpftrace's BPFTRACE_CAT_BYTES_MAX
POLL_INTERVAL = 0.05  # seconds between ring-buffer reads when the kernel sends no wakeup
LOST_CHECK_INTERVAL = 1.0
_ID = struct.Struct("<Q")


@dataclass
class RunResult:
    exit_code: int = 0
    lost_events: int = 0
    events: int = 0


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
    def __init__(self, program: CProgram, output: Output, resolve_path: Callable[[str], str],
                 stderr: IO = sys.stderr, json: bool = False, headers: str = "",
                 proc_root: str = "/proc", use_cache: bool = True, scope=None):
        self.c = program
        self.out = output
        self.resolve_path = resolve_path
        self.stderr = stderr
        self.json = json
        self.headers = headers
        # (containers.TaskFilter with the values, containers.FilterWatcher) when scoped to a container
        self.scope = scope
        self.scope_gen = 0
        self.proc_root = proc_root
        self.use_cache = use_cache
        self.obj: Optional[bpfobj.BpfObject] = None
        self.loader: Optional[Loader] = None
        self.begin_fd: Optional[int] = None
        self.ring: Optional[RingBuffer] = None
        self.readers: Dict[str, MapReader] = {}
        self.handlers: Dict[int, Callable] = {}
        self.pending: List[str] = []  # printf text not yet written (text mode)
        self.end_fd: Optional[int] = None
        self.stop_reason: Optional[str] = None
        self.lost_reported = 0
        self.events = 0
        self.child: Optional[_Child] = None

    # ---- loading ------------------------------------------------------------------------------
    def _usdt_requests(self) -> List[tuple]:
        out = []
        for a in self.c.attachments:
            s = a.spec
            if s.provider == "usdt":
                out.append((self.resolve_path(s.target), f"{s.ns}:{s.func}" if s.ns else s.func, a.fn_name))
        return out

    def load(self) -> None:
        functions = sorted({a.fn_name for a in self.c.attachments})
        try:
            obj = bpfobj.compile_bpf(self.c.text, functions, self._usdt_requests(), self.headers,
                                     use_cache=self.use_cache)
        except bpfobj.CompileFailed as e:
            if "BPF stack limit" in e.log:
                raise TraceError("the program needs more than the 512 bytes of stack a BPF program may use "
                                 "(too many large strings, tuples or map keys in one probe): use fewer or "
                                 "shorter ones, e.g. str(x, 32)") from None
            raise TraceError(f"BCC could not compile the generated program: {e}\n"
                             f"{_tail(e.log.splitlines(), 25)}\n"
                             f"(this is a kubectl-pytrace bug; `--dump c` shows the C)") from None
        self.obj = obj
        self.loader = Loader(obj, tracefs.ensure_tracefs())
        self.loader.create_maps()
        fds = self.loader.map_fds
        ring_def = obj.maps[self.c.ringbuf]
        self.ring = RingBuffer(fds[self.c.ringbuf], ring_def.max_entries)
        stacks = obj.maps.get("pytrace_stacks")
        stack_map = bpfsys.RawMap(fds["pytrace_stacks"], 4, stacks.value_size) if stacks else None
        sym = Symbols(self.c.probe_names, stack_map, self.proc_root)
        for name, spec in self.c.maps.items():
            self.readers[name] = MapReader(spec, fds[spec.cname], sym)
        for ev in self.c.events.values():
            self.handlers[ev.id] = self._handler(ev, sym)
        if self.scope is not None:
            self.write_scope(self.scope[0])
        self.config = bpfsys.RawMap(fds[self.c.config_map], 4, 8)
        self.config.update(struct.pack("<I", CONFIG_START_NS), struct.pack("<Q", time.monotonic_ns()))

    def write_scope(self, f) -> None:
        """Writes the container's ids into the program (and invalidates cached verdicts)."""
        fds = self.loader.map_fds  # type: ignore[union-attr]
        cfg = bpfsys.RawMap(fds["pytrace_scope_cfg"], 4, struct.calcsize(scope_c.CFG_FORMAT))
        cfg.update(struct.pack("<I", 0), struct.pack(scope_c.CFG_FORMAT, f.cgroup_id, f.cgroup_level,
                                                     f.pidns_dev, f.pidns_ino, f.mntns_ino, f.tgid))
        if self.scope_gen:
            self.bump_scope_gen()

    def bump_scope_gen(self) -> None:
        fds = self.loader.map_fds  # type: ignore[union-attr]
        if "pytrace_scope_gen" in fds:
            self.scope_gen += 1
            bpfsys.RawMap(fds["pytrace_scope_gen"], 4, 8).update(struct.pack("<I", 0),
                                                                 struct.pack("<Q", self.scope_gen))

    def _printf_handler(self, ev: EventSpec, sym: Symbols) -> Callable:
        """One Python function per printf call site, compiled once: unpack, convert, format.

        In text mode the texts are collected and written once per batch (_flush_text); in JSON
        mode each printf is its own record."""
        fmt = printf_format.compile_format(ev.fmt)  # type: ignore[arg-type]
        fields = ev.record.fields
        names = [f"a{i}" for i in range(len(fields))]
        expr, env = fmt.python_expression(names)
        unpack = struct.Struct(ev.record.struct_format()).unpack_from if fields else None
        lines = ["def handler(buf):"]
        if fields:
            items = [field_count(f.type) for f in fields]
            if any(n != 1 for n in items):  # tuples, stacks, usym...: the general decoder
                env["_decode"] = RecordDecoder(ev.record, sym)
                lines.append(f"    {', '.join(names)}, = _decode(buf)")
            else:
                env["_unpack"] = unpack
                lines.append(f"    {', '.join(names)}, = _unpack(buf, {fields[0].offset})")
                for i, f in enumerate(fields):
                    if isinstance(f.type, StrT):
                        lines.append(f"    a{i} = a{i}.split(b'\\0', 1)[0].decode('utf-8', 'surrogateescape')")
                    else:
                        conv = converter(f.type, sym)
                        if conv is not None:
                            env[f"_c{i}"] = conv
                            lines.append(f"    a{i} = _c{i}((a{i},))")
        if self.json:
            env["_emit"] = self.out.printf
        else:
            env["_emit"] = self.pending.append
        lines.append(f"    _emit({expr})")
        exec("\n".join(lines), env)  # the source is built from our own names and numbers only
        return env["handler"]

    def _flush_text(self) -> None:
        if self.pending:
            self.out.printf("".join(self.pending))
            self.pending.clear()

    def _ordered(self, handler: Callable) -> Callable:
        """Non-printf events print after the printf text collected before them."""
        def run(buf):
            self._flush_text()
            return handler(buf)
        return run

    def _handler(self, ev: EventSpec, sym: Symbols) -> Callable:
        if ev.kind == "printf":
            return self._printf_handler(ev, sym)
        return self._ordered(self._other_handler(ev, sym))

    def _other_handler(self, ev: EventSpec, sym: Symbols) -> Callable:
        decode = RecordDecoder(ev.record, sym)
        out = self.out
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
        if ev.kind == "cat":
            name_of = printf_format.compile_format(ev.fmt)  # type: ignore[arg-type]
            return lambda buf: self._cat(name_of(decode(buf)))
        if ev.kind == "join":
            sep = ev.fmt

            def on_join(buf):
                parts = []
                for part in decode(buf):  # the strings up to the first empty one, as bpftrace
                    if not part:
                        break
                    parts.append(part)
                out.join(sep.join(parts))  # type: ignore[union-attr]
            return on_join
        raise AssertionError(ev.kind)

    def _cat(self, filename: str) -> None:
        """bpftrace's cat(): at most CAT_BYTES_MAX bytes of the file, as they are."""
        try:
            with open(filename, "rb") as f:
                data = f.read(CAT_BYTES_MAX)
        except OSError as e:
            self.out.flush()
            print(f"ERROR: failed to open file '{filename}': {e.strerror}", file=self.stderr, flush=True)
            return
        self.out.cat(from_bytes(data))

    def _on_exit(self, buf) -> bool:
        self.stop_reason = self.stop_reason or "exit"
        return False

    # ---- attaching ----------------------------------------------------------------------------
    def attach(self) -> int:
        n = 0
        internal_done = False
        skipped: List[tuple] = []
        for a in self.c.attachments:
            if not a.internal and not internal_done:
                internal_done = True
                if self.scope is not None:
                    self.bump_scope_gen()  # the invalidating probes run: cached verdicts are safe
            try:
                self._attach_one(a)
            except bpfsys.VerifierError as e:
                if not e.log.strip():  # refused before verification (EPERM, EINVAL...)
                    failure = self._attach_error(a, e)
                else:
                    failure = (f"cannot attach {a.spec.name()}: the BPF verifier rejected the program "
                               f"({e.strerror}); its last lines:\n{_tail(e.log.splitlines())}")
            except (AttachFailed, ELFError) as e:
                failure = self._attach_error(a, str(e))
            except OSError as e:
                failure = self._attach_error(a, e)
            else:
                n += 0 if a.internal else 1
                continue
            if not a.optional:
                raise TraceError(failure)
            # one of several attach points, or a wildcard's match: bpftrace 0.17 skips it too
            skipped.append((a.spec.name(), failure))
        for name, failure in skipped[:3]:
            print(f"WARNING: could not attach probe {name}, skipping. ({failure})", file=self.stderr)
        if len(skipped) > 3:
            print(f"WARNING: {len(skipped) - 3} more probes could not be attached and were skipped",
                  file=self.stderr)
        if n == 0 and any(not a.internal for a in self.c.attachments):
            raise TraceError("no probe could be attached")
        return n

    def _attach_error(self, a: AttachSpec, e) -> str:
        s = a.spec
        reason = e if isinstance(e, str) else (e.strerror or str(e))
        if s.provider in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
            if not os.path.exists(os.path.join(tracefs.ensure_tracefs(), "kprobe_events")):
                return (f"cannot attach {s.name()}: this kernel has no kprobes (CONFIG_KPROBES is not set) "
                        f"and the fentry fallback failed: {reason}")
        return f"cannot attach {s.name()}: {reason}"

    def _attach_one(self, a: AttachSpec) -> None:
        ld, s, fn = self.loader, a.spec, a.fn_name
        p = s.provider
        if p == "rawtracepoint":
            ld.raw_tracepoint(ld.load(fn, bpfsys.PROG_TYPES["raw_tracepoint"]), s.func)
        elif p in ("BEGIN", "END"):
            fd = ld.load(fn, bpfsys.PROG_TYPES["raw_tracepoint"])
            if p == "BEGIN":
                self.begin_fd = fd
            else:
                self.end_fd = fd
        elif p == "tracepoint":
            ld.tracepoint(ld.load(fn, bpfsys.PROG_TYPES["tracepoint"]), s.target, s.func)
        elif p in ("uprobe", "uretprobe"):
            path = self.resolve_path(s.target)
            off = ld.address_offset(path, s.address) if s.address is not None else ld.symbol_offset(path, s.func)
            ld.uprobe(ld.load(fn, bpfsys.PROG_TYPES["kprobe"]), path, off, retprobe=p == "uretprobe")
        elif p == "usdt":
            self._attach_usdt(a)
        elif p in ("kprobe", "kretprobe") and self.c.kprobe_mode == "kprobe":
            ld.kprobe(ld.load(fn, bpfsys.PROG_TYPES["kprobe"]), s.func, retprobe=p == "kretprobe")
        elif p in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
            self._attach_fentry(a)
        elif p == "profile":
            fd = ld.load(fn, bpfsys.PROG_TYPES["perf_event"])
            if s.unit == "hz":
                ld.cpu_clock(fd, freq=s.rate)
            else:
                ld.cpu_clock(fd, period_ns=s.rate * TIME_UNITS[s.unit])
        elif p == "interval":
            fd = ld.load(fn, bpfsys.PROG_TYPES["perf_event"])
            period = 1_000_000_000 // s.rate if s.unit == "hz" else s.rate * TIME_UNITS[s.unit]
            ld.cpu_clock(fd, period_ns=period, cpus=[bpfsys.online_cpus()[0]])
        else:
            raise AttachFailed(f"unsupported probe type {p}")

    def _attach_usdt(self, a: AttachSpec) -> None:
        s = a.spec
        path = self.resolve_path(s.target)
        elf = open_elf(path)
        notes = [n for n in elf.usdt_notes() if n.name == s.func and (not s.ns or n.provider == s.ns)]
        if not notes:
            raise AttachFailed(f"no USDT probe {s.ns + ':' if s.ns else ''}{s.func} in {path}")
        fd = self.loader.load(a.fn_name, bpfsys.PROG_TYPES["kprobe"])
        for note in notes:
            sem = elf.vaddr_to_offset(note.semaphore) if note.semaphore else 0
            self.loader.uprobe(fd, path, elf.vaddr_to_offset(note.pc), ref_ctr_offset=sem)

    def _attach_fentry(self, a: AttachSpec) -> None:
        from kubectl_pytrace.kernel.btf import BTF, FUNC

        s = a.spec
        btf = BTF.load()
        ids = [i for i in btf.ids_named(s.func) if btf.kind(i) == FUNC]
        if not ids:
            raise AttachFailed(f"kernel function '{s.func}' is not in the kernel's BTF")
        exit_ = s.provider in ("kretprobe", "kretfunc")
        fd = self.loader.load(a.fn_name, bpfsys.PROG_TYPES["tracing"],
                              bpfsys.ATTACH_FEXIT if exit_ else bpfsys.ATTACH_FENTRY, ids[0])
        self.loader.link(bpfsys.raw_tracepoint_open(fd))

    def detach_probes(self) -> None:
        """Detaches every probe (END stays loaded: it runs after)."""
        if self.loader is not None:
            self.loader.detach()

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
            self._flush_text()
            self.out.flush()

    def lost(self) -> int:
        if self.loader is None:
            return 0
        raw = bpfsys.RawMap(self.loader.map_fds[self.c.lost_map], 4, 8, per_cpu=True)
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

        The forked child stops itself (SIGSTOP: no read or open that a trace of its syscalls
        would see), cpid is written into the config map, then the child is continued and execs.
        An exec failure comes back through a close-on-exec pipe.
        """
        path = shutil.which(command[0])
        if path is None:
            raise TraceError(f"cannot run {command[0]}: command not found")
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.kill(os.getpid(), signal.SIGSTOP)
                os.execv(path, command)
            except OSError as e:
                os.write(err_w, str(e.errno).encode())
            finally:
                os._exit(127)
        os.close(err_w)
        _, status = os.waitpid(pid, os.WUNTRACED)
        self.child = _Child(pid)
        if not os.WIFSTOPPED(status):
            self.child.status = os.waitstatus_to_exitcode(status)
            os.close(err_r)
            raise TraceError(f"cannot run {command[0]}: the child process died before exec")
        self.config.update(struct.pack("<I", CONFIG_CPID), struct.pack("<Q", pid))
        os.kill(pid, signal.SIGCONT)
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
            # stdout carries only the program's output (bpftrace prints "Attaching N probes..."
            # there); the count goes to stderr
            print(f"Attached {n} probe{'s' if n != 1 else ''}", file=self.stderr, flush=True)
            self.run_prog(self.begin_fd)
            self.drain()  # BEGIN's output now, not at the next poll
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
                if self.scope is not None:
                    changed = self.scope[1].poll()  # a restarted container has new ids
                    if changed is not None:
                        self.write_scope(changed)
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
        if self.loader is not None:
            self.loader.close()
            self.loader = None
