"""Fixtures of the firewall and shaper tests: a fresh pair of network namespaces per test."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netlab import Guard, Lab  # noqa: E402


@pytest.fixture
def lab():
    lab = Lab.create()
    yield lab
    lab.destroy()


@pytest.fixture
def guard(pytrace):
    """guard(kind, *args, env=None) -> a started Guard (kubectl-pytrace KIND --local ARGS); every one
    still running at the end of the test is killed."""
    started = []

    def start(kind: str, *args: str, env=None) -> Guard:
        g = Guard(kind, pytrace(*args, command=kind, env=dict(os.environ, **env) if env else None))
        started.append(g)
        return g
    yield start
    for g in started:
        if g.p.poll() is None:
            g.p.kill()
            g.p.wait()
