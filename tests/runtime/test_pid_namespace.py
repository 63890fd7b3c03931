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
