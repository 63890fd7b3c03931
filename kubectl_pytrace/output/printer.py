"""Printing trace results exactly like bpftrace 0.27: an abstract Output with a text and a JSON
implementation (bpftrace's src/output/{text,json}.cpp), fed with the value model of values.py.

    out = make_output("text" | "json", stream=None)   # default: sys.stdout's bytes
    out.printf(text)                 printf() result (already formatted by output/printf.py)
    out.time(text)                   time() result (strftime done by the runtime)
    out.cat(text), out.syscall(text), out.join(text)
    out.lost_events(n)               JSON: the lost_events record (text: the runtime's stderr)
    out.print_value(value)           print($x), print(1), print((1, "a"))
    out.print_map(dump, top=0, div=0)  print(@m), print(@m, top), print(@m, top, div)
    out.exit_dump(dumps)             at exit: text "\\n\\n" (JSON nothing), then every map by name
    out.errorf(text, where) / out.warnf(text, where)  errorf()/warnf() (text: on stderr)

A map snapshot (values.MapDump) becomes a value as bpftrace's ``format(map)`` (types_format.cpp)
makes it:
- count/sum and integer-valued maps sorted by value (bpftrace 0.27 reads every value as 64 bits
  for this: maps of narrower integers come out in hash order, i.e. at random; we sort them),
  min/max by value compared as unsigned, avg/stats by average;
- other maps by key: ints compared signed in their own size, strings bytewise over their whole
  buffer, the last key component first and then each one before it (stable sorts); components of
  other types do not order (hash order in bpftrace, key order here);
- hist/lhist by their total count (std::sort from the memcmp order of the raw keys: std_sort);
- ``top`` keeps the last ``top`` entries, ``div`` divides values (not lhist buckets, stats
  counts or totals).
"""

from __future__ import annotations

import abc
import struct
import sys
from typing import IO, Any, Callable, Iterable, List, Optional, Sequence, Tuple, TypeVar

from kubectl_pytrace.output.values import (
    TEXT_ENCODING,
    TEXT_ERRORS,
    Array,
    Buffer,
    Histogram,
    MapDump,
    OrderedMap,
    Record,
    Stats,
    Symbolic,
    render_buffer,
    to_bytes,
)

__all__ = [
    "Output",
    "TextOutput",
    "JsonOutput",
    "make_output",
    "format_map",
    "text_of",
    "json_of",
    "json_escape",
    "std_sort",
]

T = TypeVar("T")
_M64 = (1 << 64) - 1


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _bar_width(v: int, max_value: int) -> int:
    """``int bar_width = (counts[i] / static_cast<float>(max_value)) * max_width;``"""
    if max_value == 0:
        return 0
    q = _f32(_f32(float(v)) / _f32(float(max_value)))
    return int(_f32(q * 52.0))


# ---------------------------------------------------------------------------------------------
# primitives as text and JSON


def text_of(p: Any) -> str:
    """bpftrace's TextEmitter<Primitive>: how a value prints in text mode."""
    if p is None:
        return "null"
    if isinstance(p, bool):
        return "true" if p else "false"
    if isinstance(p, int):
        return str(int(p))
    if isinstance(p, str):
        return str.__str__(p)
    if isinstance(p, Record):
        if not p:
            return "{}"
        return "{ " + ", ".join(".%s = %s" % (k, text_of(v)) for k, v in p) + " }"
    if isinstance(p, Array):
        return "[" + ",".join(text_of(x) for x in p) + "]"
    if isinstance(p, tuple):
        return "(" + ", ".join(text_of(x) for x in p) + ")"
    if isinstance(p, Buffer):
        return render_buffer(p)
    return str(p)


def json_escape(s: str) -> str:
    """bpftrace's JsonEmitter<std::string>, byte by byte. Its ``char`` is signed, so every byte
    >= 0x80 comes out as ``\\uffffffXX``."""
    if s.isascii():
        if '"' not in s and "\\" not in s and all(c >= " " for c in s):
            return s
        b = s.encode("ascii")
    else:
        b = to_bytes(s)
    out = []
    for c in b:
        if c == 0x22:
            out.append('\\"')
        elif c == 0x5C:
            out.append("\\\\")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x09:
            out.append("\\t")
        elif c <= 0x1F:
            out.append("\\u%04x" % c)
        elif c >= 0x80:
            out.append("\\uffffff%02x" % c)
        else:
            out.append(chr(c))
    return "".join(out)


