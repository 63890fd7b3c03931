"""The tracer pod's command (`kubectl-pytrace tracer`) run on this host, as a Job runs it on a node:
its records on stdout, and its refusals (another client version, a node it has nothing for)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kubectl_pytrace import __version__, traceconfig

REPO = Path(__file__).resolve().parents[2]
PLUGIN = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")


def config(tmp_path: Path, program: str, **over) -> Path:
    cfg = {"config_version": traceconfig.CONFIG_VERSION, "client_version": __version__, "name": "t",
           "filename": "prog.bt", "params": [], "deadline": 1.0, "ns_pids": False, "nodes": {"n1": []}}
    cfg.update(over)
    (tmp_path / traceconfig.CONFIG_FILE).write_text(json.dumps(cfg))
    (tmp_path / traceconfig.PROGRAM_FILE).write_text(program)
    return tmp_path


def tracer(directory: Path, node: str = "n1"):
    p = subprocess.run([PLUGIN, "tracer", "--config", str(directory)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, NODE_NAME=node))
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines()], p.stderr


def test_another_client_version_is_refused(tmp_path):
    code, recs, _ = tracer(config(tmp_path, "BEGIN { }", client_version="0.0.1"))
    assert code == 1
    assert recs[0]["hello"]["version"] == __version__
    assert recs[-1]["exit"] == 1
    assert recs[-1]["error"] == (f"version mismatch: kubectl-pytrace 0.0.1 created this trace, but the tracer "
                                 f"image runs kubectl-pytrace {__version__}")
    assert "--image" in recs[-1]["hint"]


def test_a_node_the_trace_does_not_name(tmp_path):
    code, recs, _ = tracer(config(tmp_path, "BEGIN { }"), node="other")
    assert code == 1 and recs == [recs[-1]]
    assert recs[-1]["error"] == "this trace has nothing to trace on node other (it targets n1)"


def test_an_unreadable_configuration(tmp_path):
    code, recs, _ = tracer(tmp_path)
    assert code == 1 and "cannot read the trace's configuration" in recs[-1]["error"]


@pytest.mark.root
@pytest.mark.bpf
def test_a_whole_node_trace_writes_its_records(tmp_path):
    code, recs, err = tracer(config(tmp_path, 'BEGIN { printf("hello %d\\n", $1); @n = count(); exit(); }',
                                    params=["42"]))
    assert code == 0, (recs, err)
    kinds = [next(iter(r)) for r in recs]
    assert kinds[0] == "hello" and kinds[-1] == "exit"
    assert {"status", "attached", "printf", "maps"} <= set(kinds)
    assert next(r for r in recs if "printf" in r) == {"printf": "hello 42\n", "src": 0}
    maps = next(r for r in recs if "maps" in r)["maps"]
    assert [(m["name"], m["kind"], m["entries"]) for m in maps] == [("@n", "count", [[[], 1]])]
    assert recs[-1]["memory"]["tracer_kib"] > 0
