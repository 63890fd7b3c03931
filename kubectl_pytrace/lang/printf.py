"""printf()/system()/cat() format strings, exactly as bpftrace 0.17 reads and prints them.

How bpftrace 0.17 does it (measured against /usr/bin/bpftrace, see docs/bpftrace-compat.md):

* A conversion ("token") is what the regex ``%-?[0-9]*(\\.[0-9]+)?(TYPE)`` finds, TYPE one of
  ``s``, ``r``, ``rx``, ``rh``, ``c`` and the integer ones: an optional length ``hh h l ll j z t``
  followed by ``d u x X o p``. Nothing else is a conversion: ``%i``, ``%+d``, ``% d``, ``%#x``,
  ``%*d``, ``%e``, ``%ls`` are plain text (so ``printf("%i\\n", 1)`` is "Too many arguments").
  The only flag is ``-``; a leading ``0`` in the width works as C's zero flag.
* The format is cut after each token into parts; each part (text before the token + the token)
  goes through C's snprintf with that one argument, so ``%%`` in the text before a token prints
  ``%``. The text after the last token is written as is (``printf("100%%\\n")`` prints ``100%%``).
* Integers are 64-bit values handed to a C varargs printf: ``%d``/``%u``/``%x``/``%o`` read the low
  32 bits, ``%hhd``/``%hd`` 8/16 bits, ``l ll j z t`` all 64 bits; ``%c`` prints the low byte (a
  zero byte ends that part of the output); ``%p`` prints ``0x..`` (``(nil)`` for 0).
* ``%s`` widths and precisions count bytes.

API:
    parse_format(fmt) -> list[Segment]        (Literal and Conversion segments)
    check_args(segments, arg_types, func)     raises FormatError with bpftrace's message
    compile_format(fmt or segments) -> Formatter; formatter(values) -> str (fast path)
    format_values(segments, values) -> str    (cached compile_format)

Strings are Python ``str`` decoded from kernel bytes with ``surrogateescape``
(kubectl_pytrace.tracer.values); the output is a ``str`` in the same convention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = [
    "FormatError",
    "Literal",
    "Conversion",
    "Segment",
    "Formatter",
    "parse_format",
    "check_args",
    "compile_format",
    "format_values",
    "ARG_TYPE_ALIASES",
]


class FormatError(Exception):
    """A format string or argument list bpftrace rejects; ``message`` uses bpftrace's wording,
    ``offset`` is the character offset in the format string (0 when it is about the whole call)."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Literal:
    """Text printed as is. ``undefined`` marks text where bpftrace's C printf would read a
    missing argument (e.g. the second conversion of ``"%+d %d"``): bpftrace prints garbage there,
    we print the conversion text."""

    text: str
    undefined: bool = False


@dataclass(frozen=True)
class Conversion:
    """One argument of the call.

    ``token``: the bpftrace token as written (``"%-5ld"``); ``spec``: its type part (``"ld"``),
    as bpftrace names it in messages; ``offset``: where the token starts in the format string;
    ``kind``: the argument it takes, "int", "str" or "buf".

    How the value is printed (C's view of the part, which is what bpftrace really runs):
    ``conv`` (``d u x X o c s p`` or ``r rx rh``; ``None``: the argument is not printed, as in
    ``"%%d"``), ``flags``, ``width``, ``precision``, ``length`` (``"" hh h l ll j z t``).
    """

    token: str
    spec: str
    offset: int
    kind: str
    conv: Optional[str]
    flags: str = ""
    width: Optional[int] = None
    precision: Optional[int] = None
    length: str = ""

    @property
    def type_name(self) -> str:
        return _KIND_TYPE_NAME[self.kind]


Segment = Union[Literal, Conversion]

_KIND_TYPE_NAME = {"int": "integer", "str": "string", "buf": "buffer"}

_INT_CONVS = "duxXop"
_LENGTHS = ("hh", "h", "l", "ll", "j", "z", "t")
# Longest alternatives first: a regex alternation takes the first that matches ("%rx" is rx).
_TYPES = ["rx", "rh", "r", "s", "c"] + sorted(
    [l + c for l in _LENGTHS for c in _INT_CONVS] + list(_INT_CONVS), key=len, reverse=True
)
_TOKEN_RE = re.compile(r"%-?[0-9]*(?:\.[0-9]+)?(" + "|".join(_TYPES) + ")")

