"""Wide probes: hundreds of attach points go in together and come out at once (issue 10).

- The counts of a uprobe wildcard over libwide.so (300 generated functions and two aliases) and of
  the syscall wildcard equal bpftrace 0.17's, through uprobe_multi links and the syscall
  dispatcher as through one perf event per point (PYTRACE_SINGLE_ATTACH=1).
- Ctrl-C, SIGTERM and --deadline end such a trace within EXIT_BOUND, END and the maps printed
  first; one perf event per point took ~0.1 s each to close (~50 s for the program here).
- Nothing is left behind (conftest.nothing_left_behind) after any of those, after a SIGKILL, a
  failure, or Ctrl-C while BCC compiles; the check sees what these paths make while they live.
- A uprobe on an instruction that x86 uprobes would emulate instead of running is refused.
- The tracer pod's command ends such a trace as fast on SIGTERM (48.8 s with a perf event each).
- `ps` shows where a uprobe_multi link's uprobes are; a kprobe_multi link this kernel refuses (no
  fprobe, no kprobes: only the error path runs here) falls back to a perf event each.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict

import pytest

from kubectl_pytrace.bpf import links
from kubectl_pytrace.bpf import syscalls as bpfsys
from kubectl_pytrace.host.elf import open_elf, symbol_file_offset
from leakcheck import MARK, armed_uprobes, bpf_objects, holders, marked_pids

pytestmark = [pytest.mark.root, pytest.mark.bpf]

COMPILER = "-m kubectl_pytrace.bpf.bcc_compile"  # its command line (a test's tmp_path may say bcc_compile)
EXIT_BOUND = 5.0  # seconds from Ctrl-C to the end of the process (measured here: 0.2-0.5 s)
PYTRACE = os.environ.get("PYTRACE") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl-pytrace")
PATHS = {"together": {}, "single": {"PYTRACE_SINGLE_ATTACH": "1"}}


@pytest.fixture(autouse=True)
def _nothing_left_behind(nothing_left_behind):
    yield


def maps(stdout: str) -> Dict[str, str]:
    """'@[key]: value' lines -> {'@[key]': 'value'}."""
    return dict(m.groups() for m in re.finditer(r"^(@.*): (.*)$", stdout, re.M))


def finished(t, timeout: float = 120):
    t.rc = t.finish(timeout)
    return t


def bpftrace(program: str, command: str) -> Dict[str, str]:
    p = subprocess.run(["bpftrace", "-e", program, "-c", command], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return maps(p.stdout)


def attach_kind(stderr: str) -> str:
    """What `-v` says the program's attach points went through."""
    kinds = re.findall(r"^kubectl-pytrace: \d+ attach points?: (.+?) \(", stderr, re.M)
    assert kinds, stderr
    return ", ".join(kinds)


# ---- the same counts as bpftrace ------------------------------------------------------------------

UPROBE_BODIES = {
    "probe": 'uprobe:{lib}:w00* /comm == "wide"/ {{ @[probe] = count(); }}',
    "func": 'uprobe:{lib}:w01* /comm == "wide"/ {{ @[func] = count(); }}',
    "shared": 'uprobe:{lib}:w02* /comm == "wide"/ {{ @n = count(); @s = sum(arg0); }}',
    "uretprobe": 'uretprobe:{lib}:w02* /comm == "wide"/ {{ @[func, retval] = count(); }}',
}


def bpftrace_func(program: str, command: str, prefix: str) -> Dict[str, str]:
    """bpftrace's counts by `func`, from `probe` with `prefix` taken off: bpftrace 0.17 prints a
    uprobe's func as the address when the traced process has exited before the maps are printed."""
    found = bpftrace(program.replace("func", "probe"), command)
    return {key.replace(prefix, ""): value for key, value in found.items()}


@pytest.mark.bpftrace
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("body", UPROBE_BODIES)
def test_uprobe_wildcard_counts_equal_bpftrace(body, path, wide, pytrace):
    program = UPROBE_BODIES[body].format(lib=wide.lib)
    t = finished(pytrace("-v", "-e", program, "-c", wide.command("3"), env=dict(os.environ, **PATHS[path])))
    assert t.rc == 0, t.stderr
    ours = maps(t.stdout)
    assert ours and all(int(v) > 0 for v in ours.values()), t.stdout  # events arrived
    if "func" in program:
        assert ours == bpftrace_func(program, wide.command("3"), f"{program.split(':')[0]}:{wide.lib}:")
    else:
        assert ours == bpftrace(program, wide.command("3"))
    assert attach_kind(t.stderr) == ("uprobe_multi link" if path == "together" else "perf event")


