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
from typing import IO, TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from kubectl_pytrace.errors import TraceError
from kubectl_pytrace.host.env import HostEnvironment, pid_view, resolve_host_path
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import CodegenOptions, compile_program
from kubectl_pytrace.lang.program import CProgram
from kubectl_pytrace.lang.scope import ScopeFilter
from kubectl_pytrace.output.printer import Output, make_output
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
    # trace only these containers (docker://..., containerd://..., or bare IDs): the tracer pod
    # of a workload watches every replica on its node; events say which one they came from
    container_ids: List[str] = field(default_factory=list)
    pid: Optional[int] = None  # trace the container this process is in (or the process itself)
    ns_pids: bool = False  # print pid/tid as the container sees them
    # a node/ trace: the node's processes. Where the tracer's pid namespace is not the machine's
    # (the node is a container: kind), that is the tasks this namespace sees, not the whole kernel.
    node: bool = False
    unsafe: bool = False  # --unsafe: allow system(), signal(), override()
    verbose: bool = False  # say which way the probes were attached, and how long that and detaching took


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
class Targets:
    """The containers (or the one host process of --pid) a trace is scoped to: what the compiler
    and the engine need to scope every probe to them."""

    watchers: List["containers.FilterWatcher"]  # each container and its current filter values
    scope: ScopeFilter  # the compiler's side: which predicate to emit, for how many targets

    @property
    def first(self) -> "containers.Container":
        return self.watchers[0].container

    def resolve_path(self, path: str) -> str:
        """A probe's binary in the first target (what the compiler looks symbols up in)."""
        return _resolve_in(self.first, path)

    def resolve_paths(self, path: str) -> List[str]:
        """The binary in every target, once per distinct file: containers of one image share
        the file, and a uprobe attached twice to one file would fire twice."""
        from kubectl_pytrace.errors import LookupFailed

        found: Dict[Tuple[int, int, int], str] = {}
        missing = None
        for w in self.watchers:
            try:
                host = _resolve_in(w.container, path)
            except LookupFailed as e:
                missing = missing or e
                continue
            st = os.stat(host)
            # overlayfs reports the underlying file's inode number: one key per real file
            found.setdefault((st.st_ino, st.st_size, st.st_mtime_ns), host)
        if not found:
            raise missing  # type: ignore[misc]
        return list(found.values())


def _resolve_in(c: "containers.Container", path: str) -> str:
    from kubectl_pytrace.containers import fs

    if c.id is None:  # a host process: paths are the host's
        return resolve_host_path(path)
    return fs.resolve_binary(c, path)


def resolve_targets(spec: TraceSpec, env: HostEnvironment) -> Optional[Targets]:
    if not spec.container_ids and spec.pid is None:
        return None
    from kubectl_pytrace.containers import resolve as containers

    if spec.container_ids:
        found = [containers.resolve_container(cid) for cid in spec.container_ids]
    else:
        found = [containers.resolve_pid(spec.pid)]  # type: ignore[arg-type]
    kinds = ("cgroup", "pidns", "mntns") if env.has_btf() else ("cgroup", "pidns")
    filters = _filters(found, kinds)
    kind = filters[0].kind
    offsets = None
    if kind == "mntns":
        offsets = tuple(env.struct_field(s, m).offset for s, m in (  # type: ignore[union-attr]
            ("struct task_struct", "nsproxy"), ("struct nsproxy", "mnt_ns"), ("struct mnt_namespace", "ns.inum")))
    return Targets([containers.FilterWatcher(c, f) for c, f in zip(found, filters)],
                   ScopeFilter(kind, offsets, len(found)))  # type: ignore[arg-type]


def _filters(found: List["containers.Container"], kinds: Tuple[str, ...]) -> List["containers.TaskFilter"]:
    """One filter per target, all of one kind (a program has one predicate): the first kind, in
    order of preference, that isolates every one of them."""
    from kubectl_pytrace.containers import resolve as containers

    for kind in kinds:
        try:
            return [containers.choose_filter(c, (kind,)) for c in found]
        except containers.NoUsableFilter:
            continue
    for c in found:
        containers.choose_filter(c, kinds)  # raises, saying why for this container
    raise containers.NoUsableFilter("the containers need filters of different kinds (" + ", ".join(
        f"{c.describe()}: {containers.choose_filter(c, kinds).kind}" for c in found) + ")")


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


def _prepare(spec: TraceSpec, stderr: IO, use_cache: bool = True) -> Tuple[CProgram, str, Optional[Targets], HostEnvironment]:
    env = HostEnvironment()
    if os.geteuid() == 0:  # loading a program asks the kernel (else: unknown, assumed)
        from kubectl_pytrace.bpf.links import has_attach_cookie

        env.attach_cookies = has_attach_cookie()
    targets = resolve_targets(spec, env)
    predefined: Dict[str, int] = {}
    if targets is not None:
        env.resolve_path = targets.resolve_path
        predefined["$container_pid"] = targets.first.pid
        for w in targets.watchers:
            print(f"kubectl-pytrace: tracing {w.container.describe()}: {w.current.reason}", file=stderr)
    view = pid_view()
    scope = targets.scope if targets else None
    if scope is None and spec.node and view is not None:
        scope = ScopeFilter("pidtree", pid_view=view)
        print("kubectl-pytrace: tracing the processes of this node's PID namespace (the node is a container)",
              file=stderr)
    options = CodegenOptions(scope=scope, ns_pids=spec.ns_pids, unsafe=spec.unsafe, pid_view=view,
                             kprobe_mode="kprobe" if env.kprobes_available else "fentry",
                             ringbuf_pages=ringbuf_pages())
    program, warnings = _compile(spec, env, options, predefined, use_cache)
    return program, warnings, targets, env


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


def run(spec: TraceSpec, stdout: IO = sys.stdout, stderr: IO = sys.stderr,
        output: Optional[Output] = None, announce: Optional[Callable[[int], None]] = None) -> RunResult:
    """Runs one trace to its end; raises errors.UserError for anything the user can act on.
    `output`: where results go (default: spec.output's text or JSON printer on stdout);
    `announce(n)`: told how many probes are attached (default: "Attached n probes" on stderr)."""
    _check_privileges()
    program, warnings, targets, env = _prepare(spec, stderr)
    if warnings:
        print(warnings, file=stderr)
    found = setup_headers(stderr)
    json = output is not None or spec.output == "json"  # a given output takes every event apart
    out = output or make_output(spec.output, stdout, autoflush=False)
    engine = Engine(program, out, targets.resolve_paths if targets else _host_paths, stderr=stderr, json=json,
                    headers=f"{found.path}:{found.release}", watchers=targets.watchers if targets else (),
                    announce=announce, verbose=spec.verbose)
    result = engine.run(spec.deadline, spec.command)
    if engine.events is not None:
        result.exit_code = engine.events.exit_code  # exit(code), assert()
    return result


def _host_paths(path: str) -> List[str]:
    return [resolve_host_path(path)]
