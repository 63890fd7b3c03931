"""printf() formats at run time: the values of one event -> the text bpftrace 0.27 prints.

bpftrace 0.27 formats each argument with a C++ stringstream (FormatSpec::apply in
src/format_string.cpp), which this module reproduces:

* ``-`` aligns left, else right; a width pads the *first* thing written with spaces, or with
  zeros after a ``0`` flag, on the side away from the alignment (``%05d`` of -5 is ``000-5``,
  ``%-05d`` of 5 is ``50000``); precisions are ignored;
* ``d i`` print the value converted to the length's signed type (none: ``int``, 32 bits; ``hh``
  char, ``h`` short, ``l ll j z t`` 64 bits), ``+`` shows the sign of positives; ``u o x X`` the
  unsigned type, ``#`` adds ``0``/``0x`` to non-zero values; ``c`` one byte (a zero byte is
  written); ``p`` ``0x`` and hex digits, ``0`` for NULL;
* ``s`` prints any value as text mode does (output/printer.py); ``r rx rh`` a buffer.

    compile_format(fmt or FormatString) -> Formatter; formatter(values) -> str
    formatter.python_expression(names, kinds) -> the same as one Python expression (the runtime
                                                 compiles one function per printf call site)
    format_values(fmt, values) -> str
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from kubectl_pytrace.lang.printf import FormatString, Spec, parse_format
from kubectl_pytrace.output.printer import text_of
from kubectl_pytrace.output.values import Array, Buffer, Record, Symbolic, render_buffer, to_bytes

__all__ = ["Formatter", "compile_format", "format_values", "apply_spec"]

_M64 = (1 << 64) - 1
_SIGNED_BITS = {"hh": 8, "h": 16, "l": 64, "ll": 64, "j": 64, "z": 64, "t": 64}


class _BadConversion(Exception):
    pass


def _number(p: Any) -> int:
    if isinstance(p, Symbolic):
        return p.numeric
    if isinstance(p, bool):
        return int(p)
    if isinstance(p, int):
        return int(p)
    raise _BadConversion("invalid integer conversion: " + text_of(p))


def _signed(v: int, bits: int) -> int:
    mask = (1 << bits) - 1
    v &= mask
    return v - (1 << bits) if v >> (bits - 1) else v


def _pad(s: str, spec: Spec) -> str:
    if not spec.width:
        return s
    n = len(s) if s.isascii() else len(to_bytes(s))
    if n >= spec.width:
        return s
    fill = ("0" if spec.zeros else " ") * (spec.width - n)
    return s + fill if spec.left else fill + s


def _first_chunk(p: Any) -> Tuple[str, str]:
    """What a stream writes for a value in one insertion (a width pads only that), and the rest."""
    text = text_of(p)
    if isinstance(p, Record):
        head = "{}" if not p else "{ "
    elif isinstance(p, Array):
        head = "["
    elif isinstance(p, tuple):
        head = "("
    else:
        return text, ""
    return head, text[len(head):]


def apply_spec(spec: Spec, p: Any) -> str:
    s = spec.specifier
    try:
        if s in ("d", "i"):
            v = _signed(_number(p), _SIGNED_BITS.get(spec.length, 32))
            text = ("+" if spec.show_sign and v >= 0 else "") + str(v)
        elif s in ("u", "o", "x", "X"):
            bits = _SIGNED_BITS.get(spec.length, 32)
            v = _number(p) & ((1 << bits) - 1)
            if s == "u":
                text = str(v)
            elif s == "o":
                text = ("0" if spec.alternate and v else "") + "%o" % v
            else:
                text = ("0x" if spec.alternate and v else "") + "%x" % v
                if s == "X":
                    text = text.upper()
        elif s == "c":
            text = chr(_number(p) & 0xFF)
            if ord(text) >= 0x80:
                text = chr(0xDC00 + ord(text))  # the raw byte (surrogateescape)
        elif s == "p":
            v = _number(p) & _M64
            text = "0x%x" % v if v else "0"
        elif s in ("r", "rx", "rh") and isinstance(p, Buffer):
            text = render_buffer(p, s == "r", s != "rh")
        else:  # s, and r/rx/rh of anything but a buffer
            head, rest = _first_chunk(p)
            return _pad(head, spec) + rest
    except _BadConversion as err:
        return "!{%s}" % err
    return _pad(text, spec)


def _plain_int(spec: Spec) -> bool:
    return spec.specifier in ("d", "i", "u") and not spec.width and not spec.show_sign


class Formatter:
    """A format string compiled once; ``formatter(values)`` returns the printed text."""

    __slots__ = ("fmt", "nargs")

    def __init__(self, fmt: FormatString):
        self.fmt = fmt
        self.nargs = len(fmt.specs)

    def __call__(self, values: Sequence) -> str:
        if len(values) != self.nargs:
            raise ValueError("format expects %d values, got %d" % (self.nargs, len(values)))
        frags = self.fmt.fragments
        out = [frags[0]]
        for i, (spec, v) in enumerate(zip(self.fmt.specs, values)):
            out.append(apply_spec(spec, v))
            out.append(frags[i + 1])
        return "".join(out)

    format = __call__

    def python_expression(self, args: Sequence[str], kinds: Optional[Sequence[str]] = None
                          ) -> Tuple[str, Dict[str, Any]]:
        """A Python expression computing the text from variables named `args`, and the globals it
        needs. ``kinds``: per argument "int" (a plain int), "str" or None (anything): plain
        integers and strings are formatted inline."""
        if len(args) != self.nargs:
            raise ValueError("format expects %d values, got %d" % (self.nargs, len(args)))
        kinds = list(kinds) if kinds is not None else [None] * self.nargs
        env: Dict[str, Any] = {"_apply": apply_spec}
        parts: List[str] = []
        frags = self.fmt.fragments
        for i, (spec, name, kind) in enumerate(zip(self.fmt.specs, args, kinds)):
            if frags[i]:
                parts.append(repr(frags[i]))
            if kind == "int" and _plain_int(spec):
                bits = _SIGNED_BITS.get(spec.length, 32)
                mask = (1 << bits) - 1
                if spec.specifier == "u":
                    parts.append("str(%s & %d)" % (name, mask))
                else:
                    half = 1 << (bits - 1)
                    parts.append("str(((%s + %d) & %d) - %d)" % (name, half, mask, half))
            elif kind == "str" and spec.specifier == "s" and not spec.width:
                parts.append(name)
            else:
                env["_s%d" % i] = spec
                parts.append("_apply(_s%d, %s)" % (i, name))
        if frags[-1]:
            parts.append(repr(frags[-1]))
        if not parts:
            return "''", env
        return "''.join((%s,))" % ", ".join(parts), env


def compile_format(fmt: Union[str, FormatString]) -> Formatter:
    return Formatter(parse_format(fmt) if isinstance(fmt, str) else fmt)


def format_values(fmt: Union[str, FormatString], values: Sequence) -> str:
    return compile_format(fmt)(values)


Apply = Callable[[Spec, Any], str]
