"""Printing trace results exactly like bpftrace 0.17: an abstract Output with a text and a JSON
implementation (bpftrace's src/output.cpp), fed with the value model of tracer/values.py.

    out = make_output("text" | "json", stream=None)   # default: sys.stdout's bytes
    out.attached_probes(n)           "Attaching 1 probe..." / {"type": "attached_probes", ...}
    out.printf(text)                 printf() result (already formatted by output/printf.py)
    out.time(text)                   time() result (strftime done by the runtime)
    out.cat(text), out.syscall(text), out.join(text)
    out.lost_events(n)               "Lost N events"
    out.print_value(value)           print($x), print(1), print((1, "a"))
    out.print_map(dump, top=0, div=0)  print(@m), print(@m, top), print(@m, top, div)
    out.exit_dump(dumps)             at exit: a blank-line pair, then every map in name order

clear(), zero() and delete() print nothing. bpftrace's print(), clear() and zero() are
asynchronous: they act when user space reads the event, i.e. after the probe that issued them
has finished (``@a = 1; print(@a); @a = 2;`` prints 2). That is the runtime's business; the output
only formats the snapshot it is given.

Sorting (bpftrace 0.17):
- count/sum/min/max and integer-valued maps: by value, ascending (bpftrace breaks ties in hash
  order, i.e. at random; we break them by key);
- other maps of values (strings, tuples, stacks...): by key: integer components as unsigned
  numbers, string components bytewise, first component first;
- hist/lhist: by the total count of each key; avg/stats: by average (total / count);
  ties as bpftrace: std::sort from memcmp order of the raw keys (see std_sort below).
"""

from __future__ import annotations

import abc
import sys
from typing import IO, Any, Callable, Iterable, List, Optional, Sequence, Tuple, TypeVar

from kubectl_pytrace.output.values import (
    TEXT_ENCODING,
    TEXT_ERRORS,
    Buffer,
    MapDump,
    Pointer,
    Stack,
    Unquoted,
    to_bytes,
)

__all__ = [
    "Output",
    "TextOutput",
    "JsonOutput",
    "make_output",
    "sort_entries",
    "hist_bucket_label",
    "std_sort",
]

T = TypeVar("T")
_M64 = (1 << 64) - 1


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _c_int(v: int) -> int:
    """C++ ``int v = (uint64_t)x``: the low 32 bits, signed."""
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _f32(x: float) -> float:
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


def _bar_width(v: int, max_value: int) -> int:
    """``int bar_width = values.at(i)/(float)max_value*max_width;`` in float arithmetic."""
    q = _f32(_f32(float(v)) / _f32(float(max_value)))
    return int(_f32(q * 52.0))


# ---------------------------------------------------------------------------------------------
# keys: rendering and ordering


def _key_int(v: int) -> int:
    """bpftrace prints 64-bit integer keys as signed whatever their type."""
    v = int(v)
    return v - (1 << 64) if v >= (1 << 63) else v


def _key_component_text(v: Any) -> str:
    if isinstance(v, Pointer):
        return "0x%x" % (int(v) & _M64)
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(_key_int(v))
    if isinstance(v, Stack):
        return v.render(4)
    if isinstance(v, Buffer):
        return v.render()
    if isinstance(v, tuple):
        return "(" + ", ".join(_value_text(x) for x in v) + ")"
    return str(v)


def _key_sort_tuple(key: Tuple) -> Tuple:
    """bpftrace's sort_by_key: ints as unsigned, strings bytewise, component by component."""
    out = []
    for v in key:
        if isinstance(v, int):
            out.append((0, int(v) & _M64))
        elif isinstance(v, str):
            out.append((1, to_bytes(v)))
        else:
            out.append((2, to_bytes(_key_component_text(v))))
    return tuple(out)


def _raw_key_bytes(key: Tuple, sizes: Optional[Sequence[int]]) -> bytes:
    """The key as bpftrace stores it (little-endian ints, NUL-padded strings), for memcmp order."""
    parts = []
    for i, v in enumerate(key):
        size = sizes[i] if sizes and i < len(sizes) else None
        if isinstance(v, int):
            n = size or 8
            parts.append((int(v) & ((1 << (8 * n)) - 1)).to_bytes(n, "little"))
        else:
            b = to_bytes(v) if isinstance(v, str) else to_bytes(_key_component_text(v))
            n = size or 64
            parts.append(b[:n].ljust(n, b"\0"))
    return b"".join(parts)


