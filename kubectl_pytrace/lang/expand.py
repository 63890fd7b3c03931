"""Probe expansion: attach points -> concrete probes -> groups that share one generated function.

Wildcards (`tracepoint:syscalls:sys_enter_*`, `uprobe:/bin/x:read*`) are expanded with what the
environment knows; a body that depends on which probe fired (`args`, `probe`, `func`, USDT
arguments) gets one function per concrete probe, any other body one function for all of them.
A uprobe or kprobe body that names only `probe` or `func` is one function too where the kernel
gives each attachment a cookie (the probe's id: the function reads which match fired from it; a
kernel function's `func` is its address, bpf_get_func_ip()).

As bpftrace 0.17, a uprobe whose function is not in the binary and a kprobe wildcard that matches
nothing are skipped, not errors (bpftrace's tools list functions some versions of a library or of
the kernel do not have: `uprobe:libcrypto:rsa_ossl_public_encrypt, ...`); each is a warning. A
probe left without any attach point is still type-checked (its maps are printed at exit, as
bpftrace prints them) but not generated. Only a program with nothing at all to attach is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang.diagnostics import Diagnostics
from kubectl_pytrace.lang.env import GO_REGABI, GO_STACKABI, Environment, LookupFailed, TracepointField
from kubectl_pytrace.lang.probes import AttachPointError, ProbeSpec, glob_match, parse_attach_point
from kubectl_pytrace.lang.types import Type
from kubectl_pytrace.lang.usdt import UsdtArg

PROBE_SPECIFIC_BUILTINS = frozenset({"args", "probe", "func"})
# `probe` from bpf_get_attach_cookie(), `func` too for uprobes (a kernel function's is its address)
COOKIE_PROVIDERS = frozenset({"uprobe", "uretprobe", "kprobe", "kretprobe"})



@dataclass
class ProbeGroup:
    """Concrete probes that share one generated function, with what the type checker needs to
    know about them (tracepoint fields, fentry argument types, USDT argument types)."""

    probe: ast.Probe
    specs: List[ProbeSpec]
    tp_fields: Optional[Dict[str, TracepointField]] = None
    kfunc_args: Optional[List[Tuple[str, Type]]] = None
    kfunc_ret: Optional[Type] = None
    usdt_args: Optional[List[UsdtArg]] = None
    convention: Optional[str] = None  # uprobes: how the binary's functions take arguments (env.py)
    attach: bool = True  # False: none of the probe's attach points exist (checked, not generated)
    cookie: bool = False  # `probe` and `func` come from the attachment's cookie (several specs)
    iter_ctx: Optional[List[Tuple[str, Type]]] = None  # iter:NAME: the members ctx points to


def kprobe_mode(env: Environment) -> str:
    """How kprobe:/kretprobe: compile on this environment's kernel (probes.ProbeSpec.is_fentry)."""
    return "fentry" if env.kprobes_available is False else "kprobe"


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
        # a quoted name is looked up as itself: its '*' and '?' escaped for the pattern match
        pattern = re.sub(r"([*?\[])", r"[\1]", spec.func) if spec.literal else spec.func
        syms = env.user_functions(spec.target, pattern)
        if syms is None:
            return [spec]
        if not syms:
            what = "functions match" if spec.is_wildcard else "function named"
            where = None if spec.is_wildcard else env.user_function_elsewhere(spec.target, spec.func)
            also = f" ({where}, which it loads, defines it)" if where else ""
            raise _Skipped(f"no {what} '{spec.func}' in {spec.target}{also}")
        matches = [spec.with_match(func=s) for s in syms]
        if p != "uretprobe":
            return matches
        sites = [site for m in matches for site in _go_returns(m, env, wildcard=spec.is_wildcard)]
        if not sites:  # (a single function says why itself)
            raise _Skipped(f"none of the functions matching '{spec.func}' in {spec.target} has a RET instruction")
        return sites
    if p in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
        return _wildcard(spec, env.kernel_functions, "kernel functions")
    if p == "rawtracepoint":
        return _wildcard(spec, env.raw_tracepoints, "tracepoints")
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


