"""`comm == "..."` against literals of every length up to the 15 characters a comm holds: clang once
merged a 16-byte compare (15 characters and the NUL) into a memcmp loop the verifier gave up on."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")

pytestmark = [pytest.mark.root, pytest.mark.bpf]


@pytest.mark.parametrize("name", ["pytrace-comm-15", "pytrace-comm14", "pt"])
def test_comm_equals_a_literal(tmp_path, name):
    exe = tmp_path / name
    shutil.copy("/bin/true", exe)
    prog = f'tracepoint:sched:sched_process_exec /comm == "{name}"/ {{ @execs = count(); }}'
    p = subprocess.run([PYTRACE, "run", "--local", "-c", f"sh -c '{exe}; {exe}; {exe}'", "-e", prog],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "@execs: 3" in p.stdout, p.stdout
