"""The abstract syntax tree: every node kind in one place.

Each node carries its source span; equality ignores spans, so parser tests compare whole trees.
Types are not stored in the tree: one probe body is checked once per attach point (a tracepoint
wildcard gives each match its own `args`), so the semantic pass keeps types in a side table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator, List, Optional, Union

from kubectl_pytrace.lang.diagnostics import NO_SPAN, Span


def _span():
    return field(default=NO_SPAN, compare=False, repr=False)


class Node:
    span: Span

    def children(self) -> Iterator["Node"]:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Node):
                yield value
            elif isinstance(value, list):
                yield from (v for v in value if isinstance(v, Node))

    def walk(self) -> Iterator["Node"]:
        yield self
        for child in self.children():
            yield from child.walk()


# ---- expressions ------------------------------------------------------------------------------

class Expr(Node):
    pass


@dataclass(eq=True)
class Integer(Expr):
    value: int
    span: Span = _span()


@dataclass(eq=True)
class Bool(Expr):
    value: bool
    span: Span = _span()


@dataclass(eq=True)
class String(Expr):
    value: bytes  # escapes already decoded; no terminating NUL
    span: Span = _span()


@dataclass(eq=True)
class Builtin(Expr):
    name: str  # pid, comm, arg0, args, retval, ...
    span: Span = _span()


@dataclass(eq=True)
class Identifier(Expr):
    """A bare name that is not a builtin (reported by the semantic pass)."""

    name: str
    span: Span = _span()


@dataclass(eq=True)
class Positional(Expr):
    index: int  # $1 -> 1; $# -> 0 means "number of parameters"
    count: bool = False
    span: Span = _span()


@dataclass(eq=True)
class Map(Expr):
    name: str  # "@" or "@name"
    keys: List[Expr] = field(default_factory=list)
    span: Span = _span()


@dataclass(eq=True)
class Var(Expr):
    name: str  # "$name"
    span: Span = _span()


@dataclass(eq=True)
class Call(Expr):
    name: str
    args: List[Expr] = field(default_factory=list)
    span: Span = _span()
    name_span: Span = _span()


@dataclass(eq=True)
class Binop(Expr):
    op: str
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(eq=True)
class Unop(Expr):
    op: str  # ! ~ - + * &
    operand: Expr
    span: Span = _span()


@dataclass(eq=True)
class Cond(Expr):
    cond: Expr
    then: Expr
    orelse: Expr
    span: Span = _span()


@dataclass(eq=True)
class FieldAccess(Expr):
    expr: Expr
    name: str  # a member name, or a tuple index as text ("0")
    arrow: bool = False
    span: Span = _span()


@dataclass(eq=True)
class Index(Expr):
    expr: Expr
    index: Expr
    span: Span = _span()


@dataclass(eq=True)
class TypeName(Node):
    base: str  # "uint32", "struct sock", "enum tcp_state", "pid_t", "string"
    pointer: int = 0  # how many '*' follow the base (when there are no array suffixes)
    span: Span = _span()
    # pointer and array suffixes in order, when arrays are involved: ("*", "[4]", ...)
    suffixes: tuple = field(default=(), compare=True)


@dataclass(eq=True)
class Cast(Expr):
    type: TypeName
    expr: Expr
    span: Span = _span()


@dataclass(eq=True)
class Tuple(Expr):
    elems: List[Expr]
    span: Span = _span()


@dataclass(eq=True)
class Record(Expr):
    """(a = 1, b = "x"): named fields."""

    names: List[str]
    values: List[Expr]
    span: Span = _span()


@dataclass(eq=True)
class SizeOf(Expr):
    """sizeof(TYPE) or sizeof(expr): a compile-time constant."""

    type: Optional["TypeName"]
    expr: Optional[Expr]
    span: Span = _span()


@dataclass(eq=True)
class OffsetOf(Expr):
    """offsetof(struct X, a.b): the byte offset of a member, a compile-time constant."""

    type: "TypeName"
    path: List[str]
    span: Span = _span()


@dataclass(eq=True)
class BlockExpr(Expr):
    """{ stmts; expr }: runs the statements, then has the value of the last expression (if the
    block ends with one)."""

    stmts: List["Stmt"]
    value: Optional[Expr]
    span: Span = _span()


@dataclass(eq=True)
class IncDec(Expr):
    target: Expr  # Map or Var
    op: str  # "++" | "--"
    prefix: bool
    span: Span = _span()


# ---- statements -------------------------------------------------------------------------------

class Stmt(Node):
    pass


@dataclass(eq=True)
class Block(Node):
    stmts: List[Stmt]
    span: Span = _span()
    # the last statement is an expression without its ';': the block's value (macro bodies)
    trailing: bool = field(default=False, compare=False, repr=False)


@dataclass(eq=True)
class ExprStmt(Stmt):
    expr: Expr
    span: Span = _span()


@dataclass(eq=True)
class AssignMap(Stmt):
    target: Map
    value: Expr
    span: Span = _span()


@dataclass(eq=True)
class AssignVar(Stmt):
    target: Var
    value: Expr
    span: Span = _span()


@dataclass(eq=True)
class If(Stmt):
    cond: Expr
    then: Block
    orelse: Optional[Block] = None  # an `else if` is a Block holding one If
    span: Span = _span()


@dataclass(eq=True)
class Unroll(Stmt):
    count: Expr
    body: Block
    span: Span = _span()


@dataclass(eq=True)
class While(Stmt):
    cond: Expr
    body: Block
    span: Span = _span()


@dataclass(eq=True)
class For(Stmt):
    """for ($i : start..end) { } (end exclusive), or for ($kv : @map) { } (map iteration: $kv is
    (key, value), or ((k1, k2...), value))."""

    var: Var
    start: Optional[Expr]  # None: map iteration
    end: Optional[Expr]
    map: Optional[Map]
    body: Block
    span: Span = _span()


@dataclass(eq=True)
class Let(Stmt):
    """let $x; let $x = v; let $x: T = v; declares $x in the enclosing block."""

    target: Var
    type: Optional[TypeName]
    value: Optional[Expr]
    span: Span = _span()


@dataclass(eq=True)
class Discard(Stmt):
    """_ = expr; evaluates expr and drops its value."""

    expr: Expr
    span: Span = _span()


@dataclass(eq=True)
class BlockStmt(Stmt):
    """{ ... } as a statement: a scope of its own."""

    body: Block
    span: Span = _span()


@dataclass(eq=True)
class Return(Stmt):
    span: Span = _span()


@dataclass(eq=True)
class Break(Stmt):
    span: Span = _span()


@dataclass(eq=True)
class Continue(Stmt):
    span: Span = _span()


# ---- probes -----------------------------------------------------------------------------------

@dataclass(eq=True)
class AttachPoint(Node):
    raw: str  # as written: "uprobe:/bin/bash:readline"
    span: Span = _span()


@dataclass(eq=True)
class Probe(Node):
    attach_points: List[AttachPoint]
    predicate: Optional[Expr]
    block: Block
    span: Span = _span()


@dataclass(eq=True)
class ConfigItem(Node):
    key: str
    value: object  # str, int or bool
    span: Span = _span()


@dataclass(eq=True)
class MapDecl(Node):
    """let @m = lruhash(100); before the probes."""

    name: str
    kind: str  # hash lruhash percpuhash percpulruhash
    max_entries: int
    span: Span = _span()


@dataclass(eq=True)
class MacroParam(Node):
    kind: str  # "var" ($x: a variable, by reference), "map" (@m), "expr" (x: an expression)
    name: str
    span: Span = _span()


@dataclass(eq=True)
class MacroDef(Node):
    name: str
    params: List[MacroParam]
    body: Block
    span: Span = _span()
    name_span: Span = _span()


@dataclass(eq=True)
class CDefinition(Node):
    """A C struct/union/enum definition written in the program (c_definitions.py reads it)."""

    text: str
    span: Span = _span()


@dataclass(eq=True)
class Program(Node):
    probes: List[Probe]
    span: Span = _span()
    includes: List[str] = field(default_factory=list)  # headers named by #include, as written
    config: List[ConfigItem] = field(default_factory=list)
    map_decls: List[MapDecl] = field(default_factory=list)
    macros: List[MacroDef] = field(default_factory=list)
    c_definitions: List[CDefinition] = field(default_factory=list)


Lvalue = Union[Map, Var]


def const_int(e: Expr) -> Optional[int]:
    """The value of an integer literal, maybe negated (`-0`, `-5`); None for anything else."""
    if isinstance(e, Integer):
        return e.value
    if isinstance(e, Unop) and e.op == "-" and isinstance(e.operand, Integer):
        return -e.operand.value
    return None


class NodeVisitor:
    """Dispatches visit(node) to visit_<ClassName>; generic_visit walks the children."""

    def visit(self, node: Node):
        return getattr(self, "visit_" + type(node).__name__, self.generic_visit)(node)

    def generic_visit(self, node: Node):
        for child in node.children():
            self.visit(child)


def dump(node: Node, indent: int = 0) -> str:
    """A readable tree (for --dump ast). Iterative: trees can be hundreds of levels deep."""
    out: List[str] = []
    stack = [(node, indent)]
    while stack:
        node, level = stack.pop()
        scalars = []
        kids: List[Node] = []
        for f in fields(node):  # type: ignore[arg-type]
            if not f.compare:  # spans, Block.trailing
                continue
            v = getattr(node, f.name)
            if isinstance(v, Node):
                kids.append(v)
            elif isinstance(v, list):
                kids.extend(x for x in v if isinstance(x, Node))
                if v and not any(isinstance(x, Node) for x in v):
                    scalars.append(".".join(map(str, v)))
            elif v is not None and v != ():
                scalars.append(repr(v) if isinstance(v, bytes) else str(v))
        out.append("  " * level + type(node).__name__ + (" " + " ".join(scalars) if scalars else ""))
        stack.extend((k, level + 1) for k in reversed(kids))
    return "\n".join(out)