def _go_returns(spec: ProbeSpec, env: Environment, wildcard: bool = False) -> List[ProbeSpec]:
    """A uretprobe on a Go function: a uprobe on each of its RET instructions, where the result is
    in RAX (`retval`), RBX, ... as the arguments were. The kernel's uretprobe replaces the return
    address on the stack, which breaks when Go moves the goroutine's stack (and its tracebacks).
    A wildcard's match without a RET (a function that never returns) is left out."""
    convention = _convention(spec, env)
    if convention not in (GO_REGABI, GO_STACKABI):
        return [spec]
    if convention == GO_STACKABI:
        raise LookupFailed(
            f"uretprobes are not supported on functions of Go's stack ABI (Go before "
            f"1.17, or NAME.abi0): their results are on the stack, where `retval` cannot find them; "
            f"attach uprobes to the RET instructions and read the stack with sargN "
            f"(uprobe:{spec.target}:0xADDRESS, from `objdump -d --no-show-raw-insn {spec.target}`)")
    sites = env.return_sites(spec.target, spec.func)
    if sites is None:
        return [spec]  # the binary is not at hand: the node decides
    if not sites and not wildcard:
        raise LookupFailed(f"{spec.func} has no RET instruction (it ends in a jump "
                           f"to another function, or never returns): nothing to attach")
    return [spec.with_match(ret_site=site) for site in sites]


def _wildcard(spec: ProbeSpec, names_matching, what: str) -> List[ProbeSpec]:
    """One probe per name matching a wildcard attach point (kernel functions, tracepoints)."""
    if not spec.is_wildcard:
        return [spec]
    names = names_matching(spec.func)
    if names is None:
        return [spec]
    if not names:
        raise _Skipped(f"no {what} match '{spec.func}'")
    return [spec.with_match(func=n) for n in names]


def _convention(spec: ProbeSpec, env: Environment) -> Optional[str]:
    """How a uprobe's function takes its arguments: the binary's convention, except for a Go
    function with the ABI0 suffix (assembly, or a wrapper): on the stack in every Go version."""
    convention = env.calling_convention(spec.target)
    if convention == GO_REGABI and spec.func.endswith(".abi0"):
        return GO_STACKABI
    return convention


def _sharing_key(spec: ProbeSpec, env: Environment) -> Tuple[str, Optional[str]]:
    """Attach points of one provider share a function, unless they read arguments differently (a
    Go binary's uprobes and a C binary's)."""
    if spec.provider in ("uprobe", "uretprobe"):
        try:
            return spec.provider, _convention(spec, env)
        except LookupFailed:
            return spec.provider, None  # _group says why
    return spec.provider, None


def _group(probe: ast.Probe, specs: List[ProbeSpec], env: Environment, uses_args: bool) -> ProbeGroup:
    """A group with the per-function facts the type checker needs."""
    g = ProbeGroup(probe, specs)
    spec = specs[0]
    if spec.provider == "tracepoint" and uses_args:
        fields = env.tracepoint_fields(spec.target, spec.func)
        g.tp_fields = None if fields is None else {f.name: f for f in fields}
    elif spec.provider == "usdt":
        g.usdt_args = env.usdt_args(spec.target, spec.ns, spec.func)
    elif spec.provider in ("uprobe", "uretprobe"):
        g.convention = _convention(spec, env)
        if spec.kernel_return and g.convention in (GO_REGABI, GO_STACKABI):  # uretprobe:GO:0xADDR
            raise LookupFailed(
                f"{spec.name()}: uretprobes on an address of a Go binary are refused: the return "
                f"address they plant breaks when the goroutine's stack moves (and Go's tracebacks); "
                f"name the function (uretprobe:{spec.target}:FUNCTION attaches to its RET "
                f"instructions), or attach a uprobe to a RET instruction's address")
    elif spec.provider == "rawtracepoint":  # arguments in a u64 array, named and typed by BTF
        try:
            g.kfunc_args = env.raw_tracepoint_args(spec.func)
        except LookupFailed:
            if not spec.target or spec.target == "vmlinux":
                raise
            g.kfunc_args = None  # a module's tracepoint: argN only
    elif spec.provider == "iter":
        g.iter_ctx = env.iter_context(spec.func)  # raises when the kernel has no such iterator
    elif spec.is_fentry(kprobe_mode(env)):  # arguments and the return value sit in an array
        try:                                # whose layout BTF gives
            proto = env.kernel_function_args(spec.func)
        except LookupFailed:
            if spec.provider in ("kfunc", "kretfunc"):
                raise
            proto = None  # a kprobe: attaching says why it cannot (no kprobes, no fentry)
        if proto is not None:
            g.kfunc_args, g.kfunc_ret = proto
    return g


