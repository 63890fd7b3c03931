"""Attaching a compiled program's probes: AttachSpecs -> the loader calls their providers need.

    attacher = Attacher(program, loader, resolve_paths, stderr)
    n = attacher.attach_all(before_first=...)    # "Attached n probes"; raises TraceError
    attacher.paths                                 # which way each kind of probe went in (-v)

Detaching is what costs: closing a perf event waits for an RCU grace period (~0.1 s on a small VM;
tracepoints' one after another, under the kernel's event_mutex). So attach points go in together
where the kernel allows it:
- uprobe_multi: one function's uprobes on one file through one link (Linux 6.6); a function that
  serves a wildcard's matches reads which one fired (`probe`, `func`) from the uprobe's cookie.
  Without uprobe_multi: a perf event each, the cookie through a perf link.
- kprobe_multi: one function's kprobes (kretprobes) through one link (Linux 5.18, CONFIG_FPROBE);
  where the kernel refuses it, a perf event each (the cookie through a perf link), and -v says why.
- syscall dispatch: the syscalls:sys_enter_*/sys_exit_* tracepoints through one perf event on
  raw_syscalls:sys_enter/sys_exit whose program tail-calls theirs by system call number
  (bpf/dispatch.py), as the kernel itself fires them. Without BTF, for a system call newer than
  kernel/syscall_table.py, or in a program that takes stacks (a kernel stack taken there lacks
  the syscalls:* event's own frame, perf_syscall_enter): a perf event each.
- anything else: a perf event, raw tracepoint or fentry link each.
PYTRACE_SINGLE_ATTACH=1 attaches every point on its own (the paths before uprobe_multi and the
dispatcher; the tests and benchmarks compare the two).

Failures become messages that say which probe and why. As bpftrace 0.17, an attachment that is one
of several attach points of a probe, or one match of a wildcard, is skipped with a warning when it
fails (AttachSpec.optional); a lone one, or a program left with nothing attached, is an error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Callable, Dict, List, Optional, Tuple

from kubectl_pytrace.bpf import links
from kubectl_pytrace.bpf import syscalls as bpfsys
from kubectl_pytrace.bpf.loader import AttachFailed, Loader
from kubectl_pytrace.errors import LookupFailed, TraceError
from kubectl_pytrace.host.elf import address_file_offset, open_elf, symbol_file_offset
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.kernel.syscall_table import NUMBERS as SYSCALL_NUMBERS
from kubectl_pytrace.lang.probes import EVENT_ALIASES, HARDWARE_EVENTS, SOFTWARE_EVENTS, TIME_UNITS, ProbeSpec
from kubectl_pytrace.lang.program import AttachSpec, CProgram

SKIPPED_SHOWN = 3  # warnings printed one by one; the rest are counted
ATTACH_ERRORS = (OSError, AttachFailed, LookupFailed)  # bpfsys.VerifierError is an OSError
UPROBE_MULTI, SYSCALL_DISPATCH, KPROBE_MULTI = "uprobe_multi link", "syscall dispatcher", "kprobe_multi link"


def tail(lines: List[str], n: int = 12) -> str:
    kept = [line for line in lines if line.strip()]
    return "\n".join("  " + line for line in kept[-n:])


def single_attach() -> bool:
    return os.environ.get("PYTRACE_SINGLE_ATTACH") == "1"


@lru_cache(maxsize=1)
def compat_status_offset() -> Optional[int]:
    """Where task_struct.thread_info.status is (its TS_COMPAT bit marks a 32-bit system call, which
    syscalls:* tracepoints ignore), from the kernel's BTF; None without BTF."""
    from kubectl_pytrace.kernel.btf import BTF, BTFError

    try:
        return BTF.load().field("struct task_struct", "thread_info.status").offset
    except (OSError, BTFError):
        return None


def syscall_event(s: ProbeSpec) -> Optional[Tuple[str, int]]:
    """("sys_enter", 257) for tracepoint:syscalls:sys_enter_openat; None for other tracepoints."""
    if s.provider != "tracepoint" or s.target != "syscalls":
        return None
    event, _, name = s.func.partition("_")[2].partition("_")
    nr = SYSCALL_NUMBERS.get(name)
    return (f"sys_{event}", nr) if event in ("enter", "exit") and nr is not None else None


@dataclass
class AttachPath:
    """How a kind of attach point went in: `points` of the program's, through `objects` perf events
    or links (what detaching closes), in `seconds`."""

    kind: str
    points: int = 0
    objects: int = 0
    seconds: float = 0.0


Batch = List[AttachSpec]


