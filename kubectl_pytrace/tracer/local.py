"""`run --local`: compile a program for this host and trace with it (the same engine as the tracer pod)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import IO, List, Optional

from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import CodegenOptions, CompileError, ast, compile_program
from kubectl_pytrace.lang.codegen import TaskFilter
from kubectl_pytrace.lang.env import LookupFailed
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
    task_filter: Optional[TaskFilter] = None
    ns_pids: bool = False
    resolve_path: object = None  # path resolver (a container's root), default: this host


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


def run(t: LocalTrace, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> int:
    """Runs one trace; returns the exit status. Errors are printed, never raised."""
    resolve = t.resolve_path or resolve_host_path
    env = HostEnvironment(resolve_path=resolve)  # type: ignore[arg-type]
    try:
        if t.dump is None and os.geteuid() != 0:
            raise TraceError("tracing needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): run it with sudo")
        if t.dump != "ast" and os.geteuid() == 0:
            tracefs.ensure_tracefs()
        if t.dump == "ast":
            from kubectl_pytrace.lang.parser import parse

            print(ast.dump(parse(t.text, t.filename)), file=stdout)
            return 0
        kprobe_mode = "kprobe" if env.kprobes_available else "fentry"
        options = CodegenOptions(task_filter=t.task_filter, ns_pids=t.ns_pids, kprobe_mode=kprobe_mode,
                                 ringbuf_pages=ringbuf_pages())
        compiled = compile_program(t.text, t.filename, env, options, t.params, has_cpid=bool(t.command))
        if compiled.warnings:
            print(compiled.warnings, file=stderr)
        if t.dump == "c":
            print(compiled.c.text, file=stdout)
            return 0
        found = setup_headers(stderr)
        out = make_output(t.output, stdout, autoflush=False)
        engine = Engine(compiled, out, resolve, stderr=stderr, json=t.output == "json",  # type: ignore[arg-type]
                        headers=f"{found.path}:{found.release}")
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