SYSCALL_PROGRAMS = {
    "enter": 'tracepoint:syscalls:sys_enter_* /pid == cpid && comm == "syscalls"/ { @[probe] = count(); }',
    # a comparison prints true/false in the 0.27 language, 0/1 in bpftrace 0.17: an integer both
    "exit": 'tracepoint:syscalls:sys_exit_* /pid == cpid && comm == "syscalls"/ { @[probe, args->ret < 0 ? 1 : 0] = count(); }',
}


@pytest.mark.bpftrace
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("program", SYSCALL_PROGRAMS)
def test_syscall_wildcard_counts_equal_bpftrace(program, path, scale_workloads, pytrace):
    command = f"{scale_workloads['syscalls']} 50"
    text = SYSCALL_PROGRAMS[program]
    t = finished(pytrace("-v", "-e", text, "-c", command, env=dict(os.environ, **PATHS[path])))
    assert t.rc == 0, t.stderr
    ours = maps(t.stdout)
    assert ours == bpftrace(text, command)
    assert attach_kind(t.stderr) == ("syscall dispatcher" if path == "together" else "perf event")
    if program == "enter":  # the workload's own calls; its 50 32-bit getpid calls (number 20,
        assert ours["@[tracepoint:syscalls:sys_enter_getppid]"] == "50"  # writev's) are not syscalls:*
        assert ours["@[tracepoint:syscalls:sys_enter_newuname]"] == "150"
        assert "@[tracepoint:syscalls:sys_enter_writev]" not in ours


@pytest.mark.bpftrace
def test_kernel_stacks_of_syscalls_as_bpftrace_takes_them(scale_workloads, pytrace):
    """Not through the dispatcher: a stack taken there starts a frame lower (no perf_syscall_enter)."""
    program = 'tracepoint:syscalls:sys_enter_getppid,tracepoint:syscalls:sys_enter_sched_yield /pid == cpid && comm == "syscalls"/ ' \
              '{ @[kstack, probe] = count(); }'
    command = f"{scale_workloads['syscalls']} 5"
    t = finished(pytrace("-v", "-e", program, "-c", command))
    assert t.rc == 0, t.stderr
    assert attach_kind(t.stderr) == "perf event"
    p = subprocess.run(["bpftrace", "-e", program, "-c", command], capture_output=True, text=True, timeout=300)
    assert frames(t.stdout) == frames(p.stdout.replace("Attaching 2 probes...\n", ""))


def frames(stdout: str) -> str:
    """A stack map's text without indentation (0.27 indents frames by 8, 0.17 by 4) and without
    __traceiter_* frames (there while any other program is on the same tracepoint: others' tests)."""
    lines = (line.strip() for line in stdout.strip().splitlines())
    return "\n".join(line for line in lines if not line.startswith("__traceiter_"))


def test_syscall_programs_read_their_own_args(scale_workloads, pytrace):
    """Each syscall's program reads its tracepoint's fields through the dispatcher's record as
    through its own (bpftrace 0.17 cannot compile `args` of every syscall with these headers)."""
    program = 'tracepoint:syscalls:sys_enter_* /pid == cpid && comm == "syscalls"/ { @[probe, args->__syscall_nr] = count(); }'
    command = f"{scale_workloads['syscalls']} 50"
    runs = [finished(pytrace("-e", program, "-c", command, env=dict(os.environ, **env))) for env in PATHS.values()]
    assert all(t.rc == 0 for t in runs), [t.stderr for t in runs]
    assert maps(runs[0].stdout) == maps(runs[1].stdout)
    assert maps(runs[0].stdout)["@[tracepoint:syscalls:sys_enter_newuname, 63]"] == "150"


# ---- ending at once ------------------------------------------------------------------------------

