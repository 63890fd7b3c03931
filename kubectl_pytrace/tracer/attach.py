"""Attaching a compiled program's probes: one AttachSpec -> the loader call its provider needs.

    attacher = Attacher(program, loader, resolve_paths, stderr)
    n = attacher.attach_all(before_first=...)    # "Attached n probes"; raises TraceError

Failures become messages that say which probe and why. As bpftrace 0.17, an attachment that is one
of several attach points of a probe, or one match of a wildcard, is skipped with a warning when it
fails (AttachSpec.optional); a lone one, or a program left with nothing attached, is an error.
"""

from __future__ import annotations

import os
from typing import IO, Callable, List, Optional, Tuple

from kubectl_pytrace.bpf import syscalls as bpfsys
from kubectl_pytrace.bpf.loader import AttachFailed, Loader
from kubectl_pytrace.errors import LookupFailed, TraceError
from kubectl_pytrace.host.elf import address_file_offset, open_elf, symbol_file_offset
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang.probes import EVENT_ALIASES, HARDWARE_EVENTS, SOFTWARE_EVENTS, TIME_UNITS
from kubectl_pytrace.lang.program import AttachSpec, CProgram

SKIPPED_SHOWN = 3  # warnings printed one by one; the rest are counted


def tail(lines: List[str], n: int = 12) -> str:
    kept = [line for line in lines if line.strip()]
    return "\n".join("  " + line for line in kept[-n:])


class Attacher:
    def __init__(self, program: CProgram, loader: Loader, resolve_paths: Callable[[str], List[str]],
                 stderr: IO):
        self.c = program
        self.loader = loader
        self.resolve_paths = resolve_paths  # a binary -> the host paths (one per distinct file)
        self.stderr = stderr
        self.begin_fd: Optional[int] = None
        self.end_fd: Optional[int] = None

    def attach_all(self, before_first: Callable[[], None] = lambda: None) -> int:
        """Attaches every probe; returns how many of the program's own are attached.

        before_first runs once the runtime's internal probes are in and before the program's
        first (the container scope's cache is enabled there)."""
        n = 0
        started = False
        skipped: List[Tuple[str, str]] = []
        # the runtime's own first, then BEGIN, run at once: as bpftrace, BEGIN runs before the
        # program's other probes are attached (and prints before any of their events)
        order = sorted(self.c.attachments, key=lambda a: 0 if a.internal else 1 if a.spec.provider == "BEGIN" else 2)
        for a in order:
            if not a.internal and not started:
                started = True
                before_first()
            failure = self._try(a)
            if failure is None:
                n += 0 if a.internal else 1
            elif a.optional:  # one of several attach points, or a wildcard's match
                skipped.append((a.spec.name(), failure))
            else:
                raise TraceError(failure)
        self._warn_skipped(skipped)
        if n == 0 and any(not a.internal for a in self.c.attachments):
            raise TraceError("no probe could be attached")
        return n

    def _try(self, a: AttachSpec) -> Optional[str]:
        """None when attached, else why not."""
        try:
            self._attach(a)
        except bpfsys.VerifierError as e:
            if not e.log.strip():  # refused before verification (EPERM, EINVAL...)
                return self._failure(a, e)
            return (f"cannot attach {a.spec.name()}: the BPF verifier rejected the program "
                    f"({e.strerror}); its last lines:\n{tail(e.log.splitlines())}")
        except (AttachFailed, LookupFailed) as e:
            return self._failure(a, e.message)
        except OSError as e:
            return self._failure(a, e)
        return None

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

    # ---- one attachment per provider -------------------------------------------------------------
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
        for path in self.resolve_paths(s.target):
            off = address_file_offset(path, s.address) if s.address is not None else symbol_file_offset(path, s.func)
            self.loader.uprobe(self._load(a, "kprobe"), path, off, retprobe=s.provider == "uretprobe")

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
        self.loader.kprobe(self._load(a, "kprobe"), a.spec.func, retprobe=a.spec.provider == "kretprobe")

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
