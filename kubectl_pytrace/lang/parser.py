"""parse(text, filename) -> ast.Program: the only way into the grammar.

The text first goes through the preprocessor (preprocess.py: #if/#define/#include, positions kept);
macro names are replaced by their bodies' tokens between the lexer and the parser. The grammar
lives in grammar.lark; a lark Transformer builds the AST. Syntax errors become diagnostics with
the offending token's span.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from functools import lru_cache
from typing import Dict, Iterator, List, Optional

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang import preprocess as pp
from kubectl_pytrace.lang.literals import parse_int
from kubectl_pytrace.lang.diagnostics import CompileError, Diagnostics, Source, Span

# Identifiers that name builtins (arg0..argN and sarg0..sargN are recognised by pattern).
BUILTINS = frozenset(
    "pid tid uid gid comm nsecs elapsed cpu cgroup retval args func probe curtask rand "
    "kstack ustack cpid ctx username ppid pcomm jiffies ncpus usermode numaid".split()
)
_ARG_RE = re.compile(r"s?arg[0-9]+$")

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "e": "\x1b"}

_TOKEN_NAMES = {
    "SEMICOLON": "';'", "RBRACE": "'}'", "LBRACE": "'{'", "LPAR": "'('", "RPAR": "')'",
    "COMMA": "','", "EQUAL": "'='", "$END": "end of file", "LSQB": "'['", "RSQB": "']'",
}


class _SyntaxProblem(Exception):
    def __init__(self, message: str, span: Span):
        super().__init__(message)
        self.message, self.span = message, span


def _span(meta) -> Span:
    if meta.empty:  # an empty rule (no statements, an empty program) has no position
        return Span(0, 0)
    return Span(meta.start_pos, meta.end_pos)


def _tspan(tok: Token) -> Span:
    return Span(tok.start_pos, tok.end_pos)


def decode_string(tok: Token) -> bytes:
    """The bytes a string literal stands for (bpftrace/C escapes); rejects unknown escapes."""
    body = tok.value[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out += _ESCAPES[e].encode()
            i += 2
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            assert m
            value = int(m.group(), 8)
            if value > 255:
                raise _SyntaxProblem(f"invalid octal escape '\\{m.group()}'", _tspan(tok))
            out.append(value)
            i += 1 + len(m.group())
        elif e == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not m:
                raise _SyntaxProblem("invalid hex escape '\\x' (needs hex digits)", _tspan(tok))
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        else:
            start = tok.start_pos + 1 + i
            raise _SyntaxProblem(f"invalid escape sequence '\\{e}'", Span(start, start + 2))
    return bytes(out)


class _Config:
    def __init__(self, items, span):
        self.items, self.span = items, span


class _Trailing:
    """The last statement of a block written without its ';' (stmts -> last_stmt)."""

    def __init__(self, stmt):
        self.stmt = stmt


@v_args(meta=True)
class _ToAst(Transformer):
    def start(self, meta, items):
        program = ast.Program([i for i in items if isinstance(i, ast.Probe)], _span(meta))
        seen_config = False
        for item in items:
            if isinstance(item, _Config):
                if seen_config:
                    raise _SyntaxProblem("duplicate config block", item.span)
                seen_config = True
                program.config = item.items
            elif isinstance(item, ast.MapDecl):
                program.map_decls.append(item)
            elif isinstance(item, ast.MacroDef):
                program.macros.append(item)
            elif isinstance(item, ast.CDefinition):
                program.c_definitions.append(item)
        return program

    def config(self, meta, children):
        return _Config([c for c in children if c is not None], _span(meta))

    def config_item(self, meta, children):
        key, tok = children
        if tok.type == "STRING":
            value: object = decode_string(tok).decode("utf-8", "surrogateescape")
        elif tok.type == "INT":
            try:
                value = parse_int(tok.value)
            except ValueError as err:
                raise _SyntaxProblem(str(err), _tspan(tok)) from None
        elif tok.type in ("TRUE", "FALSE"):
            value = tok.type == "TRUE"
        else:
            value = tok.value
        return ast.ConfigItem(key.value, value, _span(meta))

    def map_decl(self, meta, children):
        name, kind, n = children
        try:
            entries = parse_int(n.value)
        except ValueError as err:
            raise _SyntaxProblem(str(err), _tspan(n)) from None
        return ast.MapDecl(name.value, kind.value, entries, _span(meta))

    def macro_def(self, meta, children):
        name, *params, body = children
        return ast.MacroDef(name.value, [p for p in params if p is not None], body, _span(meta), _tspan(name))

    def macro_param(self, meta, children):
        tok = children[0]
        kind = {"VAR_NAME": "var", "MAP_NAME": "map"}.get(tok.type, "expr")
        return ast.MacroParam(kind, tok.value, _tspan(tok))

    def c_definition(self, meta, children):
        return ast.CDefinition(children[0].value, _span(meta))

    def probe(self, meta, children):
        aps = children[0]
        pred = children[1] if len(children) == 3 else None
        return ast.Probe(aps, pred, children[-1], _span(meta))

    def attach_points(self, meta, toks):
        return [ast.AttachPoint(t.value, _tspan(t)) for t in toks]

    def predicate(self, meta, children):
        return children[0]

    def probe_block(self, meta, children):
        stmts, trailing = children[0]
        return ast.Block(stmts, _span(meta), trailing)

    block = probe_block
    macro_body = probe_block

    def block_expr(self, meta, children):
        stmts, trailing = children[0]
        if trailing:
            return ast.BlockExpr(stmts[:-1], stmts[-1].expr, _span(meta))
        return ast.BlockExpr(stmts, None, _span(meta))

    def block_stmt(self, meta, children):
        return ast.BlockStmt(children[0], _span(meta))

    def stmts(self, meta, children):
        out, trailing = [], False
        for c in children:
            if isinstance(c, _Trailing):
                out.append(c.stmt)
                trailing = isinstance(c.stmt, ast.ExprStmt)
            elif c is not None:
                out.append(c)
        return out, trailing

    def last_stmt(self, meta, children):
        return _Trailing(children[0])

    def if_stmt(self, meta, children):
        cond, then = children[0], children[1]
        orelse = children[2] if len(children) > 2 else None
        if isinstance(orelse, ast.If):
            orelse = ast.Block([orelse], orelse.span)
        return ast.If(cond, then, orelse, _span(meta))

    def unroll_stmt(self, meta, children):
        return ast.Unroll(children[0], children[1], _span(meta))

    def for_stmt(self, meta, children):
        var_tok, rng, body = children
        var = ast.Var(var_tok.value, _tspan(var_tok))
        start, end = rng
        if end is None:
            if not isinstance(start, ast.Map) or start.keys:
                raise _SyntaxProblem("a for loop iterates over a map (for ($kv : @m)) or a range "
                                     "(for ($i : start..end))", start.span)
            return ast.For(var, None, None, start, body, _span(meta))
        return ast.For(var, start, end, None, body, _span(meta))

    def for_range(self, meta, children):
        start = children[0]
        end = children[2] if len(children) == 3 else None
        return start, end

    def expr_stmt(self, meta, children):
        return ast.ExprStmt(children[0], _span(meta))

    def let_stmt(self, meta, children):
        var_tok = children[0]
        typ = next((c for c in children[1:] if isinstance(c, ast.TypeName)), None)
        value = next((c for c in children[1:] if isinstance(c, ast.Expr)), None)
        return ast.Let(ast.Var(var_tok.value, _tspan(var_tok)), typ, value, _span(meta))

    def discard(self, meta, children):
        return ast.Discard(children[0], _span(meta))

    def _assign(self, target, value, span):
        if isinstance(target, ast.Map):
            return ast.AssignMap(target, value, span)
        return ast.AssignVar(target, value, span)

    def assign(self, meta, children):
        return self._assign(children[0], children[1], _span(meta))

    def compound_assign(self, meta, children):
        target, op, value = children
        # `@x[k] op= v` means `@x[k] = @x[k] op v`
        return self._assign(target, ast.Binop(op.value[:-1], target, value, _span(meta)), _span(meta))

    def return_stmt(self, meta, children):
        return ast.Return(_span(meta))

    def break_stmt(self, meta, children):
        return ast.Break(_span(meta))

    def continue_stmt(self, meta, children):
        return ast.Continue(_span(meta))

    def while_stmt(self, meta, children):
        return ast.While(children[0], children[1], _span(meta))

    def cond(self, meta, children):
        return ast.Cond(children[0], children[1], children[2], _span(meta))

    def binop(self, meta, children):
        left, op, right = children
        return ast.Binop(op.value, left, right, _span(meta))

    def unop(self, meta, children):
        op, operand = children
        return ast.Unop(op.value, operand, _span(meta))

    def pre_incdec(self, meta, children):
        return ast.IncDec(children[1], children[0].value, True, _span(meta))

    def post_incdec(self, meta, children):
        return ast.IncDec(children[0], children[1].value, False, _span(meta))

    def cast(self, meta, children):
        return ast.Cast(children[0], children[1], _span(meta))

    def type_spec(self, meta, children):
        base, *suffixes = children
        sfx = tuple(suffixes)
        if all(x == "*" for x in sfx):
            return ast.TypeName(base, len(sfx), _span(meta))
        return ast.TypeName(base, 0, _span(meta), sfx)

    def type_suffix(self, meta, children):
        if children[0] == "*":
            return "*"
        if len(children) == 3:
            return f"[{children[1].value}]"
        return "[]"

    def int_type(self, meta, children):
        return children[0].value

    def struct_type(self, meta, children):
        return "struct " + children[0].value

    def union_type(self, meta, children):
        return "union " + children[0].value

    def enum_type(self, meta, children):
        return "enum " + children[0].value

    def named_type(self, meta, children):
        return children[0].value

    def sizeof(self, meta, children):
        arg = children[0]
        if isinstance(arg, ast.TypeName):
            return ast.SizeOf(arg, None, _span(meta))
        return ast.SizeOf(None, arg, _span(meta))

    def offsetof(self, meta, children):
        return ast.OffsetOf(children[0], children[1], _span(meta))

    def field_path(self, meta, children):
        return list(children)

    def field(self, meta, children):
        return ast.FieldAccess(children[0], children[1], False, _span(meta))

    def arrow(self, meta, children):
        return ast.FieldAccess(children[0], children[1], True, _span(meta))

    def field_name(self, meta, children):
        return children[0].value

    def index(self, meta, children):
        return ast.Index(children[0], children[1], _span(meta))

    def true(self, meta, children):
        return ast.Bool(True, _tspan(children[0]))

    def false(self, meta, children):
        return ast.Bool(False, _tspan(children[0]))

    def record(self, meta, children):
        names = [c.value for c in children[0::2]]
        if len(set(names)) != len(names):
            raise _SyntaxProblem("a record's field names must differ", _span(meta))
        return ast.Record(names, list(children[1::2]), _span(meta))

    def integer(self, meta, children):
        tok = children[0]
        try:
            return ast.Integer(parse_int(tok.value), _tspan(tok))  # durations in ns: 1s, 5ms
        except ValueError as err:
            raise _SyntaxProblem(str(err), _tspan(tok)) from None

    def string(self, meta, children):
        tok = children[0]
        return ast.String(decode_string(tok), _tspan(tok))

    def positional(self, meta, children):
        tok = children[0]
        if tok.value == "$#":
            return ast.Positional(0, True, _tspan(tok))
        if len(tok.value) > 7:  # int() refuses thousands of digits; nobody passes a million parameters
            raise _SyntaxProblem("positional parameter number too large", _tspan(tok))
        return ast.Positional(int(tok.value[1:]), False, _tspan(tok))

    def ident(self, meta, children):
        tok = children[0]
        if tok.value in BUILTINS or _ARG_RE.match(tok.value):
            return ast.Builtin(tok.value, _tspan(tok))
        return ast.Identifier(tok.value, _tspan(tok))

    def call(self, meta, children):
        name = children[0]
        args = [a for a in children[1:] if a is not None]
        if not args and name.value in BUILTINS:  # pid(), comm(): bpftrace 0.27's call form of a builtin
            return ast.Builtin(name.value, _span(meta))
        return ast.Call(name.value, args, _span(meta), _tspan(name))

    def tuple(self, meta, children):
        return ast.Tuple([c for c in children if c is not None], _span(meta))

    def map(self, meta, children):
        return ast.Map(children[0].value, list(children[1:]), _span(meta))

    def var(self, meta, children):
        return ast.Var(children[0].value, _span(meta))


# The macros of the program being parsed (a MacroTable), for _MacroExpander.
_MACROS: contextvars.ContextVar = contextvars.ContextVar("pytrace_macros", default=None)
# Where identifiers stand for type names (type_positions()), for _MacroExpander.
_TYPES: contextvars.ContextVar = contextvars.ContextVar("pytrace_types", default=None)

_IDENT_RE = r"[A-Za-z_][A-Za-z0-9_]*"
# `(name)` or `(name *)` before the start of an expression is a cast to the type `name`, as
# bpftrace reads it (`(pid_t)arg0`, `(myident)*$a`); `(name *)` is a type wherever it is
_PAREN_TYPE = re.compile(r"\(\s*(" + _IDENT_RE + r")\s*(\*[\s*]*)?\)\s*(.)", re.S)
# after sizeof( / offsetof( / typeof( and in `let $x: T`, an identifier is a type
_TYPE_CONTEXT = re.compile(r"(?:\b(?:sizeof|offsetof|typeof)\s*\(|\blet\s+\$" + _IDENT_RE + r"\s*:)\s*("
                           + _IDENT_RE + r")\s*([)*\[,=;]|$)")
_EXPR_START = set("$@\"(!~-+&*'") | set("0123456789") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


def type_positions(text: str, macro_names: frozenset = frozenset()) -> frozenset:
    """Offsets of the identifiers that name types: `(T)expr`, `(T *)`, sizeof(T), let $x: T.
    Builtins (pid, comm...) and the program's macros are never types."""
    out = set()
    not_types = BUILTINS | macro_names | _KEYWORDS
    for m in _PAREN_TYPE.finditer(text):
        name, stars, after = m.group(1), m.group(2), m.group(3)
        if name in not_types or _ARG_RE.match(name):
            continue
        if stars or after in _EXPR_START:
            out.add(m.start(1))
    for m in _TYPE_CONTEXT.finditer(text):
        if m.group(1) not in not_types and not _ARG_RE.match(m.group(1)):
            out.add(m.start(1))
    return frozenset(out)