class Attacher:
    def __init__(self, program: CProgram, loader: Loader, resolve_paths: Callable[[str], List[str]],
                 stderr: IO):
        self.c = program
        self.loader = loader
        self.resolve_paths = resolve_paths  # a binary -> the host paths (one per distinct file)
        self.stderr = stderr
        self.begin_fd: Optional[int] = None
        self.end_fd: Optional[int] = None
        self.paths: Dict[str, AttachPath] = {}

    def attach_all(self, before_first: Callable[[], None] = lambda: None) -> int:
        """Attaches every probe; returns how many of the program's own are attached.

        before_first runs once the runtime's internal probes are in and before the program's
        first (the container scope's cache is enabled there)."""
        for a in self.c.attachments:
            if a.internal:
                failure = self._try(a)
                if failure is not None:
                    raise TraceError(failure)
        # then BEGIN, run at once: as bpftrace, BEGIN runs before the program's other probes are
        # attached (and prints before any of their events)
        own = sorted((a for a in self.c.attachments if not a.internal), key=lambda a: a.spec.provider != "BEGIN")
        if own:
            before_first()
        failures: Dict[int, str] = {}
        for kind, batch in self._batches(own):
            failures.update(self._attach_batch(kind, batch))
        return self._count(own, failures)

    def _count(self, own: List[AttachSpec], failures: Dict[int, str]) -> int:
        skipped: List[Tuple[str, str]] = []
        for a in own:
            failure = failures.get(id(a))
            if failure is None:
                continue
            if not a.optional:
                raise TraceError(failure)
            skipped.append((a.spec.name(), failure))  # one of several attach points, or a wildcard's match
        self._warn_skipped(skipped)
        if own and len(skipped) == len(own):
            raise TraceError("no probe could be attached")
        return len(own) - len(skipped)

    # ---- batches: attach points that go in together ----------------------------------------------
    def _batches(self, own: List[AttachSpec]) -> List[Tuple[str, Batch]]:
        """(kind, attachments) in the order of each batch's first attachment."""
        keyed: Dict[tuple, Batch] = {}
        out: List[Tuple[str, Batch]] = []
        for a in own:
            key = self._batch_key(a)
            if key is None:
                out.append((self._single_kind(a), [a]))
            elif key in keyed:
                keyed[key].append(a)
            else:
                keyed[key] = [a]
                out.append((key[0], keyed[key]))
        return out

    def _batch_key(self, a: AttachSpec) -> Optional[tuple]:
        s = a.spec
        if single_attach():
            return None
        if s.provider in ("uprobe", "uretprobe") and links.has_uprobe_multi():
            return (UPROBE_MULTI, a.fn_name, s.kernel_return)
        if s.provider in ("kprobe", "kretprobe") and not s.is_fentry(self.c.kprobe_mode):
            return (KPROBE_MULTI, a.fn_name, s.provider)
        event = syscall_event(s)
        if event is not None and not self.c.uses_stacks and compat_status_offset() is not None:
            return (SYSCALL_DISPATCH, event[0])
        return None

    def _single_kind(self, a: AttachSpec) -> str:
        p = a.spec.provider
        if p in ("BEGIN", "END"):
            return "BEGIN/END (run, not attached)"
        if p == "rawtracepoint":
            return "raw tracepoint"
        if a.spec.is_fentry(self.c.kprobe_mode):
            return "fentry/fexit link"
        return "perf event"

    def _attach_batch(self, kind: str, batch: Batch) -> Dict[int, str]:
        """Attaches a batch; {id(attachment): why not} of those that failed."""
        start, objects = time.monotonic(), len(self.loader.links)
        if kind == UPROBE_MULTI:
            failures = self._uprobe_multi(batch)
        elif kind == KPROBE_MULTI:
            kind, failures = self._kprobe_multi(batch)
        elif kind == SYSCALL_DISPATCH:
            failures = self._syscall_dispatch(batch)
        else:
            failures = {id(a): f for a in batch for f in [self._try(a)] if f is not None}
        path = self.paths.setdefault(kind, AttachPath(kind))
        path.points += sum(1 for a in batch if id(a) not in failures)
        path.objects += len(self.loader.links) - objects
        path.seconds += time.monotonic() - start
        return failures

    def _uprobe_multi(self, batch: Batch) -> Dict[int, str]:
        """One function's uprobes (or uretprobes), one link per file, each uprobe's cookie its
        probe id; offsets the kernel refuses fail alone."""
        try:
            fd = self._load(batch[0], "kprobe", links.ATTACH_UPROBE_MULTI)
        except ATTACH_ERRORS as e:
            return {id(a): self._why(a, e) for a in batch}
        failures: Dict[int, str] = {}
        per_file: Dict[str, List[Tuple[AttachSpec, int]]] = {}
        paths: Dict[str, List[str]] = {}  # a wildcard's matches share their binary
        for a in batch:
            try:
                if a.spec.target not in paths:
                    paths[a.spec.target] = self.resolve_paths(a.spec.target)
                for path in paths[a.spec.target]:
                    per_file.setdefault(path, []).append((a, self._offset(path, a.spec)))
            except ATTACH_ERRORS as e:
                failures[id(a)] = self._why(a, e)
        for path, points in per_file.items():
            refused = self.loader.uprobe_multi(fd, path, [off for _, off in points], [a.probe_id for a, _ in points],
                                               retprobe=batch[0].spec.kernel_return)
            for i, e in refused.items():
                a = points[i][0]
                failures.setdefault(id(a), self._why(a, e))
        return failures

    def _kprobe_multi(self, batch: Batch) -> Tuple[str, Dict[int, str]]:
        """One function's kprobes (or kretprobes) in one link, each one's cookie its probe id; the
        kernel registers all or none: where it refuses (no fprobe, or a function it cannot
        probe), a perf event each, whose failures then say which function and why."""
        if len(batch) > 1:
            try:
                fd = self._load(batch[0], "kprobe", links.ATTACH_KPROBE_MULTI)
                self.loader.kprobe_multi(fd, [a.spec.func for a in batch], [a.probe_id for a in batch],
                                         retprobe=batch[0].spec.provider == "kretprobe")
                return KPROBE_MULTI, {}
            except ATTACH_ERRORS as e:
                why = (e.strerror or str(e)) if isinstance(e, OSError) else e.message
                kind = f"perf event (the kernel refused a kprobe_multi link: {why})"
        else:
            kind = "perf event"
        return kind, {id(a): f for a in batch for f in [self._try(a)] if f is not None}

    def _syscall_dispatch(self, batch: Batch) -> Dict[int, str]:
        """syscalls:sys_enter_* (or sys_exit_*) programs in tables by number, a dispatcher on
        raw_syscalls for each table: a second program for one system call (another probe on it)
        goes in the next table."""
        failures: Dict[int, str] = {}
        tables: List[Dict[int, Tuple[int, AttachSpec]]] = []
        event = ""
        for a in batch:
            event, nr = syscall_event(a.spec)  # type: ignore[misc]
            try:
                fd = self._load(a, "tracepoint")
            except ATTACH_ERRORS as e:
                failures[id(a)] = self._why(a, e)
                continue
            table = next((t for t in tables if nr not in t), None)
            if table is None:
                table = {}
                tables.append(table)
            table[nr] = (fd, a)
        for table in tables:
            try:
                self.loader.syscall_dispatch(event, {nr: fd for nr, (fd, _) in table.items()},
                                             compat_status_offset())  # type: ignore[arg-type]
            except OSError:  # one perf event each, as before the dispatcher
                failures.update({id(a): f for _, a in table.values() for f in [self._try(a)] if f is not None})
        return failures

    # ---- one attachment ---------------------------------------------------------------------------
    def _try(self, a: AttachSpec) -> Optional[str]:
        """None when attached, else why not."""
        try:
            self._attach(a)
        except ATTACH_ERRORS as e:
            return self._why(a, e)
        return None

    def _why(self, a: AttachSpec, e: Exception) -> str:
        if isinstance(e, bpfsys.VerifierError) and e.log.strip():
            return (f"cannot attach {a.spec.name()}: the BPF verifier rejected the program "
                    f"({e.strerror}); its last lines:\n{tail(e.log.splitlines())}")
        if isinstance(e, (AttachFailed, LookupFailed)):
            return self._failure(a, e.message)
        return self._failure(a, e)  # refused before verification (EPERM, EINVAL...), or attaching

    def _warn_skipped(self, skipped: List[Tuple[str, str]]) -> None:
        for name, failure in skipped[:SKIPPED_SHOWN]:
            print(f"WARNING: could not attach probe {name}, skipping. ({failure})", file=self.stderr)
        if len(skipped) > SKIPPED_SHOWN:
            print(f"WARNING: {len(skipped) - SKIPPED_SHOWN} more probes could not be attached and were "
                  f"skipped", file=self.stderr)

    def _failure(self, a: AttachSpec, e) -> str:
        s = a.spec
        reason = e if isinstance(e, str) else (e.strerror or str(e))
        if s.provider in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
            if not os.path.exists(os.path.join(tracefs.ensure_tracefs(), "kprobe_events")):
                return (f"cannot attach {s.name()}: this kernel has no kprobes (CONFIG_KPROBES is not set) "
                        f"and the fentry fallback failed: {reason}")
        return f"cannot attach {s.name()}: {reason}"

    def _attach(self, a: AttachSpec) -> None:
        s = a.spec
        if s.is_fentry(self.c.kprobe_mode):
            self._fentry(a)
            return
        attach = getattr(self, "_" + s.provider, None)
        if attach is None:
            raise AttachFailed(f"unsupported probe type {s.provider}")
        attach(a)

    def _load(self, a: AttachSpec, prog_type: str, *extra: int) -> int:
        return self.loader.load(a.fn_name, bpfsys.PROG_TYPES[prog_type], *extra)

    @staticmethod
    def _offset(path: str, s: ProbeSpec) -> int:
        if s.address is not None:
            return address_file_offset(path, s.address)
        return symbol_file_offset(path, s.func) + (s.ret_site or 0)

    # ---- one attachment per provider -------------------------------------------------------------
    def _INIT(self, a: AttachSpec) -> None:
        """The program's own setup (its tables of names): run once, now, never attached."""
        bpfsys.test_run(self._load(a, "raw_tracepoint"))

    def _BEGIN(self, a: AttachSpec) -> None:
        """Run now, by BPF_PROG_TEST_RUN (never attached); begin_fd stays None so that nobody
        runs it twice."""
        bpfsys.test_run(self._load(a, "raw_tracepoint"))

    def _END(self, a: AttachSpec) -> None:
        self.end_fd = self._load(a, "raw_tracepoint")

    def _rawtracepoint(self, a: AttachSpec) -> None:
        self.loader.raw_tracepoint(self._load(a, "raw_tracepoint"), a.spec.func)

    def _tracepoint(self, a: AttachSpec) -> None:
        self.loader.tracepoint(self._load(a, "tracepoint"), a.spec.target, a.spec.func)

    def _uprobe(self, a: AttachSpec) -> None:
        s = a.spec
        cookie = a.probe_id if a.by_cookie else None
        for path in self.resolve_paths(s.target):
            self.loader.uprobe(self._load(a, "kprobe"), path, self._offset(path, s),
                               retprobe=s.kernel_return, cookie=cookie)

    _uretprobe = _uprobe

    def _usdt(self, a: AttachSpec) -> None:
        s = a.spec
        for path in self.resolve_paths(s.target):
            elf = open_elf(path)
            notes = [n for n in elf.usdt_notes() if n.name == s.func and (not s.ns or n.provider == s.ns)]
            if not notes:
                raise AttachFailed(f"no USDT probe {s.ns + ':' if s.ns else ''}{s.func} in {path}")
            fd = self._load(a, "kprobe")
            for note in notes:
                sem = elf.vaddr_to_offset(note.semaphore) if note.semaphore else 0
                self.loader.uprobe(fd, path, elf.vaddr_to_offset(note.pc), ref_ctr_offset=sem)

    def _kprobe(self, a: AttachSpec) -> None:
        self.loader.kprobe(self._load(a, "kprobe"), a.spec.func, retprobe=a.spec.provider == "kretprobe",
                           cookie=a.probe_id if a.by_cookie else None)

    _kretprobe = _kprobe

    def _fentry(self, a: AttachSpec) -> None:
        from kubectl_pytrace.kernel.btf import BTF, FUNC

        s = a.spec
        btf = BTF.load()
        ids = [i for i in btf.ids_named(s.func) if btf.kind(i) == FUNC]
        if not ids:
            raise AttachFailed(f"kernel function '{s.func}' is not in the kernel's BTF")
        exit_ = s.provider in ("kretprobe", "kretfunc")
        fd = self._load(a, "tracing", bpfsys.ATTACH_FEXIT if exit_ else bpfsys.ATTACH_FENTRY, ids[0])
        self.loader.link(bpfsys.raw_tracepoint_open(fd))

    def _profile(self, a: AttachSpec) -> None:
        s = a.spec
        fd = self._load(a, "perf_event")
        if s.unit == "hz":
            self.loader.cpu_clock(fd, freq=s.rate)
        else:
            self.loader.cpu_clock(fd, period_ns=s.rate * TIME_UNITS[s.unit])

    def _software(self, a: AttachSpec) -> None:
        s = a.spec
        events = SOFTWARE_EVENTS if s.provider == "software" else HARDWARE_EVENTS
        config, default = events[EVENT_ALIASES.get(s.func, s.func)]
        kind = bpfsys.PERF_TYPE_SOFTWARE if s.provider == "software" else bpfsys.PERF_TYPE_HARDWARE
        self.loader.perf_event(self._load(a, "perf_event"), kind, config, s.rate or default)

    _hardware = _software

    def _iter(self, a: AttachSpec) -> None:
        raise AttachFailed("iter probes run as BPF iterators (tracing programs), which kubectl-pytrace does "
                           "not run yet")

    def _interval(self, a: AttachSpec) -> None:
        s = a.spec
        fd = self._load(a, "perf_event")
        period = 1_000_000_000 // s.rate if s.unit == "hz" else s.rate * TIME_UNITS[s.unit]
        self.loader.cpu_clock(fd, period_ns=period, cpus=[bpfsys.online_cpus()[0]])
