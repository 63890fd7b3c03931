"""bpftrace compatibility: the same program on the same workload must print the same stdout.

Every case of cases.yaml runs twice under the reference bpftrace (tests/compat/reference.py: the
current bpftrace, Debian sid's 0.27, from a chroot hack/bpftrace-sid.sh builds and caches; the two
runs must agree, which keeps nondeterministic cases out) and once under
``.venv/bin/kubectl-pytrace run --local``; stdout must be byte-identical, in text mode and, for
cases with ``json: true``, with ``-f json`` / ``-o json`` too.

Case fields (cases.yaml):
  name        unique id
  program     the bpftrace program; ``{{calls}}``, ``{{usdt_probes}}``, ``{{sysload}}`` stand
              for the workload binaries built from tests/workloads/host
  run         optional command for ``-c`` (same placeholders); the trace ends when it exits.
              Without it the program must end by itself (exit()).
  json        also compare JSON output (default false)
  unsafe      pass --unsafe (system(), cat() ...)
  args        arguments after the program, for both tools: ["--", "--depth=5", "x"] (getopt()'s
              named parameters, $1...)
  timeout     seconds for each run (default 30)
  normalize   optional list: "sort_lines" sorts the lines of the whole output (only for
              outputs whose order bpftrace itself does not fix)

bpftrace's attached_probes record (JSON; text mode prints "Attached N probes" on stderr) is left
out of the comparison: kubectl-pytrace prints "Attached N probes" on stderr in both modes.

Environment: BPFTRACE (a bpftrace binary instead of the sid chroot's), PYTRACE (default
.venv/bin/kubectl-pytrace), COMPAT_CASES=name1,name2 to run a subset.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml

from tests.compat import reference as bpftrace_ref

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CASES_FILE = HERE / "cases.yaml"
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")

KNOWN_FIELDS = {"name", "program", "run", "json", "unsafe", "timeout", "normalize", "note", "args", "exit_code"}
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def load_cases(everything: bool = False) -> List[dict]:
    cases = yaml.safe_load(CASES_FILE.read_text())
    names = set()
    for c in cases:
        unknown = set(c) - KNOWN_FIELDS
        assert not unknown, "case %s: unknown fields %s" % (c.get("name"), unknown)
        assert c["name"] not in names, "duplicate case %s" % c["name"]
        names.add(c["name"])
    only = os.environ.get("COMPAT_CASES")
    if only and not everything:
        wanted = set(only.split(","))
        cases = [c for c in cases if c["name"] in wanted]
    return cases


CASES = load_cases()
CASES_ALL = load_cases(everything=True)


def _load_builder():
    path = REPO / "tests" / "workloads" / "host" / "build.py"
    spec = importlib.util.spec_from_file_location("pytrace_host_workloads", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _facilities() -> Optional[str]:
    if os.geteuid() != 0:
        return "needs root"
    return bpftrace_ref.unavailable()


_missing = _facilities()
pytestmark = [
    pytest.mark.bpftrace,
    pytest.mark.bpf,
    pytest.mark.root,
    pytest.mark.skipif(_missing is not None, reason=_missing or ""),
]


@pytest.fixture(scope="session")
def workloads() -> Dict[str, Path]:
    try:
        found = dict(_load_builder().build_workloads())
    except Exception as e:  # gcc or sys/sdt.h missing
        pytest.skip("cannot build workloads: %s" % e)
    found["cgroup2"] = _cgroup2_root()
    return found


def _cgroup2_root() -> Path:
    """Where this machine mounts cgroup2 ({{cgroup2}}): /sys/fs/cgroup, or .../unified (hybrid)."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return Path("/sys/fs/cgroup")


@pytest.fixture(scope="session", autouse=True)
def _tracefs():
    # bpftrace and our tracer both need tracefs; mount it when this machine has not.
    if not Path("/sys/kernel/tracing/events").exists() and os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                       capture_output=True)


def substitute(text: str, workloads: Dict[str, Path]) -> str:
    def repl(m):
        name = m.group(1)
        if name not in workloads:
            raise KeyError("unknown workload placeholder {{%s}}" % name)
        path = str(workloads[name])
        assert re.fullmatch(r"[\w./-]+", path), "workload path with odd characters: %r" % path
        return path

    return PLACEHOLDER.sub(repl, text)


def normalize(out: bytes, how: List[str]) -> bytes:
    for n in how or []:
        if n == "sort_lines":
            out = b"\n".join(sorted(out.split(b"\n")))
        else:
            raise ValueError("unknown normalisation %r" % n)
    return out


