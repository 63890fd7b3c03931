"""The value model the runtime hands to the output layer (output/printer.py, output/printf.py).

Plain Python values cover almost everything:

- integers: ``int``, already sign-correct for their declared type (a ``uint64`` holding all ones is
  ``18446744073709551615``, an ``int8`` holding 0xff is ``-1``);
- strings: ``str``. Kernel strings are bytes; decode them with
  ``bytes.decode("utf-8", "surrogateescape")`` so that every byte survives: the output layer counts
  widths in bytes and writes the same bytes back (``TEXT_ENCODING``/``TEXT_ERRORS`` below);
- tuples: ``tuple`` of values (nested tuples allowed);
- ``None`` never appears.

A few kernel types print differently from the plain value and get a small marker type here:

- :class:`Stack` (kstack/ustack): the resolved frame strings, outermost last;
- :class:`Buffer` (``buf()``): raw bytes, printed as ``a\\x01b``;
- :class:`Pointer` (a value of pointer type): an ``int``; as a map key bpftrace prints it in hex;
- :class:`Unquoted` (strftime(), strerror(), macaddr()): a ``str`` that bpftrace's ``-f json``
  writes without quotes (bpftrace 0.17 really emits invalid JSON there; we do the same).

ksym/usym/username/probe/ntop/cgroup_path values are already-resolved ``str``.

Map dumps (print(@m), the dump at exit) are :class:`MapDump` objects; see its docstring for the
value shape of each aggregation kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Tuple

TEXT_ENCODING = "utf-8"
TEXT_ERRORS = "surrogateescape"

U64 = (1 << 64) - 1


def to_bytes(s: str) -> bytes:
    """The kernel bytes a decoded string came from."""
    return s.encode(TEXT_ENCODING, TEXT_ERRORS)


def from_bytes(b: bytes) -> str:
    return b.decode(TEXT_ENCODING, TEXT_ERRORS)


@dataclass(frozen=True)
class Stack:
    """A kernel or user stack: ``frames`` are resolved symbol strings, innermost first.

    In bpftrace mode a frame is what bpftrace prints per line without the indent, e.g.
    ``"work+0"`` or ``"0x55c30341a139"`` (unresolvable). In perf mode (``kstack(perf)``) a frame
    is the whole line without the leading tab, e.g. ``"5648ba1c7149 work+0 (/tmp/calls)"``.
    An empty ``frames`` stands for a stack bpftrace could not look up (it prints nothing).
    """

    frames: Tuple[str, ...] = ()
    perf: bool = False

    def render(self, indent: int = 8) -> str:
        """bpftrace's get_stack(): "\\n" then one line per frame (indent 8 for values and
        printf, 4 for map keys; perf mode uses a tab instead)."""
        if not self.frames:
            return ""
        if self.perf:
            return "\n" + "".join("\t" + f + "\n" for f in self.frames)
        pad = " " * indent
        return "\n" + "".join(pad + f + "\n" for f in self.frames)

    def __str__(self) -> str:  # printf("%s", kstack) renders like a value
        return self.render(8)


class Buffer(bytes):
    """The value of ``buf()``: printable ASCII (0x20-0x7e) as is, every other byte as ``\\xNN``."""

    def render(self) -> str:
        return render_buffer(self, keep_ascii=True, escape_hex=True)

    def __str__(self) -> str:
        return self.render()


def render_buffer(data: bytes, keep_ascii: bool = True, escape_hex: bool = True) -> str:
    """bpftrace's hex_format_buffer (%r, %rx, %rh and buffer values)."""
    if not escape_hex:  # %rh: "61 62 63"
        return " ".join("%02x" % b for b in data)
    out = []
    for b in data:
        if keep_ascii and 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


class Pointer(int):
    """An integer of pointer type: decimal as a map value, ``0x..`` as a map key."""

    def __repr__(self) -> str:
        return "Pointer(%d)" % int(self)


class Unquoted(str):
    """A string that bpftrace's JSON output does not quote (strftime, strerror, macaddr)."""


# Aggregation kinds of a map dump.
KINDS = ("value", "count", "sum", "min", "max", "avg", "stats", "hist", "lhist")


@dataclass
class MapDump:
    """A snapshot of one map, as print(@m) or the dump at exit sees it.

    ``name``: "@" or "@foo".
    ``kind``: one of KINDS. The shape of each entry's value:

    - ``value``: a plain value (int, str, tuple, Stack, Buffer, Pointer, ...);
    - ``count`` / ``sum`` / ``min`` / ``max``: an int (already reduced over CPUs);
    - ``avg`` and ``stats``: a pair ``(count, total)`` of ints;
    - ``hist``: ``{bucket_index: count}`` with bpftrace's indexes: 0 = negative values,
      1 = zero, 2 = one, i >= 3 = [2**(i-2), 2**(i-1)); missing buckets are zero;
    - ``lhist``: ``{bucket_index: count}``: 0 = below ``min``, i in 1..n = [min+(i-1)*step,
      min+i*step), n+1 = ``max`` and above, with n = (max - min) // step; ``lhist`` gives
      ``(min, max, step)``.

    ``entries``: a list of ``(key, value)``; ``key`` is ``()`` for a map without keys, else a
    tuple with one value per key expression (``@m[pid, comm]`` -> ``(123, "bash")``). Order does
    not matter: the output sorts like bpftrace.
    A map with no entries (never written, cleared, all keys deleted) is still dumped: bpftrace
    prints an empty line for it in text mode and nothing in JSON.
    ``value_type``: for kind "value", bpftrace's name of the value type when it matters:
    "int" (sorted by value; any other type is sorted by key), "ksym", "usym", "inet" (bpftrace
    prints their entries without a separator: ``@k[1]: foo@k[2]: bar``), "kstack"/"ustack";
    None = infer from the values (int -> "int", Stack -> stack, anything else -> by key).
    ``key_sizes``: byte size of each key component (ints: 1/2/4/8, strings: their buffer size);
    only used to break ties between equal hist/stats/avg totals the way bpftrace does (its
    entries start in memcmp order of the raw key); default 8 for ints.
    """

    name: str
    kind: str
    entries: Sequence[Tuple[Tuple[Any, ...], Any]] = field(default_factory=list)
    lhist: Optional[Tuple[int, int, int]] = None
    value_type: Optional[str] = None
    key_sizes: Optional[Tuple[int, ...]] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError("unknown map kind %r" % (self.kind,))
        if self.kind == "lhist" and self.lhist is None:
            raise ValueError("an lhist map dump needs lhist=(min, max, step)")
        if not (self.name == "@" or self.name.startswith("@")):
            raise ValueError("map name must start with '@': %r" % (self.name,))