def _by_cookie(spec: ProbeSpec, uses: set, env: Environment) -> bool:
    """Whether a body that names `probe` or `func` (not `args`, whose type depends on the match)
    can serve several matches, telling them apart by the attachment's cookie."""
    return spec.provider in COOKIE_PROVIDERS and "args" not in uses and env.attach_cookies is not False


class _Skipped(LookupFailed):
    """Nothing matched an attach point that bpftrace 0.17 then silently leaves out."""


def expand(program: ast.Program, env: Environment, diags: Diagnostics,
           missing_probes: Optional[str] = None, params: Sequence[str] = ()) -> List[ProbeGroup]:
    """missing_probes: the config's (error, warn, ignore), or None for bpftrace 0.17's rules;
    params: the positional parameters, which attach points may use ($1)."""
    groups: List[ProbeGroup] = []
    skipped: List[Tuple[str, object]] = []  # (message, span) of attach points left out
    for probe in program.probes:
        uses = {n.name for n in probe.walk() if isinstance(n, ast.Builtin)}
        specific = bool(uses & PROBE_SPECIFIC_BUILTINS)
        shared: Dict[Tuple[str, Optional[str]], List[ProbeSpec]] = {}  # _sharing_key -> specs of one function
        order: List[object] = []
        first_skipped: Optional[ProbeSpec] = None
        for ap in probe.attach_points:
            try:
                spec = parse_attach_point(ap.raw, params)
                concrete = _expand(spec, env)
            except _Skipped as err:
                if missing_probes == "error":
                    diags.error(f"{ap.raw}: {err}", ap.span)
                    continue
                skipped.append((f"{ap.raw}: {err}", ap.span))
                first_skipped = first_skipped or spec
                continue
            except AttachPointError as err:
                diags.error(f"{ap.raw}: {err}", ap.span)
                continue
            except LookupFailed as err:
                if missing_probes in ("warn", "ignore"):
                    skipped.append((f"{ap.raw}: {err}", ap.span))
                    first_skipped = first_skipped or spec
                    continue
                diags.error(f"{ap.raw}: {err}", ap.span)
                continue
            for c in concrete:
                # USDT argument readers and fentry targets are compiled into each function
                alone = specific and not _by_cookie(c, uses, env)
                if alone or c.provider == "usdt" or c.is_fentry(kprobe_mode(env)):
                    order.append([c])
                    continue
                key = _sharing_key(c, env)
                if key in shared:
                    shared[key].append(c)
                else:
                    shared[key] = [c]
                    order.append(shared[key])
        for specs in order:
            try:
                groups.append(_group(probe, list(specs), env, "args" in uses))  # type: ignore[arg-type]
                groups[-1].cookie = specific and len(specs) > 1
            except LookupFailed as err:
                diags.error(str(err), probe.attach_points[0].span)
        if not order and first_skipped is not None:
            # nothing of this probe attaches: typed all the same (its maps exist), never generated
            groups.append(ProbeGroup(probe, [first_skipped], attach=False))
    if skipped and not diags.has_errors():
        if any(g.attach for g in groups):
            how = "skipped (missing_probes = warn)" if missing_probes == "warn" else "skipped, as bpftrace 0.17 does"
            for message, span in skipped:
                if missing_probes != "ignore":
                    diags.warning(f"{message}: {how}", span)  # type: ignore[arg-type]
        else:
            for message, span in skipped:  # nothing at all to attach: each is why
                diags.error(message, span)  # type: ignore[arg-type]
    return groups
