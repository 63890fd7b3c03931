"""Probe expansion: attach points -> concrete probes -> groups that share one generated function.

Wildcards (`tracepoint:syscalls:sys_enter_*`, `uprobe:/bin/x:read*`) are expanded with what the
environment knows; a body that depends on which probe fired (`args`, `probe`, `func`, USDT
arguments) gets one function per concrete probe, any other body one function for all of them.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang.diagnostics import Diagnostics
from kubectl_pytrace.lang.env import Environment, LookupFailed
from kubectl_pytrace.lang.probes import AttachPointError, ProbeSpec, glob_match, parse_attach_point

PROBE_SPECIFIC_BUILTINS = frozenset({"args", "probe", "func"})

Group = Tuple[ast.Probe, List[ProbeSpec], dict]


def _expand(spec: ProbeSpec, env: Environment) -> List[ProbeSpec]:
    """Concrete probes for one attach point; raises LookupFailed when nothing matches."""
    p = spec.provider
    if p == "tracepoint":
        found = env.tracepoints(spec.target, spec.func)
        if found is None:
            return [spec]
        if not found:
            what = "tracepoints match" if spec.is_wildcard else "such tracepoint:"
            raise LookupFailed(f"no {what} '{spec.target}:{spec.func}'")
        return [spec.with_match(target=c, func=n) for c, n in found]
    if p in ("uprobe", "uretprobe") and spec.address is None:
        syms = env.user_functions(spec.target, spec.func)
        if syms is None:
            return [spec]
        if not syms:
            what = "functions match" if spec.is_wildcard else "function named"
            raise LookupFailed(f"no {what} '{spec.func}' in {spec.target}")
        return [spec.with_match(func=s) for s in syms]
    if p in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
        if not spec.is_wildcard:
            return [spec]
        funcs = env.kernel_functions(spec.func)
        if funcs is None:
            return [spec]
        if not funcs:
            raise LookupFailed(f"no kernel functions match '{spec.func}'")
        return [spec.with_match(func=f) for f in funcs]
    if p == "usdt":
        probes = env.usdt_probes(spec.target)
        if probes is None:
            return [spec]
        out = [spec.with_match(ns=prov, func=name) for prov, name in probes
               if glob_match(spec.func, name) and (not spec.ns or glob_match(spec.ns, prov))]
        if not out:
            raise LookupFailed(f"no USDT probe '{(spec.ns + ':') if spec.ns else ''}{spec.func}' in "
                               f"{spec.target}")
        return out
    return [spec]


def _extra(spec: ProbeSpec, env: Environment, uses_args: bool) -> dict:
    """Per-function facts the type checker needs (tracepoint fields, kfunc arguments)."""
    if spec.provider == "tracepoint" and uses_args:
        fields = env.tracepoint_fields(spec.target, spec.func)
        return {"tp_fields": None if fields is None else {f.name: f for f in fields}}
    if spec.provider == "usdt":
        return {"usdt_args": env.usdt_args(spec.target, spec.ns, spec.func)}
    fentry = spec.provider in ("kfunc", "kretfunc") or (
        spec.provider in ("kprobe", "kretprobe") and env.kprobes_available is False)
    if fentry:  # arguments and the return value sit in an array whose layout BTF gives
        try:
            proto = env.kernel_function_args(spec.func)
        except LookupFailed:
            if spec.provider in ("kfunc", "kretfunc"):
                raise
            proto = None  # a kprobe: attaching says why it cannot (no kprobes, no fentry)
        if proto is not None:
            return {"kfunc_args": proto[0], "kfunc_ret": proto[1]}
    return {}


def expand(program: ast.Program, env: Environment, diags: Diagnostics) -> List[Group]:
    groups: List[Group] = []
    for probe in program.probes:
        uses = {n.name for n in probe.walk() if isinstance(n, ast.Builtin)}
        specific = bool(uses & PROBE_SPECIFIC_BUILTINS)
        shared: Dict[str, List[ProbeSpec]] = {}  # provider -> specs sharing one function
        order: List[object] = []
        for ap in probe.attach_points:
            try:
                spec = parse_attach_point(ap.raw)
                concrete = _expand(spec, env)
            except (AttachPointError, LookupFailed) as err:
                diags.error(f"{ap.raw}: {err}", ap.span)
                continue
            for c in concrete:
                # USDT argument readers and fentry targets are compiled into each function
                fentry = c.provider in ("kfunc", "kretfunc") or (
                    c.provider in ("kprobe", "kretprobe") and env.kprobes_available is False)
                if specific or c.provider == "usdt" or fentry:
                    order.append([c])
                elif c.provider in shared:
                    shared[c.provider].append(c)
                else:
                    shared[c.provider] = [c]
                    order.append(shared[c.provider])
        for specs in order:
            try:
                extra = _extra(specs[0], env, "args" in uses)  # type: ignore[index]
            except LookupFailed as err:
                diags.error(str(err), probe.attach_points[0].span)
                continue
            groups.append((probe, list(specs), extra))  # type: ignore[arg-type]
    begin = [g for g in groups if g[1][0].provider == "BEGIN"]
    end = [g for g in groups if g[1][0].provider == "END"]
    if len(begin) > 1 or len(end) > 1:
        which = "BEGIN" if len(begin) > 1 else "END"
        diags.error(f"more than one {which} probe", (begin if len(begin) > 1 else end)[1][0].span)
    return groups
