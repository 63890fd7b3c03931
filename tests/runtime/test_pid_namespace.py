"""`pid` and `tid` as the tracer's own pid namespace numbers them (a tracer in a kind node sees the
node's PIDs in its /proc): here the tracer runs under `unshare --pid --mount-proc`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")

pytestmark = [pytest.mark.root, pytest.mark.bpf]

PROGRAM = ('tracepoint:syscalls:sys_enter_clock_nanosleep /comm == "pt-nssleep" || comm == "pt-hsleep"/ '
           '{ printf("%s pid=%d tid=%d cpid=%d init=%d\\n", comm, pid, tid, cpid, pid(init)); }')


def test_pid_is_the_tracers_namespace_number(tmp_path):
    inside, outside = tmp_path / "pt-nssleep", tmp_path / "pt-hsleep"
    for p in (inside, outside):
        shutil.copy("/bin/sleep", p)
    stop = threading.Event()

    def host_sleeps():  # a process of the initial namespace: invisible to the tracer's
        while not stop.is_set():
            subprocess.run([str(outside), "0.05"])

    t = threading.Thread(target=host_sleeps)
    t.start()
    try:
        p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", PYTRACE, "run", "--local",
                            "-c", f"{inside} 1", "-e", PROGRAM], capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        t.join()
    assert p.returncode == 0, p.stderr
    ours = re.findall(r"^pt-nssleep pid=(\d+) tid=(\d+) cpid=(\d+) init=(\d+)$", p.stdout, re.M)
    theirs = re.findall(r"^pt-hsleep pid=(\d+) tid=(\d+) cpid=\d+ init=(\d+)$", p.stdout, re.M)
    assert ours and theirs, p.stdout
    for pid, tid, cpid, init in ours:
        assert pid == tid == cpid != init, ours  # the -c command, numbered in the namespace
    for pid, tid, init in theirs:
        assert pid == tid == "0" and int(init) > 0, theirs


def test_a_node_trace_in_a_nested_pid_namespace_sees_only_that_namespace(tmp_path):
    # `kubectl-pytrace tracer` as a Job runs it for node/NAME, with the tracer in a pid namespace
    # that is not the machine's (a kind node): the processes of that namespace and the ones nested
    # in it are traced, the machine's others are not
    import json

    from kubectl_pytrace import __version__, traceconfig

    inside, nested, outside = (tmp_path / n for n in ("pt-nssleep", "pt-nestsleep", "pt-hsleep"))
    for p in (inside, nested, outside):
        shutil.copy("/bin/sleep", p)
    loop = 'while :; do "$1" 0.05; done'
    prog = ('tracepoint:syscalls:sys_enter_clock_nanosleep /comm == "pt-nssleep" || comm == "pt-nestsleep" || '
            'comm == "pt-hsleep"/ { @[comm] = count(); }')
    cfg = {"config_version": traceconfig.CONFIG_VERSION, "client_version": __version__, "name": "t",
           "filename": "prog.bt", "params": [], "deadline": 2.0, "ns_pids": False, "nodes": {"n1": []}}
    (tmp_path / traceconfig.CONFIG_FILE).write_text(json.dumps(cfg))
    (tmp_path / traceconfig.PROGRAM_FILE).write_text(prog)
    # in the tracer's namespace: a loop of pt-nssleep, and one of pt-nestsleep in a namespace of its own
    script = (f"sh -c '{loop}' sh {inside} & unshare --pid --fork sh -c '{loop}' sh {nested} & "
              f"NODE_NAME=n1 {PYTRACE} tracer --config {tmp_path}; kill %1 %2")
    host = subprocess.Popen(["sh", "-c", loop, "sh", str(outside)])
    try:
        p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script],
                           capture_output=True, text=True, timeout=120)
    finally:
        host.kill()
        host.wait()
    records = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert records[-1]["exit"] == 0, (records, p.stderr)
    [maps] = [r["maps"] for r in records if "maps" in r]
    counts = {key[0]: n for m in maps if m["name"] == "@" for key, n in m["entries"]}
    assert counts.get("pt-nssleep", 0) >= 10 and counts.get("pt-nestsleep", 0) >= 10, records
    assert "pt-hsleep" not in counts, counts  # the machine's: not this node's
    assert any("PID namespace" in r.get("stderr", "") for r in records), records
