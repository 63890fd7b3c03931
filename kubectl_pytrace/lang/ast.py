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
    base: str  # "uint32", "struct sock"
    pointer: int = 0
    span: Span = _span()


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
class Program(Node):
    probes: List[Probe]
    span: Span = _span()
    includes: List[str] = field(default_factory=list)  # headers named by #include, as written


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
            if f.name in ("span", "name_span"):
                continue
            v = getattr(node, f.name)
            if isinstance(v, Node):
                kids.append(v)
            elif isinstance(v, list):
                kids.extend(x for x in v if isinstance(x, Node))
            elif v is not None:
                scalars.append(repr(v) if isinstance(v, bytes) else str(v))
        out.append("  " * level + type(node).__name__ + (" " + " ".join(scalars) if scalars else ""))
        stack.extend((k, level + 1) for k in reversed(kids))
    return "\n".join(out)
