"""The value model of the output layer, after bpftrace 0.27's (src/output/output.h).

A *primitive* is one printable value:

- ``None`` (nothing: a void expression), ``bool``, ``int`` (already sign-correct for its type:
  a ``uint64`` holding all ones is ``18446744073709551615``, an ``int8`` holding 0xff is ``-1``);
- ``str``: kernel strings are bytes, decoded with ``surrogateescape`` so that every byte survives
  (``to_bytes``/``from_bytes``); ksym, usym, inet, stacks, probe names, usernames, strftime()
  results are plain strings by the time they get here;
- ``tuple`` (bpftrace's tuples), :class:`Array` (C arrays), :class:`Record` (structs and
  stats() values), :class:`Buffer` (``buf()``), :class:`Symbolic` (pointers and enum values:
  text in text mode, the number in JSON).

A *value* is a primitive or one of the aggregations :class:`Histogram`, :class:`OrderedMap`
(keyed entries in printing order) and :class:`Stats` (an avg()/stats() map: only its JSON message
type differs).

Maps come from the runtime as :class:`MapDump` snapshots (raw entries, not yet sorted); the
printer (printer.py) turns a dump into a value the way bpftrace's ``format(map)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

TEXT_ENCODING = "utf-8"
TEXT_ERRORS = "surrogateescape"

U64 = (1 << 64) - 1


def to_bytes(s: str) -> bytes:
    """The kernel bytes a decoded string came from."""
    return s.encode(TEXT_ENCODING, TEXT_ERRORS)


def from_bytes(b: bytes) -> str:
    return b.decode(TEXT_ENCODING, TEXT_ERRORS)


class Symbolic(str):
    """A value with a name and a number (a pointer "0x1f", an enum value "TCP_LISTEN"): text
    output writes the name, JSON the number."""

    numeric: int

    def __new__(cls, symbol: str, numeric: int) -> "Symbolic":
        s = super().__new__(cls, symbol)
        s.numeric = numeric
        return s

    def __repr__(self) -> str:
        return "Symbolic(%r, %d)" % (str(self), self.numeric)


def pointer(value: int) -> Symbolic:
    """A pointer value: ``0x...`` in text (``0x0`` for NULL), the number in JSON."""
    value &= U64
    return Symbolic("0x%x" % value, value)


class Record(tuple):
    """Named fields, in order: ``Record((("count", 2), ("average", 5)))``."""


class Array(tuple):
    """A C array's elements."""


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


def render_stack(frames: Sequence[str], mode: str = "bpftrace") -> str:
    """bpftrace's get_stack(): a newline, then one line per frame: indented 8 spaces, or for
    perf mode ``\\t<address> <symbol>`` (the frames given already hold both), raw mode bare hex."""
    if mode == "perf":
        return "\n" + "".join("\t" + f + "\n" for f in frames)
    if mode == "raw":
        return "\n" + "".join(f + "\n" for f in frames)
    return "\n" + "".join("        " + f + "\n" for f in frames)


# ---- aggregations ---------------------------------------------------------------------------

@dataclass
class Histogram:
    """Buckets in order: ``labels[i]`` is the upper bound of bucket i (its lower bound is the
    previous label, or ``lower_bound`` for the first one); a last bucket without a label has no
    upper bound."""

    lower_bound: Any = None
    has_lower_bound: bool = False
    labels: List[Any] = field(default_factory=list)
    counts: List[int] = field(default_factory=list)


@dataclass
class OrderedMap:
    values: List[Tuple[Any, Any]] = field(default_factory=list)  # (key primitive, value)


@dataclass
class Stats:
    """avg()/stats() maps: a primitive (a key-less map) or an OrderedMap."""

    value: Any


# ---- map snapshots ----------------------------------------------------------------------------

# Aggregation kinds of a map dump.
KINDS = ("value", "count", "sum", "min", "max", "avg", "stats", "hist", "lhist")


@dataclass
class MapDump:
    """A snapshot of one map, as print(@m) or the dump at exit sees it.

    ``name``: "@" or "@foo".
    ``kind``: one of KINDS. The shape of each entry's value:

    - ``value``: a primitive;
    - ``count`` / ``sum`` / ``min`` / ``max``: an int (already reduced over CPUs);
    - ``avg`` and ``stats``: a pair ``(count, total)`` of ints;
    - ``hist``: ``{bucket_index: count}``; with ``hist_bits`` k = 0: 0 = negative values, 1 = zero,
      2 = one, i >= 3 = [2**(i-2), 2**(i-1)) (lang/codegen's log2 gives the index for any k);
    - ``lhist``: ``{bucket_index: count}``: 0 = below ``min``, i in 1..n = [min+(i-1)*step,
      min+i*step), n+1 = ``max`` and above, with n = (max - min) // step; ``lhist`` gives
      ``(min, max, step)``.

    ``entries``: a list of ``(key, value)``; ``key`` is ``()`` for a map without keys, else a
    tuple with one primitive per key expression (``@m[pid, comm]`` -> ``(123, "bash")``). Order
    does not matter: the printer sorts like bpftrace. A map without entries is still dumped.
    ``value_type``: for kind "value", "int" when entries are integers (sorted by value) or "other"
    (sorted by key); None: inferred from the values.
    ``key_kinds``: one ``(kind, size)`` per key component, kind "int", "str" or "other" and size
    its storage size in bytes: how bpftrace sorts by key (ints signed in their size, strings
    bytewise over their whole buffer, anything else not at all). None: inferred from the keys.
    ``signed``: count/sum/avg/stats values are signed (sorting of avg/stats).
    """

    name: str
    kind: str
    entries: Sequence[Tuple[Tuple[Any, ...], Any]] = field(default_factory=list)
    lhist: Optional[Tuple[int, int, int]] = None
    value_type: Optional[str] = None
    key_kinds: Optional[Tuple[Tuple[str, int], ...]] = None
    hist_bits: int = 0
    signed: bool = True
    scalar: Optional[bool] = None  # a map without keys (None: inferred from the entries)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError("unknown map kind %r" % (self.kind,))
        if self.kind == "lhist" and self.lhist is None:
            raise ValueError("an lhist map dump needs lhist=(min, max, step)")
        if not self.name.startswith("@"):
            raise ValueError("map name must start with '@': %r" % (self.name,))

    @property
    def is_scalar(self) -> bool:
        if self.scalar is not None:
            return self.scalar
        return bool(self.entries) and all(not k for k, _ in self.entries)
