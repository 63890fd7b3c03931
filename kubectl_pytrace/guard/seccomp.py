"""seccomp profiles from the system calls a container was seen to make.

    PROGRAM                                   the trace that records them (scoped to the container
                                              by the engine, like any trace): @syscalls[nr] = count
    counts = syscall_counts(map_dumps)        {nr: calls}
    p = Profile.build(counts, "amd64", base=runtime_base())
    p.oci() -> dict                           Docker / OCI runtime profile (JSON)
    p.custom_resource(name, namespace)        a Security Profiles Operator SeccompProfile
    check(p) -> Check                         compiled with libseccomp where its bindings exist

Everything the container was not seen to call is refused with EPERM (defaultAction
SCMP_ACT_ERRNO). Only the architecture the calls were recorded on is listed: a call through
another ABI (32-bit code on x86_64) is refused too.

Recording a container that already runs misses what happened before: the runtime's own calls
between installing the filter and starting the container's process, and that process's start (the
dynamic loader, libc's set-up). A profile without them would stop the container from starting
again, so the "runtime" base is added: those calls as measured with runc 1.1 (Debian 12's, the
runtime of Docker 20.10 and containerd 1.6 here) starting a dynamically linked and a static program
(tests/seccomp re-measures it and checks that the base still covers it), plus the calls the Go
runtime inside runc may make at any moment (signals, threads, memory).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from kubectl_pytrace.errors import UsageError, UserError
from kubectl_pytrace.guard import syscall_names

PROGRAM = "tracepoint:raw_syscalls:sys_enter { @syscalls[args->id] = count(); }\n"
MAP = "@syscalls"
SPO_API = "security-profiles-operator.x-k8s.io/v1beta1"

# arch as Kubernetes (GOARCH) or uname says it -> (libseccomp's name, number -> name table)
ARCHES = {
    "amd64": ("SCMP_ARCH_X86_64", syscall_names.X86_64), "x86_64": ("SCMP_ARCH_X86_64", syscall_names.X86_64),
    "arm64": ("SCMP_ARCH_AARCH64", syscall_names.AARCH64), "aarch64": ("SCMP_ARCH_AARCH64", syscall_names.AARCH64),
}

# runc 1.1 between its prctl(PR_SET_SECCOMP) and the container's execve (measured: see the
# module's docstring)
RUNC_AFTER_FILTER = (
    "capget", "capset", "chdir", "close", "epoll_ctl", "epoll_pwait", "execve", "faccessat2", "fcntl", "fstat",
    "fstatfs", "futex", "getcwd", "getdents64", "getpid", "getppid", "nanosleep", "newfstatat", "openat", "prctl",
    "read", "rt_sigreturn", "sched_yield", "setgid", "setgroups", "setuid", "tgkill", "write")
# what the Go runtime in runc may call at any time: signals, threads (clone or clone3: both seen), memory,
# timers
GO_RUNTIME = (
    "clone", "clone3", "exit", "gettid", "madvise", "mmap", "munmap", "rt_sigaction", "rt_sigprocmask", "sigaltstack")
# a process's start and end: execve, the dynamic loader, glibc's and busybox's set-up, exit
# (measured with /bin/true of Debian 12 and Debian's static busybox)
PROCESS_START = (
    "access", "arch_prctl", "brk", "close", "execve", "exit_group", "getrandom", "getuid", "mmap", "mprotect",
    "munmap", "newfstatat", "openat", "prctl", "pread64", "prlimit64", "read", "readlink", "rseq",
    "set_robust_list", "set_tid_address")


class ProfileError(UserError):
    pass


_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def resource_name(name: str) -> str:
    """A SeccompProfile's name as Kubernetes takes it (a DNS subdomain); UsageError otherwise."""
    if len(name) > 253 or not _RESOURCE_NAME.match(name):
        raise UsageError(f"invalid name for a SeccompProfile: {name!r}",
                         hint="lower-case letters, digits, '-' and '.', starting and ending with a letter or "
                              "digit, at most 253 characters")
    return name


def runtime_base() -> Set[str]:
    return set(RUNC_AFTER_FILTER) | set(GO_RUNTIME) | set(PROCESS_START)