def run_tool(argv: List[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("%s timed out after %ss; stdout so far:\n%s"
                    % (argv[0], timeout, (e.stdout or b"").decode(errors="replace")))


def bpftrace_argv(case, program, command, json_out):
    argv = bpftrace_ref.command()
    if json_out:
        argv += ["-f", "json"]
    if case.get("unsafe"):
        argv.append("--unsafe")
    argv += ["-e", program]
    if command:
        argv += ["-c", command]
    return argv + list(case.get("args") or [])


def pytrace_argv(case, program, command, json_out):
    argv = [PYTRACE, "run", "--local", "-o", "json" if json_out else "text"]
    if case.get("unsafe"):
        argv.append("--unsafe")
    argv += ["-e", program]
    if command:
        argv += ["-c", command]
    return argv + list(case.get("args") or [])


_reference: Dict[tuple, bytes] = {}


def reference(case, workloads, json_out: bool) -> bytes:
    """bpftrace's stdout for a case (run once per session and format)."""
    key = (case["name"], json_out)
    if key not in _reference:
        program = substitute(case["program"], workloads)
        command = substitute(case["run"], workloads) if case.get("run") else None
        p = run_tool(bpftrace_argv(case, program, command, json_out), case.get("timeout", 30))
        assert p.returncode == case.get("exit_code", 0), "bpftrace failed (%d):\n%s" % (
            p.returncode, p.stderr.decode(errors="replace"))
        _reference[key] = p.stdout
    return _reference[key]


def _diff(a: bytes, b: bytes, b_name: str = "kubectl-pytrace") -> str:
    return "".join(difflib.unified_diff(
        a.decode("utf-8", "replace").splitlines(True), b.decode("utf-8", "replace").splitlines(True),
        "bpftrace", b_name))


def _params(json_only: bool = False):
    out = []
    for c in CASES:
        for j in ((True,) if json_only else (False, True)):
            if j and not c.get("json"):
                continue
            out.append(pytest.param(c, j, id="%s-%s" % (c["name"], "json" if j else "text")))
    return out


@pytest.mark.parametrize("case, json_out", _params())
def test_case_is_deterministic_under_bpftrace(case, json_out, workloads):
    """The reference itself must print the same thing twice, or the case cannot be compared."""
    first = reference(case, workloads, json_out)
    program = substitute(case["program"], workloads)
    command = substitute(case["run"], workloads) if case.get("run") else None
    again = run_tool(bpftrace_argv(case, program, command, json_out), case.get("timeout", 30))
    how = case.get("normalize")
    assert normalize(again.stdout, how) == normalize(first, how), _diff(
        first, again.stdout, "bpftrace (second run)")


_ATTACHING = re.compile(rb'^(Attaching \d+ probes?\.\.\.|\{"type": "attached_probes", [^\n]*\})\n')


def program_output(bpftrace_stdout: bytes) -> bytes:
    """bpftrace's stdout without the attach count (JSON's attached_probes record), which
    kubectl-pytrace prints on stderr ("Attached N probes") so that stdout carries only the
    program's own output."""
    return _ATTACHING.sub(b"", bpftrace_stdout, count=1)


@pytest.mark.parametrize("case, json_out", _params())
def test_same_stdout_as_bpftrace(case, json_out, workloads):
    expected = program_output(reference(case, workloads, json_out))
    program = substitute(case["program"], workloads)
    command = substitute(case["run"], workloads) if case.get("run") else None
    if not Path(PYTRACE).exists():
        pytest.fail("%s not found (hack/install.sh --test)" % PYTRACE)
    p = run_tool(pytrace_argv(case, program, command, json_out), case.get("timeout", 30))
    # exit_code: the status exit(code) or a failed assert() gives both tools
    assert p.returncode == case.get("exit_code", 0), "kubectl-pytrace failed (%d):\n%s" % (
        p.returncode, p.stderr.decode(errors="replace"))
    how = case.get("normalize")
    got, want = normalize(p.stdout, how), normalize(expected, how)
    assert got == want, _diff(want, got)


def test_cases_file_is_sane():
    assert len(CASES) >= 40 or os.environ.get("COMPAT_CASES")
    for c in CASES:
        for field in ("program", "run"):
            for name in PLACEHOLDER.findall(c.get(field) or ""):
                assert name in {"calls", "usdt_probes", "sysload", "cgroup2"}, (c["name"], name)


_MESSAGE = re.compile(rb"^stdin:\d+:\d+(-\d+)?: (ERROR|WARNING): .*$", re.M)


def test_errorf_messages_on_stderr_as_bpftrace(workloads):
    """In text mode errorf()/warnf() print "stdin:line:col-end: ERROR: text" on stderr."""
    case = next(c for c in CASES_ALL if c["name"] == "errorf_warnf_and_exit_codes")
    program = substitute(case["program"], workloads)
    command = substitute(case["run"], workloads)
    theirs = run_tool(bpftrace_argv(case, program, command, False), 30)
    ours = run_tool(pytrace_argv(case, program, command, False), 30)
    assert ours.returncode == theirs.returncode == 3
    want = [m.group(0) for m in _MESSAGE.finditer(theirs.stderr)]
    assert want and [m.group(0) for m in _MESSAGE.finditer(ours.stderr)] == want


def test_rawtracepoint_probes_where_bpftrace_cannot_attach_them(workloads):
    """bpftrace 0.27 finds no rawtracepoint attach points on this kernel (it looks them up in
    places the kernel does not have); ours attach by name, typed from BTF: checked against the
    workload's known system calls instead."""
    program = ("rawtracepoint:sys_enter /pid == cpid && args.id == 110/ { @calls = count(); "
               "@regs[args.regs != 0] = count(); }\n"
               "rt:vmlinux:sys_exit /pid == cpid && arg1 > 0 && @calls > 0/ { @ret = max(1); }")
    p = run_tool(pytrace_argv({}, program, substitute("{{sysload}} getppid 5", workloads), False), 30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert p.stdout == b"\n\n@calls: 5\n@regs[true]: 5\n@ret: 1\n"