WIDE_PROGRAM = ('uprobe:{lib}:* {{ @u[probe] = count(); }} tracepoint:syscalls:sys_enter_* {{ @s[probe] = count(); }} '
                'END {{ printf("end\\n"); }}')


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "deadline"])
def test_a_wide_trace_ends_at_once(how, wide, pytrace):
    """302 uprobes and every syscall tracepoint: END and the maps, then the process ends, within
    EXIT_BOUND of the signal (or of the deadline)."""
    args = ["--deadline", "3"] if how == "deadline" else []
    t = pytrace(*args, "-v", "-e", WIDE_PROGRAM.format(lib=wide.lib))
    t.wait_attached()
    attached = time.monotonic()
    subprocess.run(wide.argv("1"), check=True)
    if how == "deadline":
        stop = attached + 3  # the deadline counts from the start of tracing, a little before
    else:
        time.sleep(0.5)
        stop = time.monotonic()
        t.p.send_signal(getattr(signal, how))
    finished(t)
    took = time.monotonic() - stop
    assert t.rc == 0, t.stderr
    assert took < EXIT_BOUND, f"{took:.1f} s from {how} to the end:\n{t.stderr}"
    found = maps(t.stdout)
    assert t.stdout.startswith("end\n"), t.stdout[:200]
    assert sum(1 for k in found if re.match(rf"@u\[uprobe:{wide.lib}:w\d+(_alias_.)?\]$", k)) == 302
    assert found[f"@u[uprobe:{wide.lib}:w0004]"] == "5"
    assert any(k.startswith("@s[tracepoint:syscalls:sys_enter_") for k in found)
    assert "uprobe_multi link" in t.stderr and "syscall dispatcher" in t.stderr


def test_sigkill_of_a_wide_trace(wide, pytrace):
    """The kernel closes a killed tracer's links and dispatchers (conftest's check, afterwards)."""
    t = pytrace("-e", WIDE_PROGRAM.format(lib=wide.lib))
    t.wait_attached()
    t.p.kill()
    t.finish()


def test_failure_after_the_wide_paths_detaches_them(wide, pytrace):
    """The uprobe_multi link and the dispatcher are in (program order) before the interval's
    program is refused by the verifier."""
    t = finished(pytrace("-e", WIDE_PROGRAM.format(lib=wide.lib) +
                         " interval:s:1 { $i = 0; while ($i < 1000000) { $i += 1 + rand % 2; } }"))
    assert t.rc == 1, t.stderr
    assert "error: cannot attach interval:s:1: the BPF verifier rejected the program" in t.stderr


def test_ctrl_c_while_bcc_compiles(wide, pytrace, tmp_path, nothing_left_behind):
    """Before anything is attached, Ctrl-C ends the tracer and its compiler at once, quietly."""
    t = pytrace("-e", WIDE_PROGRAM.format(lib=wide.lib),
                env=dict(os.environ, PYTRACE_CACHE_DIR=str(tmp_path / "cache")))
    deadline = time.monotonic() + 60
    while not any(COMPILER in cmd for cmd in marked_pids(nothing_left_behind.mark).values()):
        assert t.p.poll() is None and time.monotonic() < deadline, t.stderr
        time.sleep(0.01)
    start = time.monotonic()
    t.p.send_signal(signal.SIGINT)
    assert t.finish(30) == 130, t.stderr
    assert time.monotonic() - start < EXIT_BOUND
    assert "Traceback" not in t.stderr and "bug" not in t.stderr, t.stderr
    assert t.stderr.rstrip().endswith("error: interrupted"), t.stderr
    assert "Attached" not in t.stderr


def test_leak_check_sees_the_wide_paths(wide, pytrace, nothing_left_behind):
    """The leak check finds what a live trace of these paths holds: it can fail."""
    t = pytrace("-e", WIDE_PROGRAM.format(lib=wide.lib))
    t.wait_attached()
    try:
        held = holders()
        mine = {obj: name for obj, name in bpf_objects().items() if t.p.pid in held.get(obj, ())}
        assert any(kind == "link" for kind, _ in mine), f"no link held by the tracer: {mine}"
        assert "pytrace_dispatc" in mine.values(), f"no dispatcher table held by the tracer: {mine}"
        assert armed_uprobes(wide.lib, wide.argv("0", "2000")), f"no breakpoint armed in {wide.lib}"
        problems = nothing_left_behind.problems_now()
        assert any("link" in p for p in problems) and any("uprobe breakpoints" in p for p in problems), problems
    finally:
        t.interrupt()


