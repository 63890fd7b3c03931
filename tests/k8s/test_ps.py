"""`ps --local`: BPF programs loaded by our engine and by BCC directly, with their holders and
attach points, as the kernel reports them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.bpf]

REPO = Path(__file__).resolve().parents[2]
PLUGIN = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")

BCC_PROGRAM = r"""
import os, sys, time
from kubectl_pytrace.kernel.headers import find_headers
os.environ.update(find_headers().env())
from bcc import BPF
b = BPF(text='TRACEPOINT_PROBE(sched, sched_process_exec) { return 0; }')
print("loaded", flush=True)
sys.stdin.readline()
"""


def ps_json():
    p = subprocess.run([PLUGIN, "ps", "--local", "-o", "json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_ps_shows_who_holds_what(host_workloads):
    calls = host_workloads["calls"]
    tracer = subprocess.Popen([PLUGIN, "run", "--local", "-e", f"uprobe:{calls}:work {{ @ = count(); }}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bcc = subprocess.Popen([sys.executable, "-c", BCC_PROGRAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert tracer.stderr.readline().startswith(("Attached", "kubectl-pytrace:"))
        assert bcc.stdout.readline().strip() == "loaded"
        time.sleep(0.5)
        progs = ps_json()
        ours = [p for p in progs if any(h["pid"] == tracer.pid for h in p["holders"])]
        assert ours and all(p["ours"] for p in ours), progs
        (probe,) = [p for p in ours if p["name"] == "probe_0"]
        assert probe["type"] == "kprobe" and probe["attached"][0].startswith(f"uprobe:{calls}+0x"), probe
        theirs = [p for p in progs if any(h["pid"] == bcc.pid for h in p["holders"])]
        assert theirs and not any(p["ours"] for p in theirs), progs
        (tp,) = theirs
        assert tp["type"] == "tracepoint" and tp["attached"] == ["tracepoint:sched_process_exec"], tp
        assert tp["holders"][0]["comm"].startswith("python")
        text = subprocess.run([PLUGIN, "ps", "--local"], capture_output=True, text=True, check=True).stdout
        assert text.splitlines()[0].split() == ["ID", "TYPE", "NAME", "ATTACHED", "PID", "COMM", "CONTAINER",
                                                "AGE", "TRACER"]
        line = next(line for line in text.splitlines() if line.split()[0] == str(probe["id"]))
        assert line.split()[-1] == "yes" and str(tracer.pid) in line.split()
    finally:
        tracer.terminate()
        bcc.communicate("\n", timeout=30)
        tracer.wait(timeout=30)
    gone = {p["id"] for p in ps_json()}
    assert probe["id"] not in gone and tp["id"] not in gone
