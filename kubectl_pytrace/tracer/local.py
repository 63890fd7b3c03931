"""`run --local`: compile a program for this host and trace with it (the same engine as the tracer pod)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import IO, List, Optional

from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import CodegenOptions, CompileError, compile_program
from kubectl_pytrace.lang.env import LookupFailed
from kubectl_pytrace.lang.scope import ScopeFilter
from kubectl_pytrace.tracer import progcache
from kubectl_pytrace.tracer.engine import Engine, TraceError, setup_headers
from kubectl_pytrace.tracer.hostenv import HostEnvironment, resolve_host_path
from kubectl_pytrace.tracer.output import make_output


@dataclass
class LocalTrace:
    text: str
    filename: str = "stdin"
    output: str = "text"  # text | json
    deadline: Optional[float] = None
    command: Optional[List[str]] = None
    dump: Optional[str] = None  # ast | c
    params: List[str] = field(default_factory=list)
    container_id: Optional[str] = None  # trace one container (docker://..., containerd://..., or bare)
    pid: Optional[int] = None  # trace the container this process is in (or the process itself)
    ns_pids: bool = False  # print pid/tid as the container sees them


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

    container: "containers.Container"
    filter: "containers.TaskFilter"
    scope: ScopeFilter

    def resolve_path(self, path: str) -> str:
        from kubectl_pytrace.tracer import containerfs

        if self.container.id is None:  # a host process: paths are the host's
            return resolve_host_path(path)
        return containerfs.resolve_binary(self.container, path)


def _watcher(target: Target):
    from kubectl_pytrace.tracer import containers

    return containers.FilterWatcher(target.container, target.filter)


def resolve_target(t: LocalTrace, env: HostEnvironment) -> Optional[Target]:
    if t.container_id is None and t.pid is None:
        return None
    from kubectl_pytrace.tracer import containers

    if t.container_id is not None:
        c = containers.resolve_container(t.container_id)
    else:
        c = containers.resolve_pid(t.pid)  # type: ignore[arg-type]
    kinds = ("cgroup", "pidns", "mntns") if env.has_btf() else ("cgroup", "pidns")
    f = containers.choose_filter(c, kinds)
    offsets = None
    if f.kind == "mntns":
        offsets = (env.struct_field("struct task_struct", "nsproxy").offset,  # type: ignore[union-attr]
                   env.struct_field("struct nsproxy", "mnt_ns").offset,  # type: ignore[union-attr]
                   env.struct_field("struct mnt_namespace", "ns.inum").offset)  # type: ignore[union-attr]
    return Target(c, f, ScopeFilter(f.kind, offsets))


def run(t: LocalTrace, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> int:
    """Runs one trace; returns the exit status. Errors are printed, never raised."""
    env = HostEnvironment()
    try:
        if t.dump is None and os.geteuid() != 0:
            raise TraceError("tracing needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): run it with sudo")
        if t.dump != "ast" and os.geteuid() == 0:
            tracefs.ensure_tracefs()
        if t.dump == "ast":
            from kubectl_pytrace.lang import ast, parse

            print(ast.dump(parse(t.text, t.filename)), file=stdout)
            return 0
        target = resolve_target(t, env)
        predefined = {}
        if target is not None:
            env.resolve_path = target.resolve_path
            predefined["$container_pid"] = target.container.pid
            print(f"kubectl-pytrace: tracing {target.container.describe()}: {target.filter.reason}",
                  file=stderr)
        kprobe_mode = "kprobe" if env.kprobes_available else "fentry"
        options = CodegenOptions(scope=target.scope if target else None, ns_pids=t.ns_pids,
                                 kprobe_mode=kprobe_mode, ringbuf_pages=ringbuf_pages())
        args = (t.text, t.filename, options, t.params, bool(t.command), predefined)
        cached = progcache.load(progcache.key(*args)) if t.dump is None else None
        if cached is not None:
            program, warnings = cached
        else:
            compiled = compile_program(t.text, t.filename, env, options, t.params, has_cpid=bool(t.command),
                                       predefined=predefined)
            program, warnings = compiled.c, compiled.warnings
            if t.dump == "c":
                print(program.text, file=stdout)
                return 0
            progcache.store(progcache.key(*args), program, warnings, env.deps)
        if warnings:
            print(warnings, file=stderr)
        found = setup_headers(stderr)
        out = make_output(t.output, stdout, autoflush=False)
        engine = Engine(program, out, env.resolve_path, stderr=stderr, json=t.output == "json",
                        headers=f"{found.path}:{found.release}",
                        scope=(target.filter, _watcher(target)) if target else None)
        engine.run(t.deadline, t.command)
        return 0
    except CompileError as e:
        print(str(e), file=stderr)
        return 1
    except (TraceError, LookupFailed, tracefs.TracefsError) as e:
        print(f"error: {e}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=stderr)
        return 130