def read_base(spec: str) -> Tuple[str, Set[str]]:
    """--base: "runtime" (the default), "none", or a file: an OCI/Docker profile (its allowed
    names) or a JSON list of names. Returns (what it is, the names)."""
    if spec == "runtime":
        return "the runtime's start (runc 1.1)", runtime_base()
    if spec == "none":
        return "nothing", set()
    try:
        with open(spec, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"--base {spec}: {getattr(e, 'strerror', None) or e}") from None
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return spec, set(data)
    if isinstance(data, dict):
        return spec, {n for r in data.get("syscalls", []) if r.get("action") == "SCMP_ACT_ALLOW"
                      for n in r.get("names", [])}
    raise UsageError(f"--base {spec}: not a seccomp profile nor a JSON list of system call names")


def syscall_counts(dumps: Iterable) -> Dict[int, int]:
    """{number: calls} from the trace's maps (output/values.MapDump)."""
    counts: Dict[int, int] = {}
    for d in dumps:
        if d.name == MAP:
            for key, value in d.entries:
                nr = int(key[0])
                counts[nr] = counts.get(nr, 0) + int(value)
    return counts


def arch_of(arch: str) -> Tuple[str, Dict[int, str]]:
    try:
        return ARCHES[arch]
    except KeyError:
        raise ProfileError(f"no system call table for architecture {arch!r} (known: amd64, arm64)") from None


@dataclass
class Profile:
    arch: str  # SCMP_ARCH_...
    observed: Dict[str, int]  # name -> calls seen
    base: Set[str] = field(default_factory=set)
    unknown: List[int] = field(default_factory=list)  # numbers without a name: left out

    @staticmethod
    def build(counts: Dict[int, int], arch: str, base: Set[str] = frozenset()) -> "Profile":  # type: ignore[assignment]
        scmp, table = arch_of(arch)
        observed: Dict[str, int] = {}
        unknown = []
        for nr, n in sorted(counts.items()):
            if nr in table:
                observed[table[nr]] = observed.get(table[nr], 0) + n
            else:
                unknown.append(nr)
        return Profile(scmp, observed, set(base), unknown)

    @property
    def names(self) -> List[str]:
        return sorted(set(self.observed) | self.base)

    def oci(self) -> Dict[str, object]:
        return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": [self.arch],
                "syscalls": [{"names": self.names, "action": "SCMP_ACT_ALLOW"}]}

    def without(self, names: Sequence[str]) -> "Profile":
        """The same profile with these calls taken out (to show that they are needed)."""
        return Profile(self.arch, {k: v for k, v in self.observed.items() if k not in names},
                       self.base - set(names), list(self.unknown))

    def custom_resource(self, name: str, namespace: Optional[str]) -> Dict[str, object]:
        meta: Dict[str, object] = {"name": resource_name(name)}
        if namespace:
            meta["namespace"] = namespace
        return {"apiVersion": SPO_API, "kind": "SeccompProfile", "metadata": meta, "spec": self.oci()}

    def summary(self, seconds: Optional[float], base_what: str) -> str:
        calls = sum(self.observed.values())
        added = sorted(self.base - set(self.observed))
        text = (f"kubectl-pytrace: seccomp: {len(self.observed)} system calls seen ({calls} calls"
                f"{f' in {seconds:g} s' if seconds else ''}); {len(added)} more from the base ({base_what}); "
                f"{len(self.names)} allowed, everything else refused (EPERM)")
        if self.unknown:
            text += f"\nwarning: system call numbers without a name on {self.arch}, left out: {self.unknown}"
        return text


@dataclass
class Check:
    rules: int  # allowed names libseccomp compiled
    instructions: int  # classic BPF instructions of the filter
    unknown: List[str]  # names this libseccomp does not know (the runtime's may not either)


def check(p: Profile) -> Optional[Check]:
    """The profile compiled with libseccomp (python3-seccomp), None where it is not installed."""
    try:
        import seccomp  # type: ignore[import-not-found]
    except ImportError:
        return None
    import tempfile

    arch = getattr(seccomp.Arch, p.arch.replace("SCMP_ARCH_", ""))
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(1))
    if int(arch) & 0xFFFFFFFF != int(seccomp.system_arch()) & 0xFFFFFFFF:  # signed here, unsigned there
        f.add_arch(arch)
        f.remove_arch(seccomp.Arch.NATIVE)
    unknown, rules = [], 0
    for name in p.names:
        try:
            f.add_rule(seccomp.ALLOW, name)
            rules += 1
        except (ValueError, RuntimeError, OSError):
            unknown.append(name)
    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        size = tmp.tell()
    return Check(rules, size // 8, unknown)