def sort_entries(dump: MapDump) -> List[Tuple[Tuple, Any]]:
    """The entries of a dump in bpftrace's printing order (before ``top`` is applied)."""
    entries = list(dump.entries)
    kind = dump.kind
    if kind in ("count", "sum", "min", "max") or (kind == "value" and _value_type(dump) == "int"):
        entries.sort(key=lambda kv: (int(kv[1]), _key_sort_tuple(kv[0])))
        return entries
    if kind == "value":
        entries.sort(key=lambda kv: _key_sort_tuple(kv[0]))
        return entries
    # hist / lhist / avg / stats: std::map (memcmp of raw keys) then std::sort by total/average
    entries.sort(key=lambda kv: _raw_key_bytes(kv[0], dump.key_sizes))
    if kind in ("hist", "lhist"):
        totals = [sum(kv[1].values()) for kv in entries]
    else:
        totals = [_cdiv(kv[1][1], kv[1][0]) if kv[1][0] else 0 for kv in entries]
    idx = list(range(len(entries)))
    std_sort(idx, lambda a, b: totals[a] < totals[b])
    return [entries[i] for i in idx]


def _value_type(dump: MapDump) -> str:
    if dump.value_type:
        return dump.value_type
    for _, v in dump.entries:
        if isinstance(v, Stack):
            return "kstack"
        if isinstance(v, (bool, int)) and not isinstance(v, Pointer):
            return "int"
        return "other"
    return "other"


def _apply_top(entries: List, top: int) -> List:
    if top and len(entries) > top:
        return entries[len(entries) - top :]
    return entries


# ---------------------------------------------------------------------------------------------
# values


def _value_text(v: Any) -> str:
    """bpftrace's value_to_str in text mode (tuples "(1, abc)", stacks with an 8-space indent)."""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, str):
        return str(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_value_text(x) for x in v) + ")"
    if isinstance(v, Stack):
        return v.render(8)
    if isinstance(v, Buffer):
        return v.render()
    return str(v)


def json_escape(s: str) -> str:
    """bpftrace's JsonOutput::json_escape, byte by byte. Its ``char`` is signed, so every byte
    >= 0x80 comes out as ``\\uffffffXX`` (that is what bpftrace 0.17 prints)."""
    if s.isascii():
        if not any(c in s for c in '"\\') and all(c >= " " for c in s):
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


def _value_json(v: Any) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, Unquoted):
        return str(v)
    if isinstance(v, str):
        return '"' + json_escape(v) + '"'
    if isinstance(v, tuple):
        return "[" + ",".join(_value_json(x) for x in v) + "]"
    if isinstance(v, Stack):
        return '"' + json_escape(v.render(8)) + '"'
    if isinstance(v, Buffer):
        return '"' + json_escape(v.render()) + '"'
    return '"' + json_escape(str(v)) + '"'


# ---------------------------------------------------------------------------------------------
# histograms


def hist_bucket_label(power: int) -> str:
    """hist_index_label: 2**power with a K/M/G/T suffix (1024 -> "1K")."""
    suffix = ""
    for p, s in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if power >= p:
            suffix = s
            power -= p
            break
    return str(_c_int(1 << power)) + suffix


def lhist_bucket_label(n: int) -> str:
    if n == 0:
        return "0"
    if n % 1048576 == 0:
        return "%dM" % _cdiv(n, 1048576)
    if n % 1024 == 0:
        return "%dK" % _cdiv(n, 1024)
    return str(n)


def _hist_rows(buckets: dict) -> Optional[Tuple[int, int, int]]:
    """hist_prepare: (min_index, max_index, max_value) or None when all buckets are zero."""
    min_i = max_i = -1
    max_v = 0
    for i in sorted(buckets):
        v = _c_int(buckets[i])
        if v > 0:
            if min_i == -1:
                min_i = i
            max_i = i
        if v > max_v:
            max_v = v
    if max_i == -1:
        return None
    return min_i, max_i, max_v


def _lhist_rows(buckets: dict, lmin: int, lmax: int, step: int):
    """lhist_prepare: (start, end, max_value, nbuckets) or None when empty."""
    nb = _cdiv(lmax - lmin, step)
    max_i = -1
    max_v = 0
    for i in sorted(buckets):
        v = _c_int(buckets[i])
        if v != 0:
            max_i = i
        if v > max_v:
            max_v = v
    if max_i == -1:
        return None
    start, end = -1, 0
    for i in range(0, nb + 2):
        if buckets.get(i, 0) > 0:
            if start == -1:
                start = i
            end = i
    if start == -1:
        start = 0
    return start, end, max_v, nb


def _bar_line(label: str, count: int, value: int, max_value: int) -> str:
    bar = "@" * _bar_width(value, max_value)
    return "%s%8d |%s|\n" % (label.ljust(16), count, bar.ljust(52))


