"""Our Output against bpftrace 0.17's captured stdout (golden_bpftrace.json), and the captures
against the live bpftrace binary when it is installed."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from kubectl_pytrace.output.printer import make_output

from .cases import CASES

GOLDEN = json.loads(Path(__file__).with_name("golden_bpftrace.json").read_text())
BY_NAME = {c.name: c for c in CASES}


def render(case, fmt: str) -> str:
    buf = io.BytesIO()
    out = make_output(fmt, buf)
    case.render(out)
    return buf.getvalue().decode("utf-8", "surrogateescape")


def test_every_case_has_a_capture():
    assert sorted(BY_NAME) == sorted(GOLDEN)
    for name, entry in GOLDEN.items():
        assert entry["program"] == BY_NAME[name].program, "program changed: re-run capture"


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_text_matches_bpftrace(name):
    assert render(BY_NAME[name], "text") == GOLDEN[name]["text"]


@pytest.mark.parametrize("name", sorted(c.name for c in CASES if c.json))
def test_json_matches_bpftrace(name):
    assert render(BY_NAME[name], "json") == GOLDEN[name]["json"]


needs_bpftrace = pytest.mark.skipif(
    shutil.which("bpftrace") is None or os.geteuid() != 0, reason="needs bpftrace and root"
)


@pytest.mark.bpftrace
@pytest.mark.root
@needs_bpftrace
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_capture_still_matches_bpftrace(name):
    from .capture import run_bpftrace

    case = BY_NAME[name]
    assert run_bpftrace(case.program, False, case.unsafe) == GOLDEN[name]["text"]
    if case.json:
        assert run_bpftrace(case.program, True, case.unsafe) == GOLDEN[name]["json"]
