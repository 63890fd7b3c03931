"""The C preprocessor subset bpftrace programs use, run before parsing.

bpftrace's own tools start like this (tcpconnect.bt):

    #ifndef BPFTRACE_HAVE_BTF
    #include <linux/socket.h>
    #include <net/sock.h>
    #else
    #include <sys/socket.h>
    #endif

Supported: #if/#ifdef/#ifndef/#elif/#else/#endif (with `defined X`, `defined(X)` and C integer
arithmetic), #define NAME BODY (object-like macros: the body's tokens replace the name wherever it
is written as an identifier, as cpp does), #undef, #include (recorded: the semantic pass asks the
environment for constants such as AF_INET from the named headers), #error, #warning, #pragma
(ignored) and the null directive `#`.

Positions stay exact: every character of a directive line and of a skipped line becomes a space
(newlines are kept), so the text handed to the parser has the same offsets as the source and every
diagnostic points at the source as written. Macro uses are replaced token by token in the parser's
token stream (parser.py), each replacement token carrying the position of the name it replaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.lang.diagnostics import Diagnostics, Span
from kubectl_pytrace.lang.literals import parse_int  # the language's own literal forms

# A token of a directive line or of a macro body: (kind, text, start offset in the source).
# kinds: int (value already decoded), str, char, id, op.
Tok = Tuple[str, object, int]

_C_INT = r"(?:0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9][0-9_]*(?:[eE][0-9]+)?)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU])?(?![A-Za-z0-9_])"
_TOKEN = re.compile(r"""
    (?P<ws>[ \t\f\v\r]+)
  | (?P<int>""" + _C_INT + r""")
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<char>'(?:[^'\\\n]|\\.)*')
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<var>[$@][A-Za-z0-9_#]*)
  | (?P<op><<=|>>=|\+=|-=|\*=|/=|%=|&=|\|=|\^=|\|\||&&|==|!=|<=|>=|<<|>>|->|\+\+|--|[-+*/%<>&|^!~?:(),\[\]{}.;=])
""", re.X)

DIRECTIVES = ("if", "ifdef", "ifndef", "elif", "else", "endif", "define", "undef", "include", "error",
              "warning", "pragma")


class PreprocessorError(Exception):
    def __init__(self, message: str, span: Span):
        super().__init__(message)
        self.message, self.span = message, span


@dataclass(frozen=True)
class Macro:
    name: str
    body: Tuple[Tok, ...]  # tokens of the body, positions in the source
    span: Span  # the name in its #define


@dataclass(frozen=True)
class Include:
    name: str  # as written between <> or "": "linux/sched.h"
    system: bool  # <...> rather than "..."
    span: Span


@dataclass
class MacroTable:
    """Every definition with the source range where it is in force (cpp's rules are positional)."""

    ranges: Dict[str, List[Tuple[int, int, Macro]]] = field(default_factory=dict)

    def define(self, m: Macro, start: int) -> None:
        self.undef(m.name, start)
        self.ranges.setdefault(m.name, []).append((start, -1, m))

    def undef(self, name: str, pos: int) -> None:
        spans = self.ranges.get(name)
        if spans and spans[-1][1] == -1:
            start, _, m = spans[-1]
            spans[-1] = (start, pos, m)

    def at(self, name: str, pos: int) -> Optional[Macro]:
        for start, end, m in self.ranges.get(name, ()):
            if start <= pos and (end == -1 or pos < end):
                return m
        return None

    def current(self, name: str) -> Optional[Macro]:
        spans = self.ranges.get(name)
        return spans[-1][2] if spans and spans[-1][1] == -1 else None

    def __bool__(self) -> bool:
        return bool(self.ranges)


@dataclass
class Preprocessed:
    text: str  # the source with directives and skipped lines blanked: same length, same offsets
    macros: MacroTable
    includes: List[Include]


def tokenize(text: str, offset: int) -> List[Tok]:
    """C tokens of a directive or macro body; `offset` is where `text` starts in the source."""
    out: List[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PreprocessorError(f"unexpected character {text[pos]!r}", Span(offset + pos, offset + pos + 1))
        kind = m.lastgroup
        start = offset + pos
        pos = m.end()
        if kind == "ws":
            continue
        value: object = m.group()
        if kind == "int":
            value = _c_int(m.group(), start)
        out.append((kind, value, start))  # type: ignore[arg-type]
    return out


def _c_int(text: str, start: int) -> int:
    digits = text.rstrip("uUlL")
    try:
        return parse_int(digits)
    except ValueError as err:
        raise PreprocessorError(str(err), Span(start, start + len(text))) from None


# ---- #if expressions ------------------------------------------------------------------------------

_BINARY = {  # precedence, as in C (higher binds tighter)
    "*": 10, "/": 10, "%": 10, "+": 9, "-": 9, "<<": 8, ">>": 8, "<": 7, ">": 7, "<=": 7, ">=": 7,
    "==": 6, "!=": 6, "&": 5, "^": 4, "|": 3, "&&": 2, "||": 1,
}


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


class ConstExpr:
    """Evaluates a C integer constant expression over tokens (a #if line, a header's #define body).

    `ident(name, tok)` gives the value of an identifier (None: unknown, which is an error, except in
    #if where cpp makes it 0 - the caller decides by what it returns)."""

    def __init__(self, toks: Sequence[Tok], ident: Callable[[str, Tok], Optional[int]], span: Span):
        self.toks, self.ident, self.span, self.i = list(toks), ident, span, 0

    def evaluate(self) -> int:
        if not self.toks:
            raise PreprocessorError("expected an expression", self.span)
        v = self.ternary()
        if self.i < len(self.toks):
            self.fail("unexpected token", self.toks[self.i])
        return v

    def fail(self, what: str, tok: Optional[Tok] = None):
        if tok is None:
            raise PreprocessorError(f"{what} at the end of the expression", self.span)
        text = str(tok[1])
        raise PreprocessorError(f"{what} '{text}'", Span(tok[2], tok[2] + len(text)))

    def peek(self) -> Optional[Tok]:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, op: str) -> bool:
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] == op:
            self.i += 1
            return True
        return False

    def ternary(self) -> int:
        cond = self.binary(1)
        if self.take("?"):
            a = self.ternary()
            if not self.take(":"):
                self.fail("expected ':'", self.peek())
            b = self.ternary()
            return a if cond else b
        return cond

    def binary(self, level: int) -> int:
        left = self.unary()
        while True:
            t = self.peek()
            if t is None or t[0] != "op" or _BINARY.get(t[1], 0) < level:  # type: ignore[arg-type]
                return left
            op = t[1]
            self.i += 1
            right = self.binary(_BINARY[op] + 1)  # type: ignore[index]
            left = self.apply(op, left, right, t)  # type: ignore[arg-type]

    @staticmethod
    def _wrap(v: int) -> int:
        v &= (1 << 64) - 1
        return v - (1 << 64) if v >= 1 << 63 else v

    def apply(self, op: str, a: int, b: int, tok: Tok) -> int:
        if op in ("/", "%") and b == 0:
            self.fail("division by zero in", tok)
        result = {
            "*": lambda: a * b, "/": lambda: _trunc_div(a, b), "%": lambda: a - _trunc_div(a, b) * b,
            "+": lambda: a + b, "-": lambda: a - b, "<<": lambda: a << (b & 63), ">>": lambda: a >> (b & 63),
            "<": lambda: int(a < b), ">": lambda: int(a > b), "<=": lambda: int(a <= b),
            ">=": lambda: int(a >= b), "==": lambda: int(a == b), "!=": lambda: int(a != b),
            "&": lambda: a & b, "^": lambda: a ^ b, "|": lambda: a | b,
            "&&": lambda: int(bool(a) and bool(b)), "||": lambda: int(bool(a) or bool(b)),
        }[op]()
        return self._wrap(result)

    def unary(self) -> int:
        t = self.peek()
        if t is None:
            self.fail("expected a value")
        if t[0] == "op" and t[1] in ("-", "+", "!", "~"):  # type: ignore[index]
            self.i += 1
            v = self.unary()
            return self._wrap({"-": -v, "+": v, "!": int(not v), "~": ~v}[t[1]])  # type: ignore[index]
        if self.take("("):
            v = self.ternary()
            if not self.take(")"):
                self.fail("expected ')'", self.peek())
            return v
        self.i += 1
        if t[0] == "int":
            return self._wrap(t[1])  # type: ignore[arg-type]
        if t[0] == "id":
            if t[1] == "defined":
                return self.defined()
            v = self.ident(t[1], t)  # type: ignore[arg-type]
            if v is None:
                self.fail("not an integer constant:", t)
            return v  # type: ignore[return-value]
        self.fail("unexpected token", t)
        raise AssertionError

    def defined(self) -> int:
        paren = self.take("(")
        t = self.peek()
        if t is None or t[0] != "id":
            self.fail("'defined' needs a macro name", t)
        self.i += 1
        if paren and not self.take(")"):
            self.fail("expected ')'", self.peek())
        return int(self.ident("defined " + t[1], t) or 0)  # type: ignore[index,operator]


# ---- the directive pass ----------------------------------------------------------------------------

@dataclass
class _Cond:
    active: bool  # this branch is being kept
    taken: bool  # some branch of this #if was kept already
    parent_active: bool
    span: Span  # the #if, for "unterminated"
    seen_else: bool = False


def _blank(chars: List[str], start: int, end: int) -> None:
    for i in range(start, end):
        if chars[i] != "\n":
            chars[i] = " "


def _strip_comments(text: str, in_comment: bool) -> Tuple[str, bool]:
    """Comments of one line replaced by spaces (same length); whether a /* */ is still open."""
    out = list(text)
    i = 0
    in_str = False
    while i < len(text):
        if in_comment:
            end = text.find("*/", i)
            stop = len(text) if end < 0 else end + 2
            for j in range(i, stop):
                out[j] = " "
            if end < 0:
                return "".join(out), True
            in_comment = False
            i = stop
            continue
        c = text[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif text.startswith("//", i):
            for j in range(i, len(text)):
                out[j] = " "
            break
        elif text.startswith("/*", i):
            in_comment = True
            continue
        i += 1
    return "".join(out), in_comment


_ANY_DIRECTIVE = re.compile(r"^[ \t]*#(?!!)", re.M)


def preprocess(text: str, diags: Diagnostics, predefined: Optional[Dict[str, str]] = None) -> Preprocessed:
    """Runs the directives of `text`; errors go to diags (the returned text is then unusable)."""
    chars = list(text)
    macros = MacroTable()
    for name, body in (predefined or {}).items():
        macros.define(Macro(name, tuple(tokenize(body, 0)), Span(0, 0)), 0)
    includes: List[Include] = []
    if not _ANY_DIRECTIVE.search(text):
        return Preprocessed(text, macros, includes)
    conds: List[_Cond] = []
    in_comment = False
    lines = text.split("\n")
    starts = []
    pos = 0
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    n = 0
    while n < len(lines):
        start = starts[n]
        line = lines[n]
        active = not conds or conds[-1].active
        stripped = line.lstrip(" \t")
        is_directive = not in_comment and stripped.startswith("#") and not stripped.startswith("#!")
        if not is_directive:
            if not active:
                _blank(chars, start, start + len(line))
            _, in_comment = _strip_comments(line, in_comment)
            n += 1
            continue
        # a directive, with its continuation lines (backslash and newline become two spaces: the
        # offsets of what follows do not move)
        logical = line
        while logical.endswith("\\") and n + 1 < len(lines):
            n += 1
            logical = logical[:-1] + "  " + lines[n]
        end = starts[n] + len(lines[n])
        _blank(chars, start, end)
        body, in_comment = _strip_comments(logical, False)
        hash_at = start + len(line) - len(stripped)
        try:
            _directive(body[len(line) - len(stripped) + 1:], hash_at + 1, hash_at, macros, includes, conds,
                       diags)
        except PreprocessorError as e:
            diags.error(e.message, e.span)
        n += 1
    if conds:
        diags.error("unterminated conditional directive (no #endif)", conds[-1].span)
    return Preprocessed("".join(chars), macros, includes)


def _directive(rest: str, offset: int, hash_at: int, macros: MacroTable, includes: List[Include],
               conds: List[_Cond], diags: Diagnostics) -> None:
    """One directive; `rest` is the text after '#' (comments blanked), starting at source `offset`."""
    m = re.match(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)?", rest)
    assert m
    name = m.group(1) or ""
    name_span = Span(hash_at, offset + m.end())
    args = rest[m.end():]
    args_at = offset + m.end()
    active = not conds or conds[-1].active
    if name in ("if", "ifdef", "ifndef"):
        value = _condition(name, args, args_at, name_span, macros) if active else False
        conds.append(_Cond(active and value, active and value, active, name_span))
        return
    if name in ("elif", "else", "endif"):
        if not conds:
            raise PreprocessorError(f"#{name} without #if", name_span)
        c = conds[-1]
        if name == "endif":
            conds.pop()
            return
        if c.seen_else:
            raise PreprocessorError(f"#{name} after #else", name_span)
        if name == "else":
            c.seen_else = True
            c.active = c.parent_active and not c.taken
        else:
            c.active = (c.parent_active and not c.taken
                        and _condition("if", args, args_at, name_span, macros))
        c.taken = c.taken or c.active
        return
    if not active:
        return  # cpp ignores every other line, even unknown directives, in a skipped branch
    if name == "":
        if args.strip():
            raise PreprocessorError("invalid preprocessor directive", Span(hash_at, hash_at + 1))
        return  # the null directive
    if name == "define":
        _define(args, args_at, macros, name_span)
    elif name == "undef":
        toks = tokenize(args, args_at)
        if len(toks) != 1 or toks[0][0] != "id":
            raise PreprocessorError("#undef needs a macro name", name_span)
        macros.undef(toks[0][1], hash_at)  # type: ignore[arg-type]
    elif name == "include":
        inc = re.match(r'[ \t]*(?:<([^<>\n]+)>|"([^"\n]+)")[ \t]*$', args)
        if not inc:
            raise PreprocessorError('#include expects <FILE> or "FILE"', name_span)
        header = inc.group(1) or inc.group(2)
        includes.append(Include(header.strip(), inc.group(1) is not None,
                                Span(args_at + inc.start(1 if inc.group(1) else 2) - 1,
                                     args_at + inc.end(1 if inc.group(1) else 2) + 1)))
    elif name == "error":
        raise PreprocessorError(f"#error {args.strip()}".rstrip(), name_span)
    elif name == "warning":
        diags.warning(f"#warning {args.strip()}".rstrip(), name_span)
    elif name == "pragma":
        pass
    else:
        raise PreprocessorError(f"unknown preprocessor directive '#{name}'", name_span)


def _define(args: str, at: int, macros: MacroTable, name_span: Span) -> None:
    m = re.match(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)(\(?)", args)
    if not m:
        raise PreprocessorError("#define needs a macro name", name_span)
    name = m.group(1)
    span = Span(at + m.start(1), at + m.end(1))
    if m.group(2):
        raise PreprocessorError(f"function-like macro '{name}' is not supported (only #define NAME VALUE)",
                                span)
    if name == "defined":
        raise PreprocessorError("'defined' cannot be used as a macro name", span)
    body = tokenize(args[m.end():], at + m.end())
    for kind, value, pos in body:
        if kind == "char":
            raise PreprocessorError(f"character constants are not supported: {value}",
                                    Span(pos, pos + len(str(value))))
    macros.define(Macro(name, tuple(body), span), name_span.start)


def _condition(name: str, args: str, at: int, name_span: Span, macros: MacroTable) -> bool:
    toks = tokenize(args, at)
    if name in ("ifdef", "ifndef"):
        if len(toks) != 1 or toks[0][0] != "id":
            raise PreprocessorError(f"#{name} needs a macro name", name_span)
        defined = macros.current(toks[0][1]) is not None  # type: ignore[arg-type]
        return defined if name == "ifdef" else not defined

    def ident(text: str, tok: Tok, hide: frozenset = frozenset()) -> Optional[int]:
        if text.startswith("defined "):
            return int(macros.current(text[8:]) is not None)
        m = macros.current(text)
        if m is None or text in hide:
            return 0  # cpp: an identifier that is no macro is 0 in #if
        return ConstExpr(m.body, lambda t, k: ident(t, k, hide | {text}), Span(tok[2], tok[2] + len(text))).evaluate()

    span = Span(name_span.start, at + len(args.rstrip()))
    return bool(ConstExpr(toks, ident, span).evaluate())
