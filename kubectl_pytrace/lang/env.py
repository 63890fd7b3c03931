"""What the compiler may ask about the machine a program will run on.

The compiler never looks at the host itself: the tracer passes a HostEnvironment (tracefs, BTF, ELF
symbols of the node), the kubectl plugin on a laptop passes Environment() which knows nothing, so
only what can be checked without the node is checked there. Every query answers None for "unknown".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.errors import LookupFailed  # noqa: F401 (the passes catch it from here)
from kubectl_pytrace.lang.usdt import UsdtArg

C_ABI, GO_REGABI, GO_STACKABI = "c", "go-regabi", "go-stackabi"
# Go's internal register ABI on amd64: the integer arguments in RAX, RBX, RCX, RDI, RSI, R8, R9, R10,
# R11, as u64 slots of struct pt_regs (a string or slice takes two or three of them: str(arg0, arg1))
GO_ARG_REGS = (10, 5, 11, 14, 13, 9, 8, 7, 6)
from kubectl_pytrace.lang.types import (
    ArrayT, EnumT, IntT, PtrT, RecordT, StructT, Type, VoidT,
)




@dataclass(frozen=True)
class TracepointField:
    name: str
    type: Type
    offset: int
    size: int
    data_loc: bool = False  # __data_loc: the field holds (len << 16 | offset) of data in the record
    bit_offset: int = 0
    bit_size: int = 0


@dataclass(frozen=True)
class StructField:
    """A member reached through a BTF struct: byte offset from the struct's start, and its type."""

    offset: int
    type: Type
    bit_offset: int = 0  # for bitfields: bit position inside the bytes at `offset`
    bit_size: int = 0


class Environment:
    """The environment that knows nothing (a kubectl client far from the node)."""

    kprobes_available: Optional[bool] = None
    # bpf_get_attach_cookie() (Linux 5.15): one function serves every match of a uprobe wildcard
    attach_cookies: Optional[bool] = None

    def predefined_macros(self) -> Dict[str, str]:
        """Macros defined before a program's first line. bpftrace defines BPFTRACE_HAVE_BTF where the
        kernel has BTF; far from the node it is assumed (the node decides)."""
        return {"BPFTRACE_HAVE_BTF": "1"}

    def constant(self, name: str, includes: Sequence[str] = ()) -> Optional[int]:
        """The value of a kernel constant a program names as a bare identifier (TASK_RUNNING, AF_INET,
        TCP_ESTABLISHED): an integer #define of the headers the program #includes (as written:
        "sys/socket.h"), or an enum value of the kernel's BTF. None when unknown; LookupFailed (its
        message a hint) when the answer is "no" for a reason worth telling (a header not found)."""
        return None

    def enum_type(self, name: str, includes: Sequence[str] = ()) -> Optional["EnumT"]:
        """The enum type of a kernel constant that is a BTF enumerator (not a header #define): its
        values then print as their names (`@s[TCP_LISTEN]` prints `@s[TCP_LISTEN]`)."""
        return None

    def possible_cpus(self) -> Optional[int]:
        """How many CPUs the kernel may run (ncpus)."""
        return None

    def enum_named(self, name: str) -> Optional["EnumT"]:
        """`enum tcp_state` (by its name, without the keyword) from BTF."""
        return None

    def typedef(self, name: str) -> Optional[Type]:
        """A type named by a C typedef (pid_t, u64, uint64_t), resolved to a language type; None
        when unknown; LookupFailed (with a hint) when the answer is no."""
        return _C_TYPEDEFS.get(name)

    def cgroup_id(self, path: str) -> Optional[int]:
        """cgroupid("/sys/fs/cgroup/..."): the cgroup's id; LookupFailed when the path does not exist."""
        return None

    def kernel_symbol(self, name: str) -> Optional[int]:
        """The address of a kernel symbol (kaddr("avenrun")); LookupFailed when it does not exist."""
        return None

    def tracepoints(self, category: str, name: str) -> Optional[List[Tuple[str, str]]]:
        return None

    def tracepoint_fields(self, category: str, name: str) -> Optional[List[TracepointField]]:
        return None

    def has_btf(self) -> bool:
        return False

    def struct_exists(self, cname: str) -> Optional[bool]:
        return None

    def struct_size(self, cname: str) -> Optional[int]:
        """sizeof(struct X) from BTF; None when unknown."""
        return None

    def struct_record(self, cname: str) -> Optional["RecordT"]:
        """Every member of a struct or union, at its offset (to copy and print it whole); None
        when unknown, LookupFailed when it does not exist."""
        return None

    def struct_field(self, cname: str, member: str) -> Optional[StructField]:
        """Raises LookupFailed when the struct or member does not exist."""
        return None

    def kernel_functions(self, pattern: str) -> Optional[List[str]]:
        return None

    def kernel_function_args(self, func: str) -> Optional[Tuple[List[Tuple[str, Type]], Type]]:
        return None

    def raw_tracepoints(self, pattern: str) -> Optional[List[str]]:
        """Names of the kernel's tracepoints that match a glob, for rawtracepoint: (from BTF)."""
        return None

    def raw_tracepoint_args(self, name: str) -> Optional[List[Tuple[str, Type]]]:
        """A raw tracepoint's arguments (its btf_trace_NAME prototype after the first, the
        tracepoint's private data); LookupFailed when the kernel has no such tracepoint."""
        return None

    def iter_context(self, name: str) -> Optional[List[Tuple[str, Type]]]:
        """The members of struct bpf_iter__NAME (meta, task, file...), what an iter:NAME probe's
        ctx points to; LookupFailed when the kernel has no such iterator."""
        return None

    def user_functions(self, path: str, pattern: str) -> Optional[List[str]]:
        return None

    def calling_convention(self, path: str) -> Optional[str]:
        """How the functions of a binary take their arguments: C_ABI (System V: rdi, rsi, ...),
        GO_REGABI (Go 1.17+ on amd64: rax, rbx, rcx, ...) or GO_STACKABI (older Go: on the stack);
        None where the binary is not at hand (the client compiling for a node: decided there)."""
        return None

    def return_sites(self, path: str, func: str) -> Optional[List[int]]:
        """Offsets from function `func`'s first instruction of its RET instructions (uretprobes on
        Go: a uprobe on each); None where the binary is not at hand."""
        return None

    def user_function_elsewhere(self, path: str, name: str) -> Optional[str]:
        """A library `path` loads that defines function `name` (pthread_create: in libc.so.6 since
        glibc 2.34, no longer in libpthread.so.0), for the message when `path` does not."""
        return None

    def user_symbol(self, path: str, name: str) -> Optional[Tuple[int, int, bool]]:
        """(address, size, whether the binary is position independent) of a symbol (a variable
        too) of a binary; LookupFailed when it has none of that name."""
        return None

    def usdt_probes(self, path: str) -> Optional[List[Tuple[str, str]]]:
        return None

    def usdt_args(self, path: str, provider: str, name: str) -> "Optional[List[UsdtArg]]":
        """Where each argument of a USDT probe is and its size, from the probe's note (-4@%eax: the
        low 4 bytes of rax, signed); LookupFailed when its sites disagree or a note is unreadable."""
        return None