_KEYWORDS = frozenset("if else while unroll for let macro config return break continue struct union enum "
                      "sizeof offsetof true false".split())
_MACRO_DEF = re.compile(r"\bmacro\s+(" + _IDENT_RE + r")")
_MACRO_PARAMS = re.compile(r"\bmacro\s+" + _IDENT_RE + r"\s*\(([^)]*)\)")
MAX_EXPANSION = 10000  # tokens one use of a macro may become (#define A B B, #define B C C, ...)


class _MacroExpander:
    """Lark post-lexer: an IDENT naming a macro becomes the tokens of the macro's body (recursively,
    a macro never expanding inside itself, as in cpp), each placed at the position of the name."""

    # IDENT in every state: a name where only a type may come (`let $x: pid_t`) must reach process()
    # to become a TYPE_IDENT, which no state's lexer can match by itself
    always_accept = ("IDENT",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        table = _MACROS.get()
        types = _TYPES.get() or frozenset()
        for tok in stream:
            if tok.type == "IDENT" and tok.start_pos in types:
                yield Token.new_borrow_pos("TYPE_IDENT", tok.value, tok)
            elif table and tok.type == "IDENT" and table.at(tok.value, tok.start_pos) is not None:
                out: List[Token] = []
                self.expand(table, tok.value, tok, frozenset(), out)
                yield from out
            else:
                yield tok

    def expand(self, table, name: str, at: Token, hide: frozenset, out: List[Token]) -> None:
        macro = table.at(name, at.start_pos)
        for kind, value, _pos in macro.body:
            if kind == "id" and value not in hide and table.at(value, at.start_pos) is not None:
                self.expand(table, value, at, hide | {name}, out)
                continue
            if len(out) >= MAX_EXPANSION:
                raise _SyntaxProblem(f"macro '{at.value}' expands to more than {MAX_EXPANSION} tokens",
                                     _tspan(at))
            out.append(Token.new_borrow_pos(_token_type(kind, value, at), str(value), at))


@lru_cache(maxsize=None)
def _terminal_types() -> Dict[str, str]:
    """Operator and keyword spellings -> the grammar's terminal names ("(" -> "LPAR")."""
    out: Dict[str, str] = {}
    ops = ("<<= >>= += -= *= /= %= &= |= ^= || && == != <= >= << >> -> ++ -- - + * / % < > & | ^ ! ~ ? : "
           "( ) , [ ] { } . ; =").split()
    terminals = [t for t in _parser().terminals if t.name not in ("ATTACH_POINT", "PRED_END", "COMMENT",
                                                                    "SHEBANG", "WS", "IDENT", "INT")]
    for op in ops:
        for t in terminals:
            if re.fullmatch(t.pattern.to_regexp(), op):
                out[op] = t.name
                break
    for t in terminals:  # keywords: if, while, struct ...
        if t.pattern.type == "str" and t.pattern.value.isidentifier():
            out[t.pattern.value] = t.name
    return out


def _token_type(kind: str, value: object, at: Token) -> str:
    if kind == "int":
        return "INT"
    if kind == "str":
        return "STRING"
    text = str(value)
    if kind == "var":
        for name in ("POSITIONAL", "VAR_NAME", "MAP_NAME"):
            if re.fullmatch(_TERMINAL_RE[name], text):
                return name
    elif kind == "id":
        if re.fullmatch(_TERMINAL_RE["INT_TYPE"], text):
            return "INT_TYPE"
        return _terminal_types().get(text, "IDENT")
    elif text in _terminal_types():
        return _terminal_types()[text]
    raise _SyntaxProblem(f"macro '{at.value}' contains '{text}', which cannot appear in a program", _tspan(at))


_TERMINAL_RE = {"POSITIONAL": r"\$([0-9]+|#)", "VAR_NAME": r"\$[A-Za-z_][A-Za-z0-9_]*",
                "MAP_NAME": r"@[A-Za-z0-9_]*", "INT_TYPE": r"(u?int(8|16|32|64)|bool)"}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark.open("grammar.lark", rel_to=__file__, parser="lalr", propagate_positions=True,
                     maybe_placeholders=True, cache=True, postlex=_MacroExpander())


def _describe(tok: Token) -> str:
    if tok.type in _TOKEN_NAMES:
        return _TOKEN_NAMES[tok.type]
    return repr(tok.value) if tok.value else tok.type


# Every pass walks the tree recursively; deeper programs (a sum of 1000 terms, 500 nested ifs)
# would exhaust Python's stack in the middle of a pass. 600 levels of the parse tree are a sum of
# 600 terms or 200 nested ifs; the passes then need a few thousand frames (recursion_room()).
MAX_NESTING = 600
_RECURSION_LIMIT = 10000


@contextlib.contextmanager
def recursion_room():
    """Enough Python stack for the passes on a tree of MAX_NESTING levels (several frames each)."""
    old = sys.getrecursionlimit()
    if old < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)
    try:
        yield
    finally:
        if old < _RECURSION_LIMIT:
            sys.setrecursionlimit(old)