# bpftrace type names that printf accepts as another kind (validate_format_string).
ARG_TYPE_ALIASES: Dict[str, str] = {
    "ksym": "string",
    "usym": "string",
    "probe": "string",
    "username": "string",
    "kstack": "string",
    "ustack": "string",
    "inet": "string",
    "timestamp": "string",
    "mac_address": "string",
    "cgroup_path": "string",
    "strerror": "string",
    "pointer": "integer",
    "int": "integer",
    "str": "string",
    "buf": "buffer",
}

# ---------------------------------------------------------------------------------------------
# glibc's reading of one part


_GLIBC_SPEC_RE = re.compile(
    r"%(?P<flags>[-+ #0'I]*)(?P<width>\*|[0-9]+)?(?:\.(?P<prec>\*|[0-9]*))?"
    r"(?P<length>hh|h|ll|l|L|q|j|z|Z|t)?(?P<conv>.?)",
    re.S,
)
_GLIBC_CONSUMING = set("diouxXeEfFgGaAcsCSpn")


def _glibc_items(part: str):
    """Split a part as glibc's vfprintf reads it: yields ("text", s) and ("conv", match)."""
    pos = 0
    n = len(part)
    while pos < n:
        i = part.find("%", pos)
        if i < 0:
            yield ("text", part[pos:])
            return
        if i > pos:
            yield ("text", part[pos:i])
        m = _GLIBC_SPEC_RE.match(part, i)
        conv = m.group("conv")
        if conv == "":  # "%" or "%5" at the end: glibc prints nothing
            return
        if conv == "%":
            yield ("text", "%")
        elif conv in _GLIBC_CONSUMING:
            yield ("conv", m)
        else:  # unknown conversion: glibc prints the spec as written
            yield ("text", m.group(0))
        pos = m.end()


# ---------------------------------------------------------------------------------------------
# parsing


def parse_format(fmt: str) -> List[Segment]:
    """Split a format string into Literal and Conversion segments (one Conversion per argument,
    in argument order). Never raises: bpftrace accepts any text; see check_args()."""
    segments: List[Segment] = []
    tokens = list(_TOKEN_RE.finditer(fmt))
    if not tokens:
        if fmt:
            segments.append(Literal(fmt))
        return segments
    last = 0
    for tok in tokens:
        part = fmt[last : tok.end()]
        segments.extend(_parse_part(part, tok, last))
        last = tok.end()
    if last < len(fmt):
        segments.append(Literal(fmt[last:]))  # written raw, no % processing
    return _merge_literals(segments)


def _token_kind(spec: str) -> str:
    if spec == "s":
        return "str"
    if spec in ("r", "rx", "rh"):
        return "buf"
    return "int"


def _parse_part(part: str, tok: "re.Match[str]", part_start: int) -> List[Segment]:
    spec = tok.group(1)
    token = tok.group(0)
    offset = tok.start()
    kind = _token_kind(spec)
    c_part = part
    rconv = None
    if kind == "buf" and token in ("%r", "%rx", "%rh"):
        # bpftrace rewrites %r/%rx/%rh (only when written bare) to %s before calling snprintf.
        c_part = re.sub(r"%r[x|h]?", "%s", part)
        rconv = spec
    out: List[Segment] = []
    consumed = False
    text: List[str] = []
    for what, item in _glibc_items(c_part):
        if what == "text":
            text.append(item)
            continue
        m = item
        if consumed:  # a second argument-reading conversion: undefined in bpftrace
            if text:
                out.append(Literal("".join(text)))
                text = []
            out.append(Literal(m.group(0), undefined=True))
            continue
        consumed = True
        if text:
            out.append(Literal("".join(text)))
            text = []
        out.append(_make_conversion(token, spec, offset, kind, m, rconv))
    if text:
        out.append(Literal("".join(text)))
    if not consumed:  # e.g. "%%d": C sees no conversion, the argument is not printed
        out.append(Conversion(token=token, spec=spec, offset=offset, kind=kind, conv=None))
    return out


def _make_conversion(token, spec, offset, kind, m, rconv) -> Conversion:
    flags = m.group("flags")
    width = m.group("width")
    prec = m.group("prec")
    conv = m.group("conv")
    length = m.group("length") or ""
    if rconv is not None and conv == "s":
        conv = rconv
    w = None if width is None or width == "*" else int(width)
    p = None if prec is None or prec == "*" else int(prec or "0")
    return Conversion(
        token=token,
        spec=spec,
        offset=offset,
        kind=kind,
        conv=conv,
        flags=flags,
        width=w,
        precision=p,
        length=length,
    )


