"""Literal forms the language shares with its C preprocessor (parser.py and preprocess.py)."""

from __future__ import annotations

import re

MAX_EXPONENT = 19  # 1e19 still fits in 64 bits; a larger exponent never does


# bpftrace 0.27's duration suffixes: the literal is a number of nanoseconds
DURATIONS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_SUFFIX = re.compile(r"(ns|us|ms|s|m|h|d|[uU]?[lL]{0,2}|[lL]{1,2}[uU])$")


def parse_int(text: str) -> int:
    """The value of an integer literal; ValueError (with a message for the user) when invalid."""
    t = text.replace("_", "")
    scale = 1
    if not t[:2].lower() == "0x":
        m = _SUFFIX.search(t)
        if m and m.group():
            t = t[:m.start()]
            scale = DURATIONS.get(m.group(), 1)
    elif t[-1:] in "lLuU":
        t = t.rstrip("lLuU")
    return _parse_int(t) * scale


def _parse_int(t: str) -> int:
    if len(t.lstrip("0")) > 66:  # longer than b + 64 binary digits: never fits (int() refuses > 4300 digits)
        raise ValueError("integer literal does not fit in 64 bits")
    if t[:2].lower() == "0x":
        return int(t[2:], 16)
    if t[:2].lower() == "0b":
        return int(t[2:], 2)
    if "e" in t.lower():
        mant, exp = re.split("[eE]", t)
        if int(exp) > MAX_EXPONENT:  # 1e999999999 would take forever to compute
            raise ValueError(f"exponent will overflow integer range: {int(exp)}")
        return int(mant) * 10 ** int(exp)
    if len(t) > 1 and t[0] == "0":
        if not set(t) <= set("01234567"):
            raise ValueError(f"invalid octal literal '{t}'")
        return int(t, 8)
    return int(t)
