"""Our Output against the reference bpftrace's captured stdout (golden_bpftrace.json; bpftrace 0.27,
tests/compat/reference.py), and the captures against the live reference when it runs here."""

from __future__ import annotations

import io
import json
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


def _reference_missing() -> str:
    from tests.compat import reference

    return reference.unavailable() or ""


needs_bpftrace = pytest.mark.skipif("_reference_missing()", reason="the reference bpftrace does not run here")


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