def test_ps_shows_the_wide_paths(wide, pytrace):
    """`ps` names where a uprobe_multi link's uprobes are (path and offsets, as a perf event's
    uprobe), and the dispatcher's tracepoint."""
    t = pytrace("-e", WIDE_PROGRAM.format(lib=wide.lib) + f" uprobe:{wide.lib}:w0001 {{ @one = count(); }}")
    t.wait_attached()
    try:
        p = subprocess.run([PYTRACE, "ps", "--local", "-o", "json"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        ours = [prog for prog in json.loads(p.stdout) if any(h["pid"] == t.p.pid for h in prog["holders"])]
        attached = sorted(a for prog in ours for a in prog["attached"])
        offset = symbol_file_offset(str(wide.lib), "w0001")
        assert f"uprobe:{wide.lib}+0x{offset:x}" in attached, attached  # the lone probe's link
        functions = len(open_elf(str(wide.lib)).symbols())  # w0000-w0299, two aliases, _init...
        assert functions > 302
        assert f"uprobe:{wide.lib} ({functions} offsets)" in attached, attached  # the wildcard's
        assert "tracepoint:sys_enter" in attached, attached  # the dispatcher
    finally:
        assert t.interrupt() == 0, t.stderr


# ---- instructions uprobes would not run ----------------------------------------------------------

def _has_avx2() -> bool:
    return " avx2" in Path("/proc/cpuinfo").read_text()


@pytest.fixture
def vecfirst(scale_workloads, tmp_path) -> Path:
    if not _has_avx2():
        pytest.skip("needs a CPU with AVX2")
    path = tmp_path / "vecfirst"
    path.write_bytes(scale_workloads["vecfirst"].read_bytes())
    path.chmod(0o755)
    return path


def test_vector_instruction_uprobes_would_emulate_is_refused(vecfirst, pytrace):
    """bcast() begins with vpbroadcastb (opcode byte 0x78, "js"): a wildcard skips it, saying why,
    and the traced program computes right; a lone probe on it is an error."""
    t = finished(pytrace("-e", f'uprobe:{vecfirst}:* /comm == "vecfirst"/ {{ @[func] = count(); }}',
                         "-c", f"{vecfirst} 100"))
    assert t.rc == 0, t.stderr
    assert "ok 200" in t.stdout
    assert maps(t.stdout)["@[plain]"] == "100"
    assert f"could not attach probe uprobe:{vecfirst}:bcast, skipping." in t.stderr
    assert "would emulate as a jump, call or push instead of running it" in t.stderr
    t = finished(pytrace("-e", f"uprobe:{vecfirst}:bcast {{ @ = count(); }}"))
    assert t.rc == 1
    assert f"error: cannot attach uprobe:{vecfirst}:bcast: its first instruction is a VEX/EVEX" in t.stderr


def test_the_kernel_breaks_what_the_guard_refuses(vecfirst):
    """Why the guard exists: the same uprobe attached directly makes bcast() compute garbage."""
    prog = bpfsys.prog_load(bpfsys.PROG_TYPES["kprobe"], bytes.fromhex("b7000000000000009500000000000000"),
                            "pytrace_test", links.ATTACH_UPROBE_MULTI)
    try:
        link = links.uprobe_multi(prog, str(vecfirst), [symbol_file_offset(str(vecfirst), "bcast")], [0])
        try:
            out = subprocess.run([str(vecfirst), "100"], capture_output=True, text=True, timeout=60,
                                 env=dict(os.environ, **{MARK: ""})).stdout
        finally:
            os.close(link)
    finally:
        os.close(prog)
    if out.startswith("ok"):
        pytest.skip("this kernel runs it right under a uprobe: the guard (bpf/uprobes.py) may be too careful")
    assert out.startswith("WRONG 100 of 200"), out


# ---- kprobe_multi ---------------------------------------------------------------------------------

def test_kprobe_multi_refused_falls_back_to_a_perf_event_each(capsys):
    """Two kprobes of one function go in through one kprobe_multi link; this kernel (no fprobe,
    no kprobes) refuses the link, and each kprobe then fails on its own, saying why, as before."""
    from kubectl_pytrace.bpf.loader import Loader
    from kubectl_pytrace.bpf.objects import BpfObject, ProgDef
    from kubectl_pytrace.errors import TraceError
    from kubectl_pytrace.kernel import tracefs
    from kubectl_pytrace.lang.probes import ProbeSpec
    from kubectl_pytrace.lang.program import AttachSpec, CProgram
    from kubectl_pytrace.tracer.attach import KPROBE_MULTI, Attacher

    ret0 = bytes.fromhex("b7000000000000009500000000000000")
    loader = Loader(BpfObject({}, {"probe_0": ProgDef(ret0, [])}), tracefs.ensure_tracefs())
    points = [AttachSpec(ProbeSpec("kprobe", func=f), "probe_0", i, optional=True, by_cookie=True)
              for i, f in enumerate(["vfs_read", "vfs_write"])]
    attacher = Attacher(CProgram("", points, {}, {}, ["kprobe:vfs_read", "kprobe:vfs_write"]), loader, lambda p: [p],
                        __import__("sys").stderr)
    try:
        try:
            n = attacher.attach_all()
        except TraceError as e:
            assert str(e) == "no probe could be attached"
            (kind,) = attacher.paths
            assert kind == "perf event (the kernel refused a kprobe_multi link: Operation not supported)"
            err = capsys.readouterr().err
            assert "could not attach probe kprobe:vfs_read, skipping. (cannot attach kprobe:vfs_read: this kernel " \
                   "has no kprobes" in err, err
            return
        assert n == 2 and list(attacher.paths) == [KPROBE_MULTI] and len(loader.links) == 1  # a kernel with fprobe
    finally:
        loader.close()


# ---- function symbols outside code ----------------------------------------------------------------

DATAFUNC_C = r"""
__asm__(".data\n.globl datafunc\n.type datafunc, @function\ndatafunc: .byte 0xc3\n.size datafunc, 1\n.text\n");
__attribute__((noinline)) int codefunc(int x) { return x + 1; }
int main(int argc, char **argv) { return codefunc(argc) == 0; }
"""


@pytest.fixture
def datafunc(tmp_path) -> Path:
    (tmp_path / "datafunc.c").write_text(DATAFUNC_C)
    subprocess.run(["gcc", "-O0", "-o", str(tmp_path / "datafunc"), str(tmp_path / "datafunc.c")], check=True)
    return tmp_path / "datafunc"


def test_a_function_symbol_outside_code_is_refused(datafunc, pytrace):
    """A uprobe goes only where an executable segment maps the file: a function symbol in .data is
    an error alone, skipped in a wildcard (the kernel would take it and never fire)."""
    from kubectl_pytrace.host.elf import ELFError

    with pytest.raises(ELFError, match="outside the file's executable code"):
        symbol_file_offset(str(datafunc), "datafunc")
    assert symbol_file_offset(str(datafunc), "codefunc") > 0
    t = finished(pytrace("-e", f"uprobe:{datafunc}:datafunc {{ @ = count(); }}"))
    assert t.rc == 1 and "outside the file's executable code" in t.stderr, t.stderr
    t = finished(pytrace("-e", f"uprobe:{datafunc}:*func {{ @[probe] = count(); }}", "-c", str(datafunc)))
    assert t.rc == 0, t.stderr
    assert f"could not attach probe uprobe:{datafunc}:datafunc, skipping." in t.stderr
    assert maps(t.stdout) == {f"@[uprobe:{datafunc}:codefunc]": "1"}


# ---- the tracer pod's command -------------------------------------------------------------------

def test_the_tracer_pods_command_ends_a_wide_trace_at_once(wide, tmp_path):
    """`kubectl-pytrace tracer`, as the Job runs it on a node (a whole-node trace here): SIGTERM,
    which the kubelet sends when the plugin stops the trace, to its last record (END's output and
    the maps) within EXIT_BOUND."""
    from kubectl_pytrace import __version__, traceconfig

    cfg = {"config_version": traceconfig.CONFIG_VERSION, "client_version": __version__, "name": "t",
           "filename": "prog.bt", "params": [], "deadline": None, "ns_pids": False, "nodes": {"n1": []}}
    (tmp_path / traceconfig.CONFIG_FILE).write_text(json.dumps(cfg))
    (tmp_path / traceconfig.PROGRAM_FILE).write_text(WIDE_PROGRAM.format(lib=wide.lib))
    with open(tmp_path / "records", "w") as out, open(tmp_path / "stderr", "w") as err:
        p = subprocess.Popen([PYTRACE, "tracer", "--config", str(tmp_path)], stdout=out, stderr=err,
                             env=dict(os.environ, NODE_NAME="n1"))
    try:
        deadline = time.monotonic() + 120
        while '"attached"' not in (tmp_path / "records").read_text():
            assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
            time.sleep(0.05)
        subprocess.run(wide.argv("1"), check=True)
        time.sleep(0.5)
        stop = time.monotonic()
        p.terminate()
        assert p.wait(60) == 0, (tmp_path / "stderr").read_text()
        took = time.monotonic() - stop
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    records = [json.loads(line) for line in (tmp_path / "records").read_text().splitlines()]
    assert took < EXIT_BOUND, f"{took:.1f} s from SIGTERM to the end"
    assert any(r.get("printf") == "end\n" for r in records)
    maps_ = {m["name"]: m for m in next(r for r in records if "maps" in r)["maps"]}
    assert set(maps_) == {"@u", "@s"}, set(maps_)
    u = {key[0]: count for key, count in maps_["@u"]["entries"]}
    assert sum(1 for k in u if re.match(rf"uprobe:{wide.lib}:w\d+(_alias_.)?$", k)) == 302
    assert u[f"uprobe:{wide.lib}:w0004"] == 5
    assert next(iter(records[-1])) == "exit" and records[-1]["exit"] == 0