def _json_int(v: int) -> str:
    """A JSON number, or a string when a double cannot hold it exactly (RFC 8259, as bpftrace)."""
    s = str(v)
    if int(float(v)) != v:
        return '"' + s + '"'
    return s


def json_of(p: Any) -> str:
    if p is None:
        return "null"
    if isinstance(p, bool):
        return "true" if p else "false"
    if isinstance(p, Symbolic):
        return _json_int(p.numeric)
    if isinstance(p, int):
        return _json_int(int(p))
    if isinstance(p, str):
        return '"' + json_escape(p) + '"'
    if isinstance(p, Record):
        return "{" + ", ".join('"%s": %s' % (json_escape(k), json_of(v)) for k, v in p) + "}"
    if isinstance(p, tuple):  # tuples and arrays
        return "[" + ",".join(json_of(x) for x in p) + "]"
    if isinstance(p, Buffer):  # a vector<char>: signed bytes
        return "[" + ",".join(str(b - 256 if b >= 128 else b) for b in p) + "]"
    return '"' + json_escape(str(p)) + '"'


def _key_text(key: Tuple) -> str:
    """A map key as text: the tuple of its components without the parentheses."""
    k = key[0] if len(key) == 1 else tuple(key)
    s = text_of(k)
    if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
        s = s[1:-1]
    return s


# ---------------------------------------------------------------------------------------------
# histograms


def _hist_index_label(index: int, k: int) -> Symbolic:
    n = 1 << k
    interval = index & (n - 1)
    power = (index >> k) - 1
    value = (1 << power) * (n + interval)
    decade = power // 10
    suffix = "\0KMGTPE"[decade] if decade < 7 else ""
    power -= 10 * decade
    label = str((1 << power) * (n + interval)) + ("" if suffix == "\0" else suffix)
    return Symbolic(label, value & _M64)


def _indices(counts: Sequence[int]) -> Tuple[int, int]:
    lo = hi = -1
    for i, v in enumerate(counts):
        if ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31) > 0:  # `int v = values.at(i)`
            if lo == -1:
                lo = i
            hi = i
    return lo, hi


def _rows(buckets: dict) -> Tuple[List[int], int, int]:
    """Every bucket's count, and the first and last non-empty bucket (-1, -1: none)."""
    size = max(buckets) + 1 if buckets else 0
    counts = [buckets.get(i, 0) for i in range(size)]
    lo, hi = _indices(counts)
    return counts, lo, hi


