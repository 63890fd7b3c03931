"""printf() formats at run time: the values of one event -> the text bpftrace 0.17 prints.

The compiler parses and checks the format (lang/printf.py: Literal and Conversion segments, with
how bpftrace and C's snprintf read each part); this module turns the segments into a Python
%-template plus one small function per conversion that needs one, built once per call site:

    compile_format(fmt or segments) -> Formatter; formatter(values) -> str
    formatter.python_expression(names) -> the same as one Python expression (the engine compiles
                                           one function per printf call site from it)
    format_values(segments, values) -> str    (cached compile_format)

Strings are Python ``str`` decoded from kernel bytes with ``surrogateescape`` (output/values.py);
the text returned is a ``str`` in the same convention.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from kubectl_pytrace.lang.printf import Conversion, Literal, Segment, conversions, parse_format
from kubectl_pytrace.output.values import render_buffer

__all__ = ["Formatter", "compile_format", "format_values"]

_M64 = (1 << 64) - 1
_BITS = {"hh": 8, "h": 16, "": 32, "l": 64, "ll": 64, "j": 64, "z": 64, "t": 64}


def _signed(bits: int) -> Callable[[int], int]:
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)

    def f(v: int) -> int:
        return ((v + half) & mask) - half

    return f


def _unsigned(bits: int) -> Callable[[int], int]:
    mask = (1 << bits) - 1

    def f(v: int) -> int:
        return v & mask

    return f


def _pad(s: str, width: Optional[int], left: bool) -> str:
    if width is None:
        return s
    if s.isascii():
        n = len(s)
    else:
        n = len(s.encode("utf-8", "surrogateescape"))
    if n >= width:
        return s
    fill = " " * (width - n)
    return s + fill if left else fill + s


Piece = Tuple[str, Optional[Callable]]  # %-template text, function applied to the value first


def _int_piece(c: Conversion, width: Optional[int], prec: Optional[int], left: bool) -> Piece:
    bits = _BITS.get(c.length, 64)
    to = _signed(bits) if c.conv in "di" else _unsigned(bits)
    pyconv = "d" if c.conv in "diu" else c.conv
    if prec == 0:
        # C prints no digits for a zero value with precision 0.
        def f(v, to=to, pyconv=pyconv):
            v = to(int(v))
            if v == 0:
                return _pad("", width, left)
            return _pad(("%" + pyconv) % v, width, left)

        return "%s", f
    zero = "0" in c.flags and not left and prec is None
    extra = "".join(ch for ch in "+ #" if ch in c.flags)  # only via C's view of a part
    spec = "%" + ("-" if left else "") + ("0" if zero else "") + extra
    spec += str(width) if width is not None else ""
    spec += ("." + str(prec)) if prec is not None else ""
    return spec + pyconv, (lambda v, to=to: to(int(v)))


def _char_piece(c: Conversion, width: Optional[int], prec: Optional[int], left: bool) -> Piece:
    def f(v):
        b = int(v) & 0xFF
        if b == 0:
            # bpftrace writes the snprintf buffer as a C string: the NUL ends it.
            return "" if left or width is None else " " * (width - 1)
        ch = chr(b) if b < 0x80 else chr(0xDC00 + b)  # surrogateescape for high bytes
        return _pad(ch, width, left)

    return "%s", f


def _pointer_piece(c: Conversion, width: Optional[int], prec: Optional[int], left: bool) -> Piece:
    zero = "0" in c.flags and not left

    def f(v):
        v = int(v) & _M64
        if v == 0:
            return _pad("(nil)", width, left)
        digits = "%x" % v
        if prec is not None and len(digits) < prec:
            digits = "0" * (prec - len(digits)) + digits
        s = "0x" + digits
        if zero and width is not None and len(s) < width and prec is None:
            s = "0x" + "0" * (width - len(s)) + digits
        return _pad(s, width, left)

    return "%s", f


def _string_piece(c: Conversion, width: Optional[int], prec: Optional[int], left: bool) -> Piece:
    if width is None and prec is None:
        return "%s", None

    def f(v):
        s = v if isinstance(v, str) else str(v)
        if prec is not None:  # bytes, not characters
            s = s[:prec] if s.isascii() else \
                s.encode("utf-8", "surrogateescape")[:prec].decode("utf-8", "surrogateescape")
        return _pad(s, width, left)

    return "%s", f


def _buffer_piece(c: Conversion, width: Optional[int], prec: Optional[int], left: bool) -> Piece:
    keep_ascii, escape_hex = c.conv == "r", c.conv != "rh"

    def f(v):
        return _pad(render_buffer(bytes(v), keep_ascii, escape_hex), width, left)

    return "%s", f


_PIECES = {**{conv: _int_piece for conv in "diuxXo"}, "c": _char_piece, "p": _pointer_piece,
           "s": _string_piece, "r": _buffer_piece, "rx": _buffer_piece, "rh": _buffer_piece}


def _conv_callable(c: Conversion) -> Piece:
    """Python %-template piece for a conversion and the function applied to its value first
    (None: the value goes in unchanged)."""
    if c.conv is None:  # "%%d": C sees no conversion, the argument is not printed
        return "", None
    make = _PIECES.get(c.conv)
    if make is None:
        raise AssertionError("unknown conversion %r" % (c.conv,))
    return make(c, c.width, c.precision, "-" in c.flags)


class Formatter:
    """A format string compiled once; ``formatter(values)`` returns the printed text."""

    __slots__ = ("segments", "nargs", "_template", "_funcs", "_identity")

    def __init__(self, segments: Sequence[Segment]):
        self.segments = tuple(segments)
        convs = conversions(self.segments)
        self.nargs = len(convs)
        pieces: List[str] = []
        funcs: List[Optional[Callable]] = []
        for seg in self.segments:
            if isinstance(seg, Literal):
                pieces.append(seg.text.replace("%", "%%"))
            else:
                t, f = _conv_callable(seg)
                pieces.append(t)
                funcs.append(f if t else _DROP)
        self._template = "".join(pieces)
        self._funcs = tuple(funcs)
        self._identity = all(f is None for f in funcs)

    def __call__(self, values: Sequence) -> str:
        if len(values) != self.nargs:
            raise ValueError("format expects %d values, got %d" % (self.nargs, len(values)))
        if self._identity:
            return self._template % tuple(values)
        args = []
        for f, v in zip(self._funcs, values):
            if f is None:
                args.append(v)
            elif f is not _DROP:
                args.append(f(v))
        return self._template % tuple(args)

    format = __call__

    def python_expression(self, args: Sequence[str]) -> Tuple[str, Dict[str, Callable]]:
        """A Python expression computing the text from variables named `args`, and the globals it
        needs: the runtime compiles one function per printf call site instead of calling through
        this object for every event (integer conversions become inline arithmetic)."""
        if len(args) != self.nargs:
            raise ValueError("format expects %d values, got %d" % (self.nargs, len(args)))
        env: Dict[str, Callable] = {"_T": self._template}
        parts = []
        convs = conversions(self.segments)
        for i, (f, conv, name) in enumerate(zip(self._funcs, convs, args)):
            if f is _DROP:
                continue
            if f is None:
                parts.append(name)
            elif conv.conv in "diuxXo" and conv.precision != 0:
                bits = _BITS.get(conv.length, 64)
                mask, half = (1 << bits) - 1, 1 << (bits - 1)
                if conv.conv in "di":
                    parts.append("(((%s + %d) & %d) - %d)" % (name, half, mask, half))
                else:
                    parts.append("(%s & %d)" % (name, mask))
            else:
                env["_f%d" % i] = f
                parts.append("_f%d(%s)" % (i, name))
        if not parts:
            return "_T % ()", env
        return "_T %% (%s,)" % ", ".join(parts), env


_DROP = object()


def compile_format(fmt: Union[str, Sequence[Segment]]) -> Formatter:
    segments = parse_format(fmt) if isinstance(fmt, str) else fmt
    return Formatter(segments)


_cache: Dict[Tuple[Segment, ...], Formatter] = {}


def format_values(segments: Sequence[Segment], values: Sequence) -> str:
    key = tuple(segments)
    f = _cache.get(key)
    if f is None:
        f = _cache[key] = Formatter(key)
    return f(values)
