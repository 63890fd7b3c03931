"""Macro expansion: `macro name(x, $v, @m) { ... }` calls replaced by their bodies, before any other pass.

bpftrace 0.27's macros are hygienic substitution:
- an expression parameter `x` stands for the argument expression, re-evaluated at each use;
- a variable parameter `$v` is the caller's variable itself (the macro may assign it): the argument
  must be a variable;
- a map parameter `@m` is the caller's map: the argument must be a map;
- variables the body creates are its own (renamed here, so they never meet the caller's);
- maps the body names without a parameter are an error ("unhygienic access").

A call is `name(args)`, or the bare `name` for a macro without parameters (`if errname { }`). In an
expression, the call becomes a block expression whose value is the body's last expression (written
without ';'); as a statement, a block statement. Macros may call macros, not themselves.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from typing import Dict, List, Optional

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang.diagnostics import Diagnostics

MAX_DEPTH = 50  # nested expansions (a macro calling a macro calling ...)


class _Stop(Exception):
    pass


def expand_macros(program: ast.Program, diags: Diagnostics) -> None:
    """Replaces every macro call in the program's probes, in place; errors go to diags."""
    if not program.macros:
        return
    table: Dict[str, ast.MacroDef] = {}
    for m in program.macros:
        if m.name in table:
            diags.error(f"Redefinition of macro: {m.name}", m.name_span)
            continue
        seen = set()
        for p in m.params:
            if p.name in seen:
                what = {"var": "Variable", "map": "Map", "expr": "Ident"}[p.kind]
                diags.error(f"{what} for macro argument has already been used: {p.name}", p.span)
            seen.add(p.name)
        table[m.name] = m
    if diags.has_errors():
        return
    ex = _Expander(table, diags)
    for probe in program.probes:
        try:
            if probe.predicate is not None:
                probe.predicate = ex.expr(probe.predicate, [])
            ex.block(probe.block, [])
        except _Stop:
            pass


