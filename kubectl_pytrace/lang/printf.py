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

This module is the compiler's half: parse_format(fmt) -> [Literal | Conversion] and
check_args(segments, arg_types, func), which raises FormatError with bpftrace's message. The
runtime's half, which prints values with the parsed segments, is kubectl_pytrace/output/printf.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

__all__ = [
    "FormatError",
    "Literal",
    "Conversion",
    "Segment",
    "parse_format",
    "check_args",
    "conversions",
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
