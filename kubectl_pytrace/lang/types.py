"""The value types of the language.

Every expression gets one of these in the semantic pass. Values cross from the kernel to user space
in a fixed binary layout (see layout.py): integers travel as 8 bytes whatever their width, strings as
fixed-size NUL-padded char arrays, tuples as their elements packed one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

STRLEN = 64  # bpftrace's default string size (BPFTRACE_STRLEN)
COMM_LEN = 16


class Type:
    """Base of all types. Subclasses are frozen dataclasses, so types compare by value."""

    def __str__(self) -> str:  # used in diagnostics
        return self.name()

    def name(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class IntT(Type):
    bits: int = 64
    signed: bool = True

    def name(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"


@dataclass(frozen=True)
class BoolT(IntT):
    """true/false: an integer that prints as a word (comparisons, `!`, `&&`, `||`, literals)."""

    bits: int = 8
    signed: bool = False

    def name(self) -> str:
        return "bool"


@dataclass(frozen=True)
class EnumT(IntT):
    """A C enum's value: an integer that prints as its enumerator's name (`TCP_LISTEN`)."""

    enum: str = ""  # "enum tcp_state"
    values: Tuple[Tuple[int, str], ...] = ()

    def name(self) -> str:
        return self.enum


@dataclass(frozen=True)
class StrT(Type):
    size: int = STRLEN  # bytes including the terminating NUL

    def name(self) -> str:
        return f"string[{self.size}]"


@dataclass(frozen=True)
class TupleT(Type):
    elems: Tuple[Type, ...]

    def name(self) -> str:
        return "(" + ",".join(e.name() for e in self.elems) + ")"


@dataclass(frozen=True)
class RecordT(Type):
    """A C struct or union's bytes copied out of memory (print(*$task), @m = args): user space
    decodes each member at its offset; prints as `{ .a = 1, .b = 2 }`."""

    cname: str
    size: int
    # name, type (IntT, BoolT, EnumT, PtrT, ArrayT, RecordT), byte offset, and for a bitfield its
    # first bit (from that byte) and width
    members: Tuple[Tuple[str, Type, int, int, int], ...] = ()

    def name(self) -> str:
        return self.cname


@dataclass(frozen=True)
class TimestampT(Type):
    """The value of strftime(fmt, nsecs): the clock and the time, formatted by user space."""

    fmt: str

    def name(self) -> str:
        return "timestamp"


@dataclass(frozen=True)
class StructT(Type):
    """A C struct or union known from BTF or a tracepoint format (only reachable through fields)."""

    cname: str  # "struct task_struct", or "tracepoint syscalls:sys_enter_openat" for `args`
    space: str = field(default="kernel", compare=False)  # where it lives (through a user pointer: user)

    def name(self) -> str:
        return self.cname


@dataclass(frozen=True)
class PtrT(Type):
    """A pointer. `target` is what it points to; `space` says which address space reads use."""

    target: Type
    space: str = "kernel"  # "kernel" | "user"

    def name(self) -> str:
        return f"{self.target.name()} *"


@dataclass(frozen=True)
class ArrayT(Type):
    elem: Type
    length: int

    def name(self) -> str:
        return f"{self.elem.name()}[{self.length}]"


@dataclass(frozen=True)
class BufT(Type):
    """The value of buf(data, length): up to `size` raw bytes and how many of them there are."""

    size: int

    def name(self) -> str:
        return f"buffer[{self.size}]"


@dataclass(frozen=True)
class VoidT(Type):
    def name(self) -> str:
        return "void"


@dataclass(frozen=True)
class StackT(Type):
    kernel: bool
    limit: int = 127
    mode: str = "bpftrace"  # bpftrace | perf | raw: how user space prints the frames

    def name(self) -> str:
        return "kstack" if self.kernel else "ustack"


@dataclass(frozen=True)
class KsymT(Type):
    def name(self) -> str:
        return "ksym"


@dataclass(frozen=True)
class CgroupPathT(Type):
    """cgroup_path(id, filter): a cgroup id that user space prints as its paths in the
    hierarchies whose names match the filter."""

    filter: str = "*"

    def name(self) -> str:
        return "cgroup_path_t"


@dataclass(frozen=True)
class MacT(Type):
    """macaddr(): six bytes (in a u64) that user space prints as AA:BB:CC:DD:EE:FF."""

    def name(self) -> str:
        return "macaddr_t"


@dataclass(frozen=True)
class UsernameT(Type):
    """username: a uid that user space prints as its name in /etc/passwd."""

    def name(self) -> str:
        return "username"


@dataclass(frozen=True)
class UsymT(Type):
    def name(self) -> str:
        return "usym"


@dataclass(frozen=True)
class InetT(Type):
    def name(self) -> str:
        return "inet"


@dataclass(frozen=True)
class ProbeT(Type):
    """The `probe` builtin: a probe number that user space prints as the probe's full name."""

    def name(self) -> str:
        return "probe"