def _merge_literals(segments: List[Segment]) -> List[Segment]:
    out: List[Segment] = []
    for s in segments:
        if (
            isinstance(s, Literal)
            and out
            and isinstance(out[-1], Literal)
            and not s.undefined
            and not out[-1].undefined
        ):
            out[-1] = Literal(out[-1].text + s.text)
        else:
            out.append(s)
    return out


def conversions(segments: Sequence[Segment]) -> List[Conversion]:
    return [s for s in segments if isinstance(s, Conversion)]


# ---------------------------------------------------------------------------------------------
# checking (the compiler's side)


def check_args(segments: Sequence[Segment], arg_types: Sequence[str], func: str = "printf") -> None:
    """Raise FormatError with bpftrace's message when the arguments do not fit the format.

    ``arg_types``: one bpftrace type name per argument after the format string: "integer",
    "string", "buffer", "tuple", "count", "hist", ..., or an alias from ARG_TYPE_ALIASES
    ("kstack", "ksym", "pointer", ... and our short "int"/"str"/"buf")."""
    convs = conversions(segments)
    n_args, n_tok = len(arg_types), len(convs)
    if n_args < n_tok:
        raise FormatError(
            "%s: Not enough arguments for format string (%d supplied, %d expected)"
            % (func, n_args, n_tok),
            convs[n_args].offset,
        )
    if n_args > n_tok:
        raise FormatError(
            "%s: Too many arguments for format string (%d supplied, %d expected)"
            % (func, n_args, n_tok),
            0,
        )
    for conv, ty in zip(convs, arg_types):
        ty = ARG_TYPE_ALIASES.get(ty, ty)
        if ty != conv.type_name:
            raise FormatError(
                "%s: %%%s specifier expects a value of type %s (%s supplied)"
                % (func, conv.spec, conv.type_name, ty),
                conv.offset,
            )


# ---------------------------------------------------------------------------------------------
# formatting (the runtime's side)

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


def _conv_callable(c: Conversion) -> Tuple[str, Optional[Callable]]:
    """Python %-template piece for a conversion and the function applied to its value first
    (None: the value goes in unchanged)."""
    conv = c.conv
    left = "-" in c.flags
    width, prec = c.width, c.precision
    if conv is None:
        return "", None
    if conv in "diuxXo":
        bits = _BITS.get(c.length, 64)
        to = _signed(bits) if conv in "di" else _unsigned(bits)
        pyconv = "d" if conv in "diu" else conv
        zero = "0" in c.flags and not left and prec is None
        if prec == 0:
            # C prints no digits for a zero value with precision 0.
            def f(v, to=to, pyconv=pyconv):
                v = to(int(v))
                if v == 0:
                    return _pad("", width, left)
                s = ("%" + pyconv) % v
                return _pad(s, width, left)

            return "%s", f
        extra = "".join(ch for ch in "+ #" if ch in c.flags)  # only via C's view of a part
        spec = "%" + ("-" if left else "") + ("0" if zero else "") + extra
        spec += str(width) if width is not None else ""
        spec += ("." + str(prec)) if prec is not None else ""
        spec += pyconv
        return spec, (lambda v, to=to: to(int(v)))
    if conv == "c":
        def f(v):
            b = int(v) & 0xFF
            if b == 0:
                # bpftrace writes the snprintf buffer as a C string: the NUL ends it.
                return "" if left or width is None else " " * (width - 1)
            ch = chr(b) if b < 0x80 else chr(0xDC00 + b)  # surrogateescape for high bytes
            return _pad(ch, width, left)

        return "%s", f
    if conv == "p":
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
    if conv == "s":
        if width is None and prec is None:
            return "%s", None
        def f(v):
            s = v if isinstance(v, str) else str(v)
            if prec is not None:
                if s.isascii():
                    s = s[:prec]
                else:
                    s = s.encode("utf-8", "surrogateescape")[:prec].decode(
                        "utf-8", "surrogateescape"
                    )
            return _pad(s, width, left)

        return "%s", f
    if conv in ("r", "rx", "rh"):
        from kubectl_pytrace.tracer.values import render_buffer

        keep_ascii = conv == "r"
        escape_hex = conv != "rh"

        def f(v):
            return _pad(render_buffer(bytes(v), keep_ascii, escape_hex), width, left)

        return "%s", f
    raise AssertionError("unknown conversion %r" % (conv,))


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
