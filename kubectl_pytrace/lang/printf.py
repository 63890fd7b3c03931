"""printf()/cat()/system()/errorf() format strings, read as bpftrace 0.27 reads them.

bpftrace 0.27 (src/format_string.cpp) finds conversions with one regular expression:

    %(-?)(\\+?)( ?)(#?)(0?)(\\*|\\d+)?(?:\\.(\\*|\\d+))?([hlLjzt]*)([diouxXeEfFGaAcspn%]|gr|g|rh|rx|r)

Flags come in that order only. ``%%`` is a conversion of its own that prints ``%`` wherever it is;
text the expression does not match (``a%``, ``%5``) is printed as it is. Every other conversion
takes one argument: ``d i u o x X c p`` an integer, a bool or a pointer, ``r rx rh`` a buffer, ``s``
anything; the floating ones (``f e g a ...``) and ``n`` are refused ("unsupported format
specifier"). Values are printed by C++ iostreams (output/printf.py), not by C's printf.

This module is the compiler's half: parse_format(fmt) -> FormatString (the text fragments around
the conversions and one Spec per argument) and check_args(), which raises FormatError with
bpftrace's message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["FormatError", "Spec", "FormatString", "parse_format", "check_args", "any_kind", "ARG_KINDS"]


class FormatError(Exception):
    """A format string or argument list bpftrace rejects; ``message`` uses bpftrace's wording."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message = message
        self.offset = offset


_SPEC_RE = re.compile(
    r"%(-?)(\+?)( ?)(#?)(0?)(\*|\d+)?(?:\.(\*|\d+))?([hlLjzt]*)([diouxXeEfFGaAcspn%]|gr|g|rh|rx|r)")


@dataclass(frozen=True)
class Spec:
    """One conversion: its flags, width (0: none), length modifier and specifier."""

    text: str  # as written: "%-5ld"
    specifier: str  # d i u o x X c p s r rx rh ...
    left: bool = False
    show_sign: bool = False
    alternate: bool = False
    zeros: bool = False
    width: int = 0
    length: str = ""
    offset: int = 0  # where it starts in the format string


@dataclass(frozen=True)
class FormatString:
    """``fragments[i]`` is printed before ``specs[i]``'s argument; the last fragment after the last
    one (len(fragments) == len(specs) + 1)."""

    fragments: Tuple[str, ...]
    specs: Tuple[Spec, ...]

    @property
    def nargs(self) -> int:
        return len(self.specs)


def parse_format(fmt: str) -> FormatString:
    fragments: List[str] = []
    specs: List[Spec] = []
    last_end = 0
    current = []
    for m in _SPEC_RE.finditer(fmt):
        current.append(fmt[last_end:m.start()])
        last_end = m.end()
        left, sign, _space, alt, zeros, width, _prec, length, spec = m.groups()
        if spec == "%":
            current.append("%")
            continue
        fragments.append("".join(current))
        current = []
        specs.append(Spec(m.group(0), spec, bool(left), bool(sign), bool(alt), bool(zeros),
                          int(width) if width and width != "*" and len(width) < 10 else 0,
                          length, m.start()))
    current.append(fmt[last_end:])
    fragments.append("".join(current))
    return FormatString(tuple(fragments), tuple(specs))


# The kind of each argument, as check_args() wants it: "integer" (ints, bools and pointers),
# "buffer", "none" (a void expression) or anything else (a bpftrace type name for messages).
ARG_KINDS = ("integer", "buffer", "none")
_INTEGER_SPECS = set("diouxXcp") | {"gr"}
_BUFFER_SPECS = {"r", "rx", "rh"}


def check_args(fmt: FormatString, arg_types: Sequence[Tuple[str, str]], func: str = "printf") -> None:
    """Raise FormatError with bpftrace's message when the arguments do not fit the format.

    ``arg_types``: one (kind, type name) per argument after the format string, kind "integer",
    "buffer", "none" or "other"; the type name is bpftrace's, for messages ("string[4]")."""
    n_args, n_spec = len(arg_types), len(fmt.specs)
    if n_args < n_spec:
        raise FormatError("not enough arguments for format string (%d supplied, %d expected)"
                          % (n_args, n_spec))
    if n_args > n_spec:
        raise FormatError("too many arguments for format string (%d supplied, %d expected)"
                          % (n_args, n_spec))
    for spec, (kind, name) in zip(fmt.specs, arg_types):
        if kind == "none":
            raise FormatError("unable to print none type for specifier: %s" % spec.specifier)
        s = spec.specifier
        if s == "s":
            continue
        if s in _INTEGER_SPECS:
            ok = kind == "integer"
        elif s in _BUFFER_SPECS:
            ok = kind == "buffer"
        else:
            raise FormatError("unsupported format specifier: %s" % s)
        if not ok:
            raise FormatError("unsupported format specifier for type '%s': %s" % (name, s))


def any_kind(fmt: FormatString, i: int) -> Tuple[str, str]:
    """The kind an argument of unknown type (checked later, on the node) passes for: the one the
    i-th conversion wants."""
    s = fmt.specs[i].specifier if i < len(fmt.specs) else "d"
    return ("buffer", "buffer") if s in _BUFFER_SPECS else ("integer", "integer")


def describe(fmt: Optional[FormatString]) -> str:  # pragma: no cover - debugging aid
    return "" if fmt is None else repr(fmt)