_INT_NAMES = {
    "char": (8, True), "signed char": (8, True), "unsigned char": (8, False), "bool": (8, False),
    "_Bool": (8, False), "short": (16, True), "unsigned short": (16, False), "int": (32, True),
    "unsigned int": (32, False), "unsigned": (32, False), "long": (64, True),
    "unsigned long": (64, False), "long long": (64, True), "unsigned long long": (64, False),
    "u8": (8, False), "s8": (8, True), "u16": (16, False), "s16": (16, True), "u32": (32, False),
    "s32": (32, True), "u64": (64, False), "s64": (64, True), "__u8": (8, False),
    "__s8": (8, True), "__u16": (16, False), "__s16": (16, True), "__u32": (32, False),
    "__s32": (32, True), "__u64": (64, False), "__s64": (64, True), "size_t": (64, False),
    "ssize_t": (64, True), "pid_t": (32, True), "uid_t": (32, False), "gid_t": (32, False),
    "umode_t": (16, False), "loff_t": (64, True), "dev_t": (32, False),
}


# Integer typedefs bpftrace knows without BTF (and the C names of fixed-width integers)
_C_TYPEDEFS: Dict[str, Type] = {n: IntT(b, sgn) for n, (b, sgn) in {
    "uint8_t": (8, False), "uint16_t": (16, False), "uint32_t": (32, False), "uint64_t": (64, False),
    "int8_t": (8, True), "int16_t": (16, True), "int32_t": (32, True), "int64_t": (64, True),
}.items()}


def ctype_to_type(ctype: str, size: int, signed: bool, space: str = "kernel",
                  array_len: Optional[int] = None) -> Type:
    """Type of a tracepoint field from its C declaration (`const char *`, `int`, `char[16]`)."""
    t = re.sub(r"\b(const|volatile|__user|__attribute__\(\(\w+\)\))\b", " ", ctype)
    t = " ".join(t.split())
    stars = t.count("*")
    base = t.replace("*", "").strip()
    if stars:
        target: Type
        if base in ("void", ""):
            target = VoidT()
        elif base.startswith(("struct ", "union ")):
            target = StructT("struct " + base.split(None, 1)[1])
        else:
            bits, sgn = _INT_NAMES.get(base, (8, True) if "char" in base else (64, False))
            target = IntT(bits, sgn)
        for _ in range(stars - 1):
            target = PtrT(target, space)
        return PtrT(target, space)
    if array_len:
        elem_size = max(1, size // array_len)
        return ArrayT(IntT(elem_size * 8, signed), array_len)
    if size in (1, 2, 4, 8):
        return IntT(size * 8, signed)
    return ArrayT(IntT(8, False), size)
