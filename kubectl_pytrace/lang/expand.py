"""Probe expansion: attach points -> concrete probes -> groups that share one generated function.

Wildcards (`tracepoint:syscalls:sys_enter_*`, `uprobe:/bin/x:read*`) are expanded with what the
environment knows; a body that depends on which probe fired (`args`, `probe`, `func`, USDT
arguments) gets one function per concrete probe, any other body one function for all of them.

As bpftrace 0.17, a uprobe whose function is not in the binary and a kprobe wildcard that matches
nothing are skipped, not errors (bpftrace's tools list functions some versions of a library or of
the kernel do not have: `uprobe:libcrypto:rsa_ossl_public_encrypt, ...`); each is a warning. A
probe left without any attach point is still type-checked (its maps are printed at exit, as
bpftrace prints them) but not generated. Only a program with nothing at all to attach is an error.
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
            where = None if spec.is_wildcard else env.user_function_elsewhere(spec.target, spec.func)
            also = f" ({where}, which it loads, defines it)" if where else ""
            raise _Skipped(f"no {what} '{spec.func}' in {spec.target}{also}")
        return [spec.with_match(func=s) for s in syms]
    if p in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
        if not spec.is_wildcard:
            return [spec]
        funcs = env.kernel_functions(spec.func)
        if funcs is None:
            return [spec]
        if not funcs:
            raise _Skipped(f"no kernel functions match '{spec.func}'")
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


class _Skipped(LookupFailed):
    """Nothing matched an attach point that bpftrace 0.17 then silently leaves out."""


def expand(program: ast.Program, env: Environment, diags: Diagnostics) -> List[Group]:
    groups: List[Group] = []
    skipped: List[Tuple[str, object]] = []  # (message, span) of attach points left out
    for probe in program.probes:
        uses = {n.name for n in probe.walk() if isinstance(n, ast.Builtin)}
        specific = bool(uses & PROBE_SPECIFIC_BUILTINS)
        shared: Dict[str, List[ProbeSpec]] = {}  # provider -> specs sharing one function
        order: List[object] = []
        first_skipped: Optional[ProbeSpec] = None
        for ap in probe.attach_points:
            try:
                spec = parse_attach_point(ap.raw)
                concrete = _expand(spec, env)
            except _Skipped as err:
                skipped.append((f"{ap.raw}: {err}", ap.span))
                first_skipped = first_skipped or spec
                continue
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
        if not order and first_skipped is not None:
            # nothing of this probe attaches: typed all the same (its maps exist), never generated
            groups.append((probe, [first_skipped], {"attach": False}))
    if skipped and not diags.has_errors():
        if any(g[2].get("attach", True) for g in groups):
            for message, span in skipped:
                diags.warning(f"{message}: skipped, as bpftrace 0.17 does", span)  # type: ignore[arg-type]
        else:
            for message, span in skipped:  # nothing at all to attach: each is why
                diags.error(message, span)  # type: ignore[arg-type]
    begin = [g for g in groups if g[1][0].provider == "BEGIN"]
    end = [g for g in groups if g[1][0].provider == "END"]
    if len(begin) > 1 or len(end) > 1:
        which = "BEGIN" if len(begin) > 1 else "END"
        diags.error(f"more than one {which} probe", (begin if len(begin) > 1 else end)[1][0].span)
    return groups
