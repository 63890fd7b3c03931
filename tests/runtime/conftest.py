"""Fixtures of the runtime tests: private copies of the traced workloads, and the leak check.

    def test_x(calls, nothing_left_behind): ...     # after the test, nothing of ours may be left

`nothing_left_behind` marks every process the test starts (leakcheck.MARK) and afterwards checks
that none runs on and that no BPF object or armed uprobe of ours is left; it checks the private
copies the test used (`calls`, `wide`) for armed uprobes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from leakcheck import MARK, LeakWatch

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads" / "scale"))
import build as scale_build  # noqa: E402  (tests/runtime/workloads/scale/build.py)


@pytest.fixture
def calls(host_workloads, tmp_path) -> Path:
    """A private copy of the calls workload: no other test (or tester) arms uprobes in it."""
    path = tmp_path / "calls"
    shutil.copy2(host_workloads["calls"], path)
    return path


@pytest.fixture(scope="session")
def scale_workloads():
    """{name: path} of tests/runtime/workloads/scale (built with gcc, cached)."""
    return scale_build.build()


class Wide:
    """A private copy of libwide.so (FUNCTIONS functions) and the command that runs its driver on it."""

    def __init__(self, tmp: Path, built):
        self.lib = tmp / "libwide.so"
        shutil.copy2(built["libwide"], self.lib)
        self.driver = built["wide"]

    def command(self, *args: str) -> str:
        return f"/usr/bin/env LD_LIBRARY_PATH={self.lib.parent} {self.driver} {' '.join(args)}"

    def argv(self, *args: str):
        return self.command(*args).split()


@pytest.fixture
def wide(scale_workloads, tmp_path) -> Wide:
    return Wide(tmp_path, scale_workloads)


@pytest.fixture
def nothing_left_behind(request, monkeypatch):
    """Every process the test starts carries the watch's mark; afterwards none may be left."""
    traced = []
    if "calls" in request.fixturenames:
        traced.append(request.getfixturevalue("calls"))
    if "wide" in request.fixturenames:
        w = request.getfixturevalue("wide")
        traced.append((w.lib, w.argv("0", "2000")))
    watch = LeakWatch(traced)
    monkeypatch.setenv(MARK, watch.mark)
    yield watch
    problems = watch.leftovers()
    watch.kill_leftovers()
    assert not problems, "left behind by the trace:\n  " + "\n  ".join(problems)