def _check_nesting(tree: Tree) -> None:
    stack = [(tree, 1, Span(0, 1))]
    while stack:
        node, depth, span = stack.pop()
        if not node.meta.empty:  # an empty rule (no statements) has no position: keep its parent's
            span = Span(node.meta.start_pos, node.meta.end_pos)
        if depth > MAX_NESTING:
            raise _SyntaxProblem(f"the program is nested too deeply (more than {MAX_NESTING} levels of "
                                 f"expressions and blocks)", span)
        stack.extend((c, depth + 1, span) for c in node.children if isinstance(c, Tree))


# What a program's #if sees when nothing else is known: bpftrace's tools test BPFTRACE_HAVE_BTF,
# and the node they will run on decides (Environment.predefined_macros()).
DEFAULT_PREDEFINED = {"BPFTRACE_HAVE_BTF": "1"}


def parse(text: str, filename: str = "stdin", predefined: Optional[Dict[str, str]] = None,
          diags: Optional[Diagnostics] = None) -> ast.Program:
    """Preprocess and parse a program; raises CompileError carrying the rendered diagnostics.

    predefined: macros defined before the first line (NAME -> body text); diags: where warnings
    (#warning) and errors go, a new Diagnostics by default."""
    if diags is None:
        diags = Diagnostics(Source(text, filename))
    pre = pp.preprocess(text, diags, DEFAULT_PREDEFINED if predefined is None else predefined)
    if diags.has_errors():
        raise CompileError(diags)
    token = _MACROS.set(pre.macros)
    not_types = set(_MACRO_DEF.findall(pre.text))
    for params in _MACRO_PARAMS.findall(pre.text):  # a macro's expression parameters
        not_types.update(p.strip() for p in params.split(","))
    types = _TYPES.set(type_positions(pre.text, frozenset(not_types)))
    try:
        tree = _parser().parse(pre.text)
        _check_nesting(tree)
        with recursion_room():
            program = _ToAst().transform(tree)
        program.includes = [i.name for i in pre.includes]
        if not program.probes:  # only definitions (or nothing): a probe was expected
            end = len(text.rstrip())
            diags.error("syntax error, unexpected end of file", Span(max(0, end - 1), max(end, 1)))
            raise CompileError(diags)
        return program
    except _SyntaxProblem as e:
        diags.error(e.message, e.span)
    except VisitError as e:
        if isinstance(e.orig_exc, _SyntaxProblem):
            diags.error(e.orig_exc.message, e.orig_exc.span)
        else:
            raise
    except UnexpectedEOF:
        end = len(text)
        diags.error("syntax error, unexpected end of file", Span(max(0, end - 1), end))
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            end = len(text.rstrip())
            diags.error("syntax error, unexpected end of file", Span(max(0, end - 1), end))
        else:
            diags.error(f"syntax error, unexpected {_describe(tok)}", _tspan(tok))
    except UnexpectedCharacters as e:
        pos = e.pos_in_stream
        ch = text[pos]
        if ch == '"':
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            diags.error("unterminated string (strings end on the same line, backslash-newline "
                        "is not allowed)", Span(pos, end))
        elif ch == "\\":
            diags.error("syntax error, unexpected '\\' (backslash outside a string)", Span(pos, pos + 1))
        else:
            diags.error(f"syntax error, unexpected character {ch!r}", Span(pos, pos + 1))
    except UnexpectedInput as e:  # pragma: no cover - other lark errors
        diags.error(f"syntax error: {e}", Span(0, 1))
    finally:
        _MACROS.reset(token)
        _TYPES.reset(types)
    raise CompileError(diags)
