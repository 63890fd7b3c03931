"""A trace on this host, from program text to the last map: what `run --local` runs, and what the
tracer pod runs on a node (with the target's container IDs).

    spec = TraceSpec(text="tracepoint:... { ... }", container_id="3f2a...", deadline=30)
    run(spec)              # raises errors.UserError (CompileError, TraceError, ...) on failure
    dump(spec, "c")        # the parsed tree ("ast") or the generated C ("c"), for --dump

Steps: check privileges and tracefs -> resolve the target container (if any) and choose its
in-kernel filter -> compile for this host (or find the compiled program in the cache) -> the engine.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Dict, List, Optional, Tuple

from kubectl_pytrace.errors import TraceError
from kubectl_pytrace.host.env import HostEnvironment, resolve_host_path
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import CodegenOptions, compile_program
from kubectl_pytrace.lang.program import CProgram
from kubectl_pytrace.lang.scope import ScopeFilter
from kubectl_pytrace.output.printer import make_output
from kubectl_pytrace.tracer import progcache
from kubectl_pytrace.tracer.engine import Engine, RunResult, setup_headers

if TYPE_CHECKING:  # not imported at start-up
    from kubectl_pytrace.containers import resolve as containers


@dataclass
class TraceSpec:
    text: str
    filename: str = "stdin"
    output: str = "text"  # text | json
    deadline: Optional[float] = None
    command: Optional[List[str]] = None
    params: List[str] = field(default_factory=list)
    container_id: Optional[str] = None  # trace one container (docker://..., containerd://..., or bare)
    pid: Optional[int] = None  # trace the container this process is in (or the process itself)
    ns_pids: bool = False  # print pid/tid as the container sees them
    unsafe: bool = False  # --unsafe: allow system(), signal(), override()


def ringbuf_pages() -> int:
    """Ring buffer size in 4 KiB pages: PYTRACE_RINGBUF_PAGES (a power of two), default 4096 (16 MiB)."""
    text = os.environ.get("PYTRACE_RINGBUF_PAGES", "")
    if not text:
        return CodegenOptions.ringbuf_pages
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0 or n & (n - 1):
        raise TraceError(f"PYTRACE_RINGBUF_PAGES={text}: must be a power of two (pages of 4 KiB)")
    return n


@dataclass
class Target:
    """A resolved --container-id/--pid: what the compiler and the engine need to scope the trace."""

    watcher: "containers.FilterWatcher"  # the container and its current filter values
    scope: ScopeFilter  # the compiler's side: which predicate to emit

    @property
    def container(self) -> "containers.Container":
        return self.watcher.container

    def resolve_path(self, path: str) -> str:
        from kubectl_pytrace.containers import fs

        if self.container.id is None:  # a host process: paths are the host's
            return resolve_host_path(path)
        return fs.resolve_binary(self.container, path)


def resolve_target(spec: TraceSpec, env: HostEnvironment) -> Optional[Target]:
    if spec.container_id is None and spec.pid is None:
        return None
    from kubectl_pytrace.containers import resolve as containers

    if spec.container_id is not None:
        c = containers.resolve_container(spec.container_id)
    else:
        c = containers.resolve_pid(spec.pid)  # type: ignore[arg-type]
    kinds = ("cgroup", "pidns", "mntns") if env.has_btf() else ("cgroup", "pidns")
    f = containers.choose_filter(c, kinds)
    offsets = None
    if f.kind == "mntns":
        offsets = tuple(env.struct_field(s, m).offset for s, m in (  # type: ignore[union-attr]
            ("struct task_struct", "nsproxy"), ("struct nsproxy", "mnt_ns"), ("struct mnt_namespace", "ns.inum")))
    return Target(containers.FilterWatcher(c, f), ScopeFilter(f.kind, offsets))  # type: ignore[arg-type]


def _check_privileges() -> None:
    if os.geteuid() != 0:
        raise TraceError("tracing needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)", hint="run it with sudo")
    tracefs.ensure_tracefs()


def _compile(spec: TraceSpec, env: HostEnvironment, options: CodegenOptions,
             predefined: Dict[str, int], use_cache: bool = True) -> Tuple[CProgram, str]:
    """The compiled program and its warnings, from the cache when this host compiled it before."""
    args = (spec.text, spec.filename, options, spec.params, bool(spec.command), predefined)
    key = progcache.key(*args)
    cached = progcache.load(key) if use_cache else None
    if cached is not None:
        return cached
    compiled = compile_program(spec.text, spec.filename, env, options, spec.params,
                               has_cpid=bool(spec.command), predefined=predefined)
    if use_cache:
        progcache.store(key, compiled.c, compiled.warnings, env.deps)
    return compiled.c, compiled.warnings


def _prepare(spec: TraceSpec, stderr: IO, use_cache: bool = True) -> Tuple[CProgram, str, Optional[Target], HostEnvironment]:
    env = HostEnvironment()
    target = resolve_target(spec, env)
    predefined: Dict[str, int] = {}
    if target is not None:
        env.resolve_path = target.resolve_path
        predefined["$container_pid"] = target.container.pid
        print(f"kubectl-pytrace: tracing {target.container.describe()}: {target.watcher.current.reason}",
              file=stderr)
    options = CodegenOptions(scope=target.scope if target else None, ns_pids=spec.ns_pids, unsafe=spec.unsafe,
                             kprobe_mode="kprobe" if env.kprobes_available else "fentry",
                             ringbuf_pages=ringbuf_pages())
    program, warnings = _compile(spec, env, options, predefined, use_cache)
    return program, warnings, target, env


def dump(spec: TraceSpec, what: str, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> None:
    """--dump ast (parsing only: no root, no host facts) or --dump c (compiled for this host)."""
    if what == "ast":
        from kubectl_pytrace.lang import ast, parse

        print(ast.dump(parse(spec.text, spec.filename)), file=stdout)
        return
    if os.geteuid() == 0:
        tracefs.ensure_tracefs()
    program, warnings, _, _ = _prepare(spec, stderr, use_cache=False)
    if warnings:
        print(warnings, file=stderr)
    print(program.text, file=stdout)


def run(spec: TraceSpec, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> RunResult:
    """Runs one trace to its end; raises errors.UserError for anything the user can act on."""
    _check_privileges()
    program, warnings, target, env = _prepare(spec, stderr)
    if warnings:
        print(warnings, file=stderr)
    found = setup_headers(stderr)
    out = make_output(spec.output, stdout, autoflush=False)
    engine = Engine(program, out, env.resolve_path, stderr=stderr, json=spec.output == "json",
                    headers=f"{found.path}:{found.release}", watcher=target.watcher if target else None)
    result = engine.run(spec.deadline, spec.command)
    if engine.events is not None:
        result.exit_code = engine.events.exit_code  # exit(code), assert()
    return result
