r"""End-to-end runtime cases: real BPF programs, real kernel events, checked output.

One engine runs every case of cases/*.yaml through `kubectl-pytrace run --local` (as bpftrace's
tests/runtime does). Case fields:
  name          unique id
  program       the program (`{{calls}}`, `{{usdt_probes}}`, `{{sysload}}` are the workloads of
                tests/workloads/host, `{{python}}` the interpreter running the tests,
                `{{workloads}}` the directory tests/runtime/workloads)
  run           optional -c command (same placeholders)
  args          optional extra CLI arguments, e.g. ["-o", "json", "--deadline", "2s"]
  expect        regexes (multi-line mode) that must all match stdout
  expect_exact  the whole of stdout
  not_expect    regexes that must not match stdout
  expect_each_cpu  regexes that must match stdout once for every online CPU, `{cpu}` replaced
                by its number (e.g. '^@\[{cpu}\]: \d+$')
  expect_time   a strftime format: some stdout line must be the local time it gives at one of
                the seconds the run lasted (the `time` builtin prints the real date)
  stderr        regexes that must match stderr
  json          true: every stdout line must be a JSON object
  exit          expected exit status (default 0)
  timeout       seconds (default 30)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
FIELDS = {"name", "program", "run", "args", "expect", "expect_exact", "not_expect", "expect_each_cpu",
          "expect_time", "stderr", "json", "exit", "timeout", "note"}

pytestmark = [pytest.mark.root, pytest.mark.bpf]


def load_cases():
    cases = []
    for f in sorted((HERE / "cases").glob("*.yaml")):
        for c in yaml.safe_load(f.read_text()):
            assert not set(c) - FIELDS, f"{f.name}: {c.get('name')}: unknown fields {set(c) - FIELDS}"
            cases.append(pytest.param(c, id=f"{f.stem}/{c['name']}"))
    names = [p.values[0]["name"] for p in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


def substitute(text: str, workloads) -> str:
    values = {name: str(path) for name, path in workloads.items()}
    values["python"] = sys.executable
    values["workloads"] = str(HERE / "workloads")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def online_cpus() -> list:
    cpus = []
    for part in Path("/sys/devices/system/cpu/online").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def times_between(fmt: str, start: float, end: float) -> set:
    """The local time in `fmt` at every second from start to end (the clock's possible readings)."""
    return {time.strftime(fmt, time.localtime(t)) for t in range(int(start), int(end) + 2)}


def check_each_cpu(case, out: str, context: str) -> None:
    for rx in case.get("expect_each_cpu", []):
        for cpu in online_cpus():
            line = rx.replace("{cpu}", str(cpu))
            assert re.search(line, out, re.M), f"no {line!r}: CPU {cpu} missing{context}"


def check_time(case, out: str, start: float, end: float, context: str) -> None:
    if "expect_time" in case:
        wanted = times_between(case["expect_time"], start, end)
        assert wanted & set(out.splitlines()), f"no line is one of {sorted(wanted)}{context}"


@pytest.mark.parametrize("case", load_cases())
def test_runtime_case(case, host_workloads):
    argv = [PYTRACE, "run", "--local", "-e", substitute(case["program"], host_workloads)]
    if case.get("run"):
        argv += ["-c", substitute(case["run"], host_workloads)]
    argv += [substitute(a, host_workloads) for a in case.get("args", [])]
    start = time.time()
    p = subprocess.run(argv, capture_output=True, timeout=case.get("timeout", 30))
    end = time.time()
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    context = f"\n--- stdout\n{out}\n--- stderr\n{err}"
    assert p.returncode == case.get("exit", 0), f"exit status {p.returncode}{context}"
    if "expect_exact" in case:
        assert out == case["expect_exact"], context
    for rx in case.get("expect", []):
        assert re.search(rx, out, re.M), f"stdout does not match {rx!r}{context}"
    for rx in case.get("not_expect", []):
        assert not re.search(rx, out, re.M), f"stdout matches {rx!r}{context}"
    check_each_cpu(case, out, context)
    check_time(case, out, start, end, context)
    for rx in case.get("stderr", []):
        assert re.search(rx, err, re.M), f"stderr does not match {rx!r}{context}"
    if case.get("json"):
        for line in out.splitlines():
            if line.strip():
                assert isinstance(json.loads(line), dict), line