@dataclass(frozen=True)
class AggT(Type):
    """The value of a map filled by an aggregation function (count(), hist(), ...)."""

    kind: str  # count sum min max avg stats hist lhist
    signed: bool = True
    lhist: Optional[Tuple[int, int, int]] = None  # (min, max, step)
    bits: int = 0  # hist(n, k): each power of 2 split into 2**k buckets

    def name(self) -> str:
        return f"{self.kind}_t"


INT64 = IntT(64, True)
UINT64 = IntT(64, False)
INT32 = IntT(32, True)
UINT32 = IntT(32, False)
# values held in one u64 in C (an integer, an address, an id user space resolves)
WORD_TYPES = (IntT, PtrT, KsymT, ProbeT, CgroupPathT, MacT, UsernameT)

VOID = VoidT()
BOOL = BoolT()

INT_TYPE_NAMES = {
    "int8": IntT(8, True), "int16": IntT(16, True), "int32": IntT(32, True), "int64": IntT(64, True),
    "uint8": IntT(8, False), "uint16": IntT(16, False), "uint32": IntT(32, False),
    "uint64": IntT(64, False), "bool": BoolT(),
}


def is_int(t: Type) -> bool:
    return isinstance(t, IntT)


def is_bool(t: Type) -> bool:
    return isinstance(t, BoolT)


def is_integer_like(t: Type) -> bool:
    """Types that behave as integers in arithmetic and comparisons (pointers are addresses)."""
    return isinstance(t, (IntT, PtrT))


def is_char_array(t: Type) -> bool:
    return isinstance(t, ArrayT) and isinstance(t.elem, IntT) and t.elem.bits == 8


def common_type(a: Type, b: Type) -> Optional[Type]:
    """The type that can hold values of both a and b (for maps, variables and ternaries)."""
    if a == b:
        return a
    if isinstance(a, BoolT) and isinstance(b, BoolT):
        return a
    if isinstance(a, EnumT) and isinstance(b, EnumT) and a.enum == b.enum:
        return a if a.bits >= b.bits else b
    if isinstance(a, IntT) and isinstance(b, IntT):
        return IntT(64, a.signed and b.signed)
    if isinstance(a, StrT) and isinstance(b, StrT):
        return StrT(max(a.size, b.size))
    if isinstance(a, TupleT) and isinstance(b, TupleT) and len(a.elems) == len(b.elems):
        elems = [common_type(x, y) for x, y in zip(a.elems, b.elems)]
        if all(e is not None for e in elems):
            return TupleT(tuple(elems))  # type: ignore[arg-type]
        return None
    if isinstance(a, PtrT) and isinstance(b, PtrT):
        return a
    if isinstance(a, StackT) and isinstance(b, StackT) and a.kernel == b.kernel:
        return StackT(a.kernel, max(a.limit, b.limit))
    return None


def storage_type(t: Type) -> Type:
    """How a value is stored in a map or variable: integers widen to 64 bits (bools and enums keep
    their type: it decides how they print)."""
    if isinstance(t, (BoolT, EnumT)):
        return t
    if isinstance(t, IntT):
        return IntT(64, t.signed)
    if isinstance(t, TupleT):
        return TupleT(tuple(storage_type(e) for e in t.elems))
    return t