class _Expander:
    def __init__(self, table: Dict[str, ast.MacroDef], diags: Diagnostics):
        self.table, self.diags = table, diags
        self.count = 0

    # ---- walking the caller's tree ---------------------------------------------------------------
    def block(self, b: ast.Block, stack: List[str]) -> None:
        b.stmts = [self.stmt(s, stack) for s in b.stmts]

    def stmt(self, s: ast.Stmt, stack: List[str]) -> ast.Stmt:
        if isinstance(s, ast.ExprStmt):
            call = self._macro_call(s.expr)
            if call is not None:
                body = self.call(s.expr, stack, statement=True)
                return ast.BlockStmt(body, s.span)  # type: ignore[arg-type]
        self._children(s, stack)
        return s

    def expr(self, e: ast.Expr, stack: List[str]) -> ast.Expr:
        if self._macro_call(e) is not None:
            b = self.call(e, stack, statement=False)
            stmts = list(b.stmts)
            value = None
            if b.trailing and stmts and isinstance(stmts[-1], ast.ExprStmt):
                value = stmts.pop().expr  # type: ignore[attr-defined]
            return ast.BlockExpr(stmts, value, e.span)
        self._children(e, stack)
        return e

    def _children(self, node: ast.Node, stack: List[str]) -> None:
        for f in fields(node):  # type: ignore[arg-type]
            v = getattr(node, f.name)
            if isinstance(v, ast.Block):
                self.block(v, stack)
            elif isinstance(v, ast.Stmt):
                setattr(node, f.name, self.stmt(v, stack))
            elif isinstance(v, ast.Expr):
                setattr(node, f.name, self.expr(v, stack))
            elif isinstance(v, list):
                setattr(node, f.name, [self.stmt(x, stack) if isinstance(x, ast.Stmt) else
                                       self.expr(x, stack) if isinstance(x, ast.Expr) else x for x in v])

    def _macro_call(self, e: ast.Expr) -> Optional[ast.MacroDef]:
        if isinstance(e, ast.Call) and e.name in self.table:
            return self.table[e.name]
        if isinstance(e, ast.Identifier) and e.name in self.table:
            return self.table[e.name]
        return None

    # ---- one expansion ---------------------------------------------------------------------------
    def call(self, e: ast.Expr, stack: List[str], statement: bool) -> ast.Block:
        macro = self._macro_call(e)
        assert macro is not None
        args: List[ast.Expr] = list(e.args) if isinstance(e, ast.Call) else []
        name_span = e.name_span if isinstance(e, ast.Call) else e.span
        if macro.name in stack or len(stack) >= MAX_DEPTH:
            chain = " > ".join(stack + [macro.name])
            self.diags.error(f"Recursive macro call detected. Call chain: {chain}", name_span)
            raise _Stop()
        if len(args) != len(macro.params):
            self.diags.error(f"Call to {macro.name}() has the wrong number of arguments. Expected: "
                             f"{len(macro.params)} but got {len(args)}.", e.span)
            raise _Stop()
        exprs: Dict[str, ast.Expr] = {}
        variables: Dict[str, str] = {}
        maps: Dict[str, str] = {}
        bad = False
        for p, a in zip(macro.params, args):
            a = self.expr(a, stack)  # the caller's own macros, in the caller's context
            if p.kind in ("var", "map"):  # $x or @m: the caller's variable or map, renamed
                ok = isinstance(a, ast.Var) if p.kind == "var" else isinstance(a, ast.Map) and not a.keys
                if not ok:
                    got = "a map" if isinstance(a, ast.Map) else "a variable" if isinstance(a, ast.Var) \
                        else "an expression"
                    want = "a variable" if p.kind == "var" else "a map"
                    self.diags.error(f"Mismatched arg. {macro.name}() expects {want} for arg {p.name} "
                                     f"but got {got}.", a.span)
                    bad = True
                    continue
                (variables if p.kind == "var" else maps)[p.name] = a.name  # type: ignore[union-attr]
            else:
                exprs[p.name] = a
        if bad:
            raise _Stop()
        self.count += 1
        body = copy.deepcopy(macro.body)
        _Substitute(macro, exprs, variables, maps, self.count, self.diags).block(body)
        self.block(body, stack + [macro.name])  # macros the body calls
        return body


class _Substitute:
    """Rewrites a copy of a macro body for one call."""

    def __init__(self, macro: ast.MacroDef, exprs: Dict[str, ast.Expr], variables: Dict[str, str],
                 maps: Dict[str, str], n: int, diags: Diagnostics):
        self.macro, self.exprs, self.variables, self.maps = macro, exprs, variables, maps
        self.suffix = f"#{macro.name}{n}"  # the body's own variables: never the caller's
        self.diags = diags
        self.seen: set = set()  # `@m += 1` holds one Map node twice

    def block(self, b: ast.Block) -> None:
        b.stmts = [self.node(s) for s in b.stmts]

    def node(self, n):
        if id(n) in self.seen:
            return n
        self.seen.add(id(n))
        if isinstance(n, ast.Identifier) and n.name in self.exprs:
            return copy.deepcopy(self.exprs[n.name])
        if isinstance(n, ast.Call) and not n.args and n.name in self.exprs and n.name not in ("exit",):
            return copy.deepcopy(self.exprs[n.name])
        if isinstance(n, ast.Var):
            n.name = self.variables.get(n.name, n.name + self.suffix if "#" not in n.name else n.name)
            return n
        if isinstance(n, ast.Map):
            if n.name not in self.maps:
                self.diags.error(f"Unhygienic access to map: {n.name}. Maps must be passed into the macro "
                                 f"as arguments.", n.span)
            else:
                n.name = self.maps[n.name]
        if isinstance(n, ast.Let) and n.target.name in self.variables:
            self.diags.error(f"Variable declaration shadows macro arg {n.target.name}", n.span)
        for f in fields(n):  # type: ignore[arg-type]
            v = getattr(n, f.name)
            if isinstance(v, ast.Node):
                setattr(n, f.name, self.node(v))
            elif isinstance(v, list):
                setattr(n, f.name, [self.node(x) if isinstance(x, ast.Node) else x for x in v])
        return n