def hist_value(buckets: dict, div: int = 1, k: int = 0) -> Histogram:
    """build_histogram(): the rows from the first to the last non-empty bucket."""
    counts, lo, hi = _rows(buckets)
    h = Histogram()
    if lo == -1:
        return h
    if lo != 0:
        h.has_lower_bound = True
        h.lower_bound = lo - 1 if lo - 1 <= (2 << k) else _hist_index_label(lo - 1, k)
    for i in range(lo, hi + 1):
        if i == 0:
            h.labels.append(0)
        elif i <= (2 << k):
            h.labels.append(i)
        else:
            h.labels.append(_hist_index_label(i, k))
        h.counts.append(counts[i] // div)
    return h


def _lhist_label(number: int, step: int) -> Any:
    if step % 1024 != 0:
        return number
    if number == 0:
        label = "0"
    elif number % 1048576 == 0:
        label = "%dM" % _cdiv(number, 1048576)
    elif number % 1024 == 0:
        label = "%dK" % _cdiv(number, 1024)
    else:
        label = str(number)
    return Symbolic(label, number & _M64)


def lhist_value(buckets: dict, lmin: int, lmax: int, step: int) -> Histogram:
    """build_linear_histogram()."""
    counts, lo, hi = _rows(buckets)
    h = Histogram()
    if lo == -1:
        return h
    if lo != 0:
        h.has_lower_bound = True
        h.lower_bound = _lhist_label(lmin + (lo - 1) * step, step)
    for i in range(lo, hi + 1):
        if lmin + i * step <= lmax:
            h.labels.append(_lhist_label(lmin + i * step, step))
        h.counts.append(counts[i])
    return h


def _adjacent(a: Any, b: Any) -> bool:
    """single_value(): two plain integers one apart (not symbolic labels)."""
    return (type(a) is int and type(b) is int and a + 1 == b)


def hist_text(h: Histogram) -> str:
    max_value = max(h.counts) if h.counts else 0
    out = []
    for i in range(max(len(h.counts), len(h.labels))):
        if i == 0:
            if not h.has_lower_bound:
                header = "(..., %s)" % text_of(h.labels[0])
            elif not h.labels:
                header = "[%s, ...)" % text_of(h.lower_bound)
            elif _adjacent(h.lower_bound, h.labels[0]):
                header = "[%s]" % text_of(h.lower_bound)
            else:
                header = "[%s, %s)" % (text_of(h.lower_bound), text_of(h.labels[0]))
        elif i >= len(h.labels):
            header = "[%s, ...)" % text_of(h.labels[i - 1])
        elif _adjacent(h.labels[i - 1], h.labels[i]):
            header = "[%s]" % text_of(h.labels[i - 1])
        else:
            header = "[%s, %s)" % (text_of(h.labels[i - 1]), text_of(h.labels[i]))
        count = h.counts[i]
        bar = "@" * _bar_width(count, max_value)
        out.append("%s%8d |%s|\n" % (header.ljust(16), count, bar.ljust(52)))
    return "".join(out)


def _one_less(label: Any) -> Optional[int]:
    if isinstance(label, Symbolic):
        label = label.numeric
    if isinstance(label, bool) or not isinstance(label, int):
        return None
    if label >= 1 << 63:  # a uint64: wraps into an int64
        return label - 1 - (1 << 64) if label - 1 >= 1 << 63 else label - 1
    return label - 1


def hist_json(h: Histogram) -> str:
    items = []
    for i, count in enumerate(h.counts):
        r = "{"
        if i == 0 and h.has_lower_bound:
            r += '"min": %s, ' % json_of(h.lower_bound)
        elif i > 0:
            r += '"min": %s, ' % json_of(h.labels[i - 1])
        if i < len(h.labels):
            v = _one_less(h.labels[i])
            r += '"max": %s, ' % (_json_int(v) if v is not None else json_of(h.labels[i]))
        r += '"count": %d}' % count
        items.append(r)
    return "[" + ",".join(items) + "]"


# ---------------------------------------------------------------------------------------------
# map snapshots -> values (bpftrace's format(map))


def _key_kinds(dump: MapDump) -> Tuple[Tuple[str, int], ...]:
    if dump.key_kinds is not None:
        return dump.key_kinds
    for key, _ in dump.entries:
        return tuple(("int", 8) if isinstance(c, int) and not isinstance(c, (bool, Symbolic))
                     else ("str", 64) if isinstance(c, str) and not isinstance(c, Symbolic)
                     else ("other", 0) for c in key)
    return ()


def _num(v: Any) -> int:
    return v.numeric if isinstance(v, Symbolic) else int(v)


def _signed_in(v: int, size: int) -> int:
    bits = 8 * size
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def _sort_by_key(entries: List, kinds: Sequence[Tuple[str, int]]) -> List:
    """sort_by_key(): stable sorts, last key component first."""
    out = list(entries)
    for i in range(len(kinds) - 1, -1, -1):
        kind, size = kinds[i]
        if kind == "int":
            out.sort(key=lambda kv, i=i, size=size: _signed_in(_num(kv[0][i]), size or 8))
        elif kind == "str":
            out.sort(key=lambda kv, i=i, size=size: to_bytes(kv[0][i])[:size or 64].ljust(size or 64, b"\0"))
    return out


def _tie_order(entries: List, kinds: Sequence[Tuple[str, int]]) -> List:
    """Where bpftrace leaves the order to the BPF map's hash (random per run), a fixed one:
    the key order of sort_by_key, then the text of the keys."""
    out = sorted(entries, key=lambda kv: _key_text(kv[0]) if kv[0] else "")
    return _sort_by_key(out, kinds)


def _raw_key_bytes(key: Tuple, kinds: Sequence[Tuple[str, int]]) -> bytes:
    """The key as the kernel stores it (little-endian ints, NUL-padded strings): memcmp order."""
    parts = []
    for i, v in enumerate(key):
        kind, size = kinds[i] if i < len(kinds) else ("other", 0)
        if kind == "int":
            n = size or 8
            parts.append((_num(v) & ((1 << (8 * n)) - 1)).to_bytes(n, "little"))
        else:
            b = to_bytes(v) if isinstance(v, str) else to_bytes(text_of(v))
            n = size or 64
            parts.append(b[:n].ljust(n, b"\0"))
    return b"".join(parts)


def format_map(dump: MapDump, top: int = 0, div: int = 0) -> Any:
    """The value bpftrace prints for a map: a Histogram or a primitive for a key-less map (when
    it has an entry), else an OrderedMap; avg/stats maps wrapped in Stats."""
    kind = dump.kind
    kinds = _key_kinds(dump)
    entries = list(dump.entries)
    div = div or 1
    scalar = dump.is_scalar
    if kind in ("hist", "lhist"):
        entries.sort(key=lambda kv: _raw_key_bytes(kv[0], kinds))
        totals = [sum(kv[1].values()) for kv in entries]
        idx = list(range(len(entries)))
        std_sort(idx, lambda a, b: totals[a] < totals[b])
        ordered = [entries[i] for i in idx]
        if top and len(ordered) > top:
            ordered = ordered[len(ordered) - top:]
        out = OrderedMap()
        for key, buckets in ordered:
            if kind == "hist":
                h = hist_value(buckets, div, dump.hist_bits)
            else:
                h = lhist_value(buckets, *dump.lhist)  # type: ignore[misc]
            if scalar:
                return h
            out.values.append((_key_prim(key), h))
        return out
    entries = _tie_order(entries, kinds)
    stats = kind in ("avg", "stats")
    if kind in ("count", "sum") or (kind == "value" and _value_type(dump) == "int"):
        entries.sort(key=lambda kv: _num(kv[1]))
    elif kind in ("min", "max"):
        entries.sort(key=lambda kv: int(kv[1]) & _M64)
    elif stats:
        entries.sort(key=lambda kv: _avg(kv[1], dump.signed))
    if top and len(entries) > top:
        entries = entries[len(entries) - top:]
    out = OrderedMap()
    for key, value in entries:
        v = _format_value(kind, value, div, dump.signed)
        if scalar:
            return Stats(v) if stats else v
        out.values.append((_key_prim(key), v))
    return Stats(out) if stats else out


def _key_prim(key: Tuple) -> Any:
    return key[0] if len(key) == 1 else tuple(key)


def _avg(value: Tuple[int, int], signed: bool) -> int:
    count, total = value
    if not signed:
        count &= _M64
        total &= _M64
    return _cdiv(total, count) if count else 0


def _format_value(kind: str, value: Any, div: int, signed: bool) -> Any:
    if kind in ("count", "sum", "min", "max"):
        return _cdiv(int(value), div)
    if kind == "avg":
        return _cdiv(_avg(value, signed), div)
    if kind == "stats":
        count, total = value
        return Record((("count", count), ("average", _cdiv(_avg(value, signed), div)), ("total", total)))
    if isinstance(value, int) and not isinstance(value, (bool, Symbolic)) and div != 1:
        return _cdiv(int(value), div)
    return value


def _value_type(dump: MapDump) -> str:
    if dump.value_type:
        return dump.value_type
    for _, v in dump.entries:
        if isinstance(v, int) and not isinstance(v, (bool, Symbolic)):
            return "int"
        return "other"
    return "other"


def empty_scalar(dump: MapDump) -> Any:
    """What print() shows for a key-less map without an entry: its type's zero value."""
    if dump.kind == "hist" or dump.kind == "lhist":
        return OrderedMap()
    if dump.kind == "stats":
        return Stats(Record((("count", 0), ("average", 0), ("total", 0))))
    if dump.kind == "avg":
        return Stats(0)
    if dump.kind == "value":
        vt = _value_type(dump)
        return 0 if vt == "int" else ""
    return 0


# ---------------------------------------------------------------------------------------------
# outputs


class Output(abc.ABC):
    """Where results go. ``stream``: a binary stream (default sys.stdout.buffer) or a text
    stream (then strings are written as is). With ``autoflush`` every message is flushed like
    bpftrace's std::endl; a runtime printing in batches may turn it off and call flush().
    ``source``: which of the trace's targets the event being printed came from (1-based, 0 for
    none), set by the runtime before each event; only outputs that label events use it.
    ``print_maps_on_exit``: the config variable (exit_dump prints the end marker only)."""

    source = 0

    def __init__(self, stream: Optional[IO] = None, autoflush: bool = True, stderr: Optional[IO] = None):
        if stream is None:
            stream = sys.stdout
        buf = getattr(stream, "buffer", None)
        if buf is not None:
            try:
                stream.flush()
            except Exception:  # pragma: no cover
                pass
            stream = buf
        self.stream = stream
        self._binary = not hasattr(stream, "encoding") and not _is_text_stream(stream)
        self.autoflush = autoflush
        self.stderr = stderr if stderr is not None else sys.stderr
        self.print_maps_on_exit = True

    def write(self, s: str) -> None:
        if self._binary:
            self.stream.write(s.encode(TEXT_ENCODING, TEXT_ERRORS))
        else:
            self.stream.write(s)
        if self.autoflush:
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    # -- messages --
    @abc.abstractmethod
    def attached_probes(self, n: int) -> None: ...

    @abc.abstractmethod
    def printf(self, text: str) -> None: ...

    @abc.abstractmethod
    def time(self, text: str) -> None: ...

    @abc.abstractmethod
    def cat(self, text: str) -> None: ...

    @abc.abstractmethod
    def syscall(self, text: str) -> None: ...

    @abc.abstractmethod
    def join(self, text: str) -> None: ...

    @abc.abstractmethod
    def lost_events(self, n: int) -> None: ...

    @abc.abstractmethod
    def errorf(self, text: str, where: Tuple[str, int, int, str], severity: str = "ERROR") -> None:
        """errorf()/warnf(): where is (file, line, column, "file:line:col-end")."""

    # -- values and maps --
    @abc.abstractmethod
    def print_value(self, value: Any) -> None: ...

    @abc.abstractmethod
    def map(self, name: str, value: Any) -> None: ...

    def print_map(self, dump: MapDump, top: int = 0, div: int = 0) -> None:
        """print(@m[, top[, div]]): a key-less map without an entry prints its zero value."""
        value = format_map(dump, top, div)
        if dump.is_scalar and dump.kind not in ("hist", "lhist"):
            if isinstance(value, OrderedMap) and not value.values:
                value = empty_scalar(dump)
            elif isinstance(value, Stats) and isinstance(value.value, OrderedMap) and not value.value.values:
                value = empty_scalar(dump)
        self.map(dump.name, value)

    def format_map(self, dump: MapDump, top: int = 0, div: int = 0) -> str:
        """The text print_map() writes (for tests)."""
        saved = self.write
        out: List[str] = []
        self.write = out.append  # type: ignore[method-assign]
        try:
            self.print_map(dump, top, div)
        finally:
            self.write = saved  # type: ignore[method-assign]
        return "".join(out)

    def end_marker(self) -> None:
        """What bpftrace prints when tracing stops, before the maps."""

    def exit_dump(self, dumps: Iterable[MapDump]) -> None:
        """Everything bpftrace prints at exit after END: the end marker, then every map of the
        program ordered by name, bytewise (empty maps print nothing)."""
        self.end_marker()
        if not self.print_maps_on_exit:
            return
        for d in sorted(dumps, key=lambda d: to_bytes(d.name)):
            self.map(d.name, format_map(d))


def _is_text_stream(stream: IO) -> bool:
    import io

    return isinstance(stream, io.TextIOBase)


def _stats_like(value: Any, cls) -> bool:
    if isinstance(value, cls):
        return True
    if isinstance(value, OrderedMap) and value.values:
        return isinstance(value.values[0][1], cls)
    return False


class TextOutput(Output):
    def attached_probes(self, n: int) -> None:
        self.stderr.write("Attached %d probe%s\n" % (n, "" if n == 1 else "s"))

    def printf(self, text: str) -> None:
        self.write(text)

    def time(self, text: str) -> None:
        self.write(text)

    def cat(self, text: str) -> None:
        self.write(text)

    def syscall(self, text: str) -> None:
        self.write(text + "\n")

    def join(self, text: str) -> None:
        self.write(text + "\n")

    def lost_events(self, n: int) -> None:
        self.stderr.write("Lost %d events\n" % n)

    def errorf(self, text: str, where: Tuple[str, int, int, str], severity: str = "ERROR") -> None:
        self.flush()
        self.stderr.write("%s: %s: %s\n" % (where[3], severity, text))  # file:line:col-end
        self.stderr.flush()

    def print_value(self, value: Any) -> None:
        self.write(_value_text(value) + "\n")

    def end_marker(self) -> None:
        self.write("\n\n")

    def map(self, name: str, value: Any) -> None:
        if isinstance(value, Histogram):
            self.write(name + ":\n" + hist_text(value) + "\n")
        elif isinstance(value, Stats):
            if isinstance(value.value, OrderedMap):
                self.write(_emit_map(name, value.value))
            else:
                self.write(name + ": " + text_of(value.value) + "\n")
        elif isinstance(value, OrderedMap):
            self.write(_emit_map(name, value))
        else:
            self.write(name + ": " + _value_text(value) + "\n")


def _value_text(v: Any) -> str:
    if isinstance(v, Histogram):
        return hist_text(v)
    if isinstance(v, Stats):
        return _value_text(v.value)
    if isinstance(v, OrderedMap):
        return "".join("[" + text_of(k) + "]: " + _value_text(x) + "\n" for k, x in v.values)
    return text_of(v)


def _emit_map(name: str, m: OrderedMap) -> str:
    out = []
    for key, value in m.values:
        s = text_of(key)
        if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
            s = s[1:-1]
        if isinstance(value, (Histogram, OrderedMap, Stats)):
            out.append(name + "[" + s + "]:\n" + _value_text(value) + "\n")
        else:
            out.append(name + "[" + s + "]: " + text_of(value) + "\n")
    return "".join(out)


def _json_value(v: Any) -> str:
    if isinstance(v, Histogram):
        return hist_json(v)
    if isinstance(v, Stats):
        return _json_value(v.value)
    if isinstance(v, OrderedMap):
        items = []
        for key, value in v.values:
            s = text_of(key)
            if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
                s = s[1:-1]
            s = s.replace(" ", "")
            items.append('"%s": %s' % (json_escape(s), _json_value(value)))
        return "{" + ", ".join(items) + "}"
    return json_of(v)


class JsonOutput(Output):
    def _message(self, type_: str, text: str) -> None:
        self.write('{"type": "%s", "data": "%s"}\n' % (type_, json_escape(text)))

    def attached_probes(self, n: int) -> None:
        self.write('{"type": "attached_probes", "count": %d, "data": {"probes": %d}}\n' % (n, n))

    def printf(self, text: str) -> None:
        self._message("printf", text)

    def time(self, text: str) -> None:
        self._message("time", text)

    def cat(self, text: str) -> None:
        self._message("cat", text)

    def syscall(self, text: str) -> None:
        self._message("syscall", text)

    def join(self, text: str) -> None:
        self._message("join", text)

    def lost_events(self, n: int) -> None:
        self.write('{"type": "lost_events", "count": %d, "data": {"events": %d}}\n' % (n, n))

    def errorf(self, text: str, where: Tuple[str, int, int, str], severity: str = "ERROR") -> None:
        filename, line, col, _ = where
        self.write('{"type": "%s", "msg": "%s", "filename": "%s", "line": %d, "col": %d}\n' % (
            "errorf" if severity == "ERROR" else "warnf", json_escape(text), json_escape(filename), line, col))

    def print_value(self, value: Any) -> None:
        self.write('{"type": "value", "data": %s}\n' % _json_value(value))

    def map(self, name: str, value: Any) -> None:
        if isinstance(value, OrderedMap) and not value.values:
            return
        if _stats_like(value, Stats):
            type_ = "stats"
        elif _stats_like(value, Histogram):
            type_ = "hist"
        else:
            type_ = "map"
        self.write('{"type": "%s", "data": {"%s": %s}}\n' % (type_, json_escape(name), _json_value(value)))


def make_output(fmt: str = "text", stream: Optional[IO] = None, autoflush: bool = True,
                stderr: Optional[IO] = None) -> Output:
    """``fmt``: "text" or "json" (the CLI's ``-o``)."""
    if fmt == "text":
        return TextOutput(stream, autoflush, stderr)
    if fmt == "json":
        return JsonOutput(stream, autoflush, stderr)
    raise ValueError("unknown output format %r (expected text or json)" % (fmt,))


# ---------------------------------------------------------------------------------------------
# libstdc++'s std::sort (introsort, not stable), so that equal totals come out in bpftrace's
# order: bpftrace sorts hist/lhist entries with std::sort starting from the memcmp order of their
# raw keys. A stable sort would only agree up to 16 entries (below that size libstdc++ runs a
# plain insertion sort).


_THRESHOLD = 16


def std_sort(a: List[T], less: Callable[[T, T], bool]) -> None:
    """Sort ``a`` in place exactly like libstdc++'s std::sort(first, last, comp)."""
    n = len(a)
    if n < 2:
        return
    _introsort_loop(a, 0, n, (n.bit_length() - 1) * 2, less)
    _final_insertion_sort(a, 0, n, less)


def _introsort_loop(a, first, last, depth, less):
    while last - first > _THRESHOLD:
        if depth == 0:
            _heap_sort(a, first, last, less)
            return
        depth -= 1
        cut = _partition_pivot(a, first, last, less)
        _introsort_loop(a, cut, last, depth, less)
        last = cut


def _partition_pivot(a, first, last, less):
    mid = first + (last - first) // 2
    _median_to_first(a, first, first + 1, mid, last - 1, less)
    return _unguarded_partition(a, first + 1, last, first, less)


def _median_to_first(a, result, x, y, z, less):
    if less(a[x], a[y]):
        if less(a[y], a[z]):
            a[result], a[y] = a[y], a[result]
        elif less(a[x], a[z]):
            a[result], a[z] = a[z], a[result]
        else:
            a[result], a[x] = a[x], a[result]
    elif less(a[x], a[z]):
        a[result], a[x] = a[x], a[result]
    elif less(a[y], a[z]):
        a[result], a[z] = a[z], a[result]
    else:
        a[result], a[y] = a[y], a[result]


def _unguarded_partition(a, first, last, pivot, less):
    while True:
        while less(a[first], a[pivot]):
            first += 1
        last -= 1
        while less(a[pivot], a[last]):
            last -= 1
        if not first < last:
            return first
        a[first], a[last] = a[last], a[first]
        first += 1


def _final_insertion_sort(a, first, last, less):
    if last - first > _THRESHOLD:
        _insertion_sort(a, first, first + _THRESHOLD, less)
        for i in range(first + _THRESHOLD, last):
            _unguarded_linear_insert(a, i, less)
    else:
        _insertion_sort(a, first, last, less)


def _insertion_sort(a, first, last, less):
    if first == last:
        return
    for i in range(first + 1, last):
        if less(a[i], a[first]):
            val = a[i]
            a[first + 1 : i + 1] = a[first:i]
            a[first] = val
        else:
            _unguarded_linear_insert(a, i, less)


def _unguarded_linear_insert(a, last, less):
    val = a[last]
    nxt = last - 1
    while less(val, a[nxt]):
        a[last] = a[nxt]
        last = nxt
        nxt -= 1
    a[last] = val


# heap sort (std::__partial_sort(first, last, last)): make_heap, then sort_heap


def _adjust_heap(a, first, hole, length, value, less):
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if less(a[first + child], a[first + child - 1]):
            child -= 1
        a[first + hole] = a[first + child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        a[first + hole] = a[first + child - 1]
        hole = child - 1
    # push_heap
    parent = (hole - 1) // 2
    while hole > top and less(a[first + parent], value):
        a[first + hole] = a[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    a[first + hole] = value


def _heap_sort(a, first, last, less):
    length = last - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _adjust_heap(a, first, parent, length, a[first + parent], less)
            if parent == 0:
                break
            parent -= 1
    while last - first > 1:
        last -= 1
        value = a[last]
        a[last] = a[first]
        _adjust_heap(a, first, 0, last - first, value, less)