def hist_text(buckets: dict, div: int = 1) -> str:
    rows = _hist_rows(buckets)
    if rows is None:
        return ""
    lo, hi, max_v = rows
    out = []
    for i in range(lo, hi + 1):
        if i == 0:
            label = "(..., 0)"
        elif i == 1:
            label = "[0]"
        elif i == 2:
            label = "[1]"
        else:
            label = "[%s, %s)" % (hist_bucket_label(i - 2), hist_bucket_label(i - 1))
        v = buckets.get(i, 0)
        out.append(_bar_line(label, v // div, v, max_v))
    return "".join(out)


def lhist_text(buckets: dict, lmin: int, lmax: int, step: int) -> str:
    rows = _lhist_rows(buckets, lmin, lmax, step)
    if rows is None:
        return ""
    start, end, max_v, nb = rows
    out = []
    for i in range(start, end + 1):
        if i == 0:
            label = "(..., %s)" % lhist_bucket_label(lmin)
        elif i == nb + 1:
            label = "[%s, ...)" % lhist_bucket_label(lmax)
        else:
            label = "[%s, %s)" % (
                lhist_bucket_label((i - 1) * step + lmin),
                lhist_bucket_label(i * step + lmin),
            )
        v = buckets.get(i, 0)
        out.append(_bar_line(label, v, v, max_v))
    return "".join(out)


def hist_json(buckets: dict, div: int = 1) -> str:
    rows = _hist_rows(buckets)
    if rows is None:
        return "[]"
    lo, hi, _ = rows
    items = []
    for i in range(lo, hi + 1):
        if i == 0:
            r = '"max": -1, '
        elif i == 1:
            r = '"min": 0, "max": 0, '
        elif i == 2:
            r = '"min": 1, "max": 1, '
        else:
            # bpftrace 0.17 computes these in C int: 1 << n with x86's shift count mod 32
            # (the [2G, 4G) bucket comes out as min -2147483648, max 0).
            low = _c_int(1 << ((i - 2) & 31))
            high = _c_int(_c_int(1 << ((i - 1) & 31)) - 1)
            r = '"min": %d, "max": %d, ' % (low, high)
        items.append("{" + r + '"count": %d}' % (buckets.get(i, 0) // div))
    return "[" + ", ".join(items) + "]"


def lhist_json(buckets: dict, lmin: int, lmax: int, step: int) -> str:
    rows = _lhist_rows(buckets, lmin, lmax, step)
    if rows is None:
        return "[]"
    start, end, _, nb = rows
    items = []
    for i in range(start, end + 1):
        if i == 0:
            r = '"max": %d, ' % (lmin - 1)
        elif i == nb + 1:
            r = '"min": %d, ' % lmax
        else:
            r = '"min": %d, "max": %d, ' % ((i - 1) * step + lmin, i * step + lmin - 1)
        items.append("{" + r + '"count": %d}' % buckets.get(i, 0))
    return "[" + ", ".join(items) + "]"


# ---------------------------------------------------------------------------------------------
# outputs


class Output(abc.ABC):
    """Where results go. ``stream``: a binary stream (default sys.stdout.buffer) or a text
    stream (then strings are written as is). With ``autoflush`` every message is flushed like
    bpftrace's std::endl; a runtime printing in batches may turn it off and call flush().
    ``source``: which of the trace's targets the event being printed came from (1-based, 0 for
    none), set by the runtime before each event; only outputs that label events use it."""

    source = 0

    def __init__(self, stream: Optional[IO] = None, autoflush: bool = True):
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

    # -- values and maps --
    @abc.abstractmethod
    def print_value(self, value: Any) -> None: ...

    def print_map(self, dump: MapDump, top: int = 0, div: int = 0) -> None:
        """print(@m[, top[, div]]); also used for each map at exit (top=0, div=0)."""
        self.write(self.format_map(dump, top, div))

    @abc.abstractmethod
    def format_map(self, dump: MapDump, top: int = 0, div: int = 0) -> str: ...

    def end_marker(self) -> None:
        """What bpftrace prints when tracing stops, before the maps (both formats)."""
        self.write("\n\n")

    def exit_dump(self, dumps: Iterable[MapDump]) -> None:
        """Everything bpftrace prints at exit after END: two newlines, then every map of the
        program (even the empty ones) ordered by name, bytewise."""
        self.end_marker()
        for d in sorted(dumps, key=lambda d: to_bytes(d.name)):
            self.print_map(d)


def _is_text_stream(stream: IO) -> bool:
    import io

    return isinstance(stream, io.TextIOBase)


class TextOutput(Output):
    def attached_probes(self, n: int) -> None:
        self.write("Attaching %d probe...\n" % n if n == 1 else "Attaching %d probes...\n" % n)

    def printf(self, text: str) -> None:
        self.write(text)

    def time(self, text: str) -> None:
        self.write(text)

    def cat(self, text: str) -> None:
        self.write(text)

    def syscall(self, text: str) -> None:
        self.write(text)

    def join(self, text: str) -> None:
        self.write(text + "\n")

    def lost_events(self, n: int) -> None:
        self.write("Lost %d events\n" % n)

    def print_value(self, value: Any) -> None:
        self.write(_value_text(value) + "\n")

    def format_map(self, dump: MapDump, top: int = 0, div: int = 0) -> str:
        div = div or 1
        kind = dump.kind
        entries = sort_entries(dump)
        if kind in ("hist", "lhist", "avg"):
            entries = _apply_top(entries, top)
        elif kind != "stats":
            entries = _apply_top(entries, top)
        name = dump.name
        elems = []
        for key, value in entries:
            k = name + ("[" + ", ".join(_key_component_text(c) for c in key) + "]" if key else "")
            if kind == "hist":
                elems.append(k + ": \n" + hist_text(value, div))
            elif kind == "lhist":
                lmin, lmax, step = dump.lhist
                elems.append(k + ": \n" + lhist_text(value, lmin, lmax, step))
            elif kind == "stats":
                count, total = value
                avg = _cdiv(total, count) if count else 0
                elems.append(k + ": count %d, average %d, total %d" % (count, avg, total))
            elif kind == "avg":
                count, total = value
                avg = _cdiv(total, count) if count else 0
                elems.append(k + ": " + str(_cdiv(avg, div)))
            elif kind == "value":
                if isinstance(value, (bool, int)) and not isinstance(value, Pointer):
                    elems.append(k + ": " + str(_cdiv(int(value), div)))
                else:
                    elems.append(k + ": " + _value_text(value))
            else:  # count sum min max
                elems.append(k + ": " + str(_cdiv(int(value), div)))
        if kind == "value" and _value_type(dump) in ("kstack", "ustack", "ksym", "usym", "inet"):
            delim = ""
        else:
            delim = "\n"
        tail = "\n\n" if kind in ("avg", "stats") else "\n"
        return delim.join(elems) + tail


class JsonOutput(Output):
    def _message(self, type_: str, text: str) -> None:
        self.write('{"type": "%s", "data": "%s"}\n' % (type_, json_escape(text)))

    def attached_probes(self, n: int) -> None:
        self.write('{"type": "attached_probes", "data": {"probes": %d}}\n' % n)

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
        self.write('{"type": "lost_events", "data": {"events": %d}}\n' % n)

    def print_value(self, value: Any) -> None:
        self.write('{"type": "value", "data": %s}\n' % _value_json(value))

    def format_map(self, dump: MapDump, top: int = 0, div: int = 0) -> str:
        div = div or 1
        kind = dump.kind
        if not dump.entries:
            return ""
        entries = sort_entries(dump)
        if kind != "stats":
            entries = _apply_top(entries, top)
        keyed = bool(entries and entries[0][0])
        elems = []
        for key, value in entries:
            if kind == "hist":
                v = hist_json(value, div)
            elif kind == "lhist":
                v = lhist_json(value, *dump.lhist)
            elif kind == "stats":
                count, total = value
                avg = _cdiv(total, count) if count else 0
                v = '{"count": %d, "average": %d, "total": %d}' % (count, avg, total)
            elif kind == "avg":
                count, total = value
                avg = _cdiv(total, count) if count else 0
                v = str(_cdiv(avg, div))
            elif kind == "value":
                if isinstance(value, (bool, int)) and not isinstance(value, Pointer):
                    v = str(_cdiv(int(value), div))
                else:
                    v = _value_json(value)
            else:
                v = str(_cdiv(int(value), div))
            if keyed:
                k = json_escape(",".join(_key_component_text(c) for c in key))
                elems.append('"%s": %s' % (k, v))
            else:
                elems.append(v)
        type_ = {"hist": "hist", "lhist": "hist", "avg": "stats", "stats": "stats"}.get(kind, "map")
        body = ", ".join(elems)
        if keyed:
            body = "{" + body + "}"
        return '{"type": "%s", "data": {"%s": %s}}\n' % (type_, json_escape(dump.name), body)


def make_output(fmt: str = "text", stream: Optional[IO] = None, autoflush: bool = True) -> Output:
    """``fmt``: "text" or "json" (the CLI's ``-o``)."""
    if fmt == "text":
        return TextOutput(stream, autoflush)
    if fmt == "json":
        return JsonOutput(stream, autoflush)
    raise ValueError("unknown output format %r (expected text or json)" % (fmt,))


# ---------------------------------------------------------------------------------------------
# libstdc++'s std::sort (introsort, not stable), so that equal totals come out in bpftrace's
# order: bpftrace sorts hist/lhist/avg/stats entries with std::sort starting from the memcmp
# order of their raw keys. A stable sort would only agree up to 16 entries (below that size
# libstdc++ runs a plain insertion sort).


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
