"""The tracer pod: what the Job of `kubectl pytrace run` runs on a node.

    kubectl-pytrace tracer --config /etc/kubectl-pytrace --node $NODE_NAME

The config (the trace's ConfigMap, written by the plugin: traceconfig.py) holds the program, its
parameters and, per node, the containers to trace there (their IDs from the pods' status). The
tracer resolves them on this node (host /proc at $HOST_PROC), compiles the program for this
kernel, scopes every probe to those containers and writes its output as records on stdout
(output/wire.py), which the plugin reads through the pod's logs. Every failure ends the stream
with an {"exit": code, "error": ...} record and the same exit status.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, Dict, List

from kubectl_pytrace import __version__, files, traceconfig
from kubectl_pytrace.errors import TraceError, UserError
from kubectl_pytrace.output.wire import PROTOCOL, WireOutput, WireStderr


def load_config(directory: str) -> Dict[str, Any]:
    try:
        return traceconfig.read(directory)
    except (OSError, ValueError) as e:
        raise TraceError(f"cannot read the trace's configuration in {directory}: {e}") from None


def check_version(cfg: Dict[str, Any]) -> None:
    client = cfg.get("client_version")
    if client != __version__:
        raise TraceError(f"version mismatch: kubectl-pytrace {client} created this trace, but the tracer "
                         f"image runs kubectl-pytrace {__version__}",
                         hint="use the tracer image of the same version (--image), or the client that "
                              "matches the image")


def node_targets(cfg: Dict[str, Any], node: str) -> List[Dict[str, str]]:
    nodes = cfg.get("nodes", {})
    if node not in nodes:
        raise TraceError(f"this trace has nothing to trace on node {node} (it targets "
                         f"{', '.join(sorted(nodes)) or 'no node'})")
    return nodes[node]


def run(config_dir: str, node: str, stdout: IO = sys.stdout) -> int:
    out = WireOutput(stdout)
    err = WireStderr(out)
    code, failure = 0, None
    try:
        cfg = load_config(config_dir)
        targets = node_targets(cfg, node)
        out.record({"hello": {"version": __version__, "protocol": PROTOCOL, "node": node, "pid": os.getpid(),
                              "targets": targets, "started": files.process_start()}, "t": time.time()})
        out.flush()
        check_version(cfg)
        command = cfg.get("command", "trace")
        if command == "trace":
            code = _trace(cfg, targets, out, err)
        elif command == "ps":
            _ps(out)
        else:  # firewall, shape: kubectl_pytrace/guard (which refuses a command it does not know)
            _guard(cfg, targets, out, config_dir)
    except UserError as e:
        code = e.exit_code
        failure = {"error": e.message, "hint": e.hint, "kind": type(e).__name__}
    err.flush()
    out.record({"exit": code, **(failure or {"error": None, "hint": None}), "t": time.time(), "memory": _memory()})
    out.flush()
    return code


def _trace(cfg: Dict[str, Any], targets: List[Dict[str, str]], out: WireOutput, err: WireStderr) -> int:
    """Runs the trace; its exit status (the program's exit(code), 0 without one)."""
    from kubectl_pytrace.tracer import session

    spec = session.TraceSpec(
        text=cfg["program"], filename=cfg.get("filename", "stdin"), deadline=cfg.get("deadline"),
        params=list(cfg.get("params", [])), container_ids=[t["container_id"] for t in targets],
        ns_pids=bool(cfg.get("ns_pids")), unsafe=bool(cfg.get("unsafe")), node=not targets)
    out.record({"status": "compiling", "t": time.time()})
    out.flush()

    def attached(n: int) -> None:
        out.record({"attached": n, "t": time.time()})
        out.flush()

    return session.run(spec, stderr=err, output=out, announce=attached).exit_code


def _ps(out: WireOutput) -> None:
    """The BPF programs loaded on this node (tracer/ps.py)."""
    from kubectl_pytrace.kernel import procfs
    from kubectl_pytrace.tracer import ps

    out.record({"ps": [p.to_json() for p in ps.snapshot(procfs.default_proc_root())]})


def _guard(cfg: Dict[str, Any], targets: List[Dict[str, str]], out: WireOutput, config_dir: str) -> None:
    from kubectl_pytrace.guard import node as guard_node

    def emit(rec: Dict[str, Any]) -> None:
        out.record(dict(rec, t=time.time()))
        out.flush()

    guard_node.run(cfg, targets, emit, config_dir)


def _memory() -> Dict[str, int]:
    """Peak memory (KiB) of this process and of the BCC compiler process it ran (if it did)."""
    import resource

    peak = 0
    try:
        with open("/proc/self/status") as f:
            peak = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        pass
    return {"tracer_kib": peak, "compiler_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}
