"""Binary layout of values that cross from BPF to user space: one description, two consumers.

The code generator spells each layout as a C declaration; the tracer decodes the same bytes with a
struct format built from the same description. Every stored value occupies a multiple of 8 bytes
(integers are widened to 64 bits, strings padded to the next multiple of 8), so C structs need no
`packed` attribute and have no hidden padding that could make equal keys compare different.
"""

from __future__ import annotations

import struct as _struct
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from kubectl_pytrace.lang.types import (
    AggT, ArrayT, BufT, CgroupPathT, InetT, IntT, KsymT, MacT, ProbeT, PtrT, RecordT, StackT, StrT, TimestampT,
    TupleT, Type, UsernameT, UsymT,
)


def pad8(n: int) -> int:
    return (n + 7) & ~7


# Values whose layout does not depend on a size: their C spelling and struct format, side by side
# (the C structs are C_PRELUDE_TYPES below).
FIXED_LAYOUTS = {
    KsymT: ("u64", "Q"),  # an address
    ProbeT: ("u64", "Q"),  # a probe number
    CgroupPathT: ("u64", "Q"),  # a cgroup id
    MacT: ("u64", "Q"),  # six bytes, the first lowest
    UsernameT: ("u64", "Q"),  # a uid
    StackT: ("struct pytrace_stack", "qQ"),  # stack id, pid
    UsymT: ("struct pytrace_usym", "QQ"),  # address, pid
    InetT: ("struct pytrace_inet", "Q16s"),  # address family, address
    TimestampT: ("struct pytrace_timestamp", "QQ"),  # clock, nanoseconds
}


def struct_format(t: Type) -> str:
    """The struct-module format (little endian, no alignment) of a stored value."""
    if isinstance(t, IntT):
        return "q" if t.signed else "Q"
    if isinstance(t, PtrT):
        return "q"
    if isinstance(t, StrT):
        return f"{pad8(t.size)}s"
    if isinstance(t, TupleT):
        return "".join(struct_format(e) for e in t.elems)
    if isinstance(t, RecordT):
        return f"{pad8(t.size)}s"  # the C bytes
    if isinstance(t, ArrayT):
        return struct_format(t.elem) * t.length
    if isinstance(t, BufT):
        return f"Q{pad8(t.size)}s"
    if type(t) in FIXED_LAYOUTS:
        return FIXED_LAYOUTS[type(t)][1]
    raise TypeError(f"no storage layout for {t}")


def sizeof(t: Type) -> int:
    """Bytes a value of type t occupies in maps, variables and events."""
    return _struct.calcsize("<" + struct_format(t))


def scalar_ctype(t: Type) -> str:
    """The C type of a stored value that is neither a string, a tuple nor a buffer (those get
    declarations of their own: codegen.decl)."""
    if isinstance(t, IntT):
        return "s64" if t.signed else "u64"
    if isinstance(t, PtrT):
        return "s64"
    if type(t) in FIXED_LAYOUTS:
        return FIXED_LAYOUTS[type(t)][0]
    raise TypeError(f"no C type for {t}")


def int_ctype(t: IntT) -> str:
    """The C spelling of an integer type of its own width: s8 ... u64."""
    return f"{'s' if t.signed else 'u'}{t.bits}"


def field_count(t: Type) -> int:
    """How many struct-module items a value of type t unpacks to."""
    return sum(1 for _ in _items(struct_format(t)))


def _items(fmt: str):
    i = 0
    while i < len(fmt):
        j = i
        while fmt[j].isdigit():
            j += 1
        yield fmt[j]
        i = j + 1


@dataclass(frozen=True)
class Field:
    name: str
    type: Type
    offset: int


@dataclass(frozen=True)
class Record:
    """An ordered set of named values laid out back to back (an event, or a map key)."""

    fields: Tuple[Field, ...]

    @staticmethod
    def of(items: Sequence[Tuple[str, Type]], start: int = 0) -> "Record":
        out: List[Field] = []
        off = start
        for name, t in items:
            out.append(Field(name, t, off))
            off += sizeof(t)
        return Record(tuple(out))

    @property
    def size(self) -> int:
        if not self.fields:
            return 0
        last = self.fields[-1]
        return last.offset + sizeof(last.type)

    def struct_format(self) -> str:
        return "<" + "".join(struct_format(f.type) for f in self.fields)


# C spellings of the fixed-shape values
C_PRELUDE_TYPES = """\
struct pytrace_stack { s64 id; u64 pid; };
struct pytrace_usym { u64 addr; u64 pid; };
struct pytrace_inet { u64 af; u8 addr[16]; };
struct pytrace_avg { s64 total; u64 count; };
struct pytrace_minmax { s64 value; u64 set; };
struct pytrace_timestamp { u64 mode; u64 nsecs; };
"""


def agg_value_format(agg: AggT) -> str:
    """Struct format of one CPU's slot of an aggregation map value."""
    if agg.kind in ("count", "sum", "hist", "lhist"):
        return "<q" if agg.signed and agg.kind == "sum" else "<Q"
    if agg.kind in ("min", "max"):
        return "<qQ" if agg.signed else "<QQ"  # (value, set)
    return "<qQ" if agg.signed else "<QQ"  # avg, stats: (total, count)


def agg_value_ctype(agg: AggT) -> str:
    if agg.kind in ("count", "hist", "lhist"):
        return "u64"
    if agg.kind == "sum":
        return "s64"
    if agg.kind in ("min", "max"):
        return "struct pytrace_minmax"
    return "struct pytrace_avg"
