"""How a trace ends and fails: signals, lost events, verifier and attach errors, headers, cleanup.

Every test runs the real CLI against the real kernel. After each one nothing of ours may be left
(leakcheck.py): no process (tracer, BCC compiler, -c command), no BPF program, map or link, no
uprobe still armed in the private copy of the `calls` workload the test traced.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kubectl_pytrace.lang.program import CodegenOptions
from leakcheck import MARK, OUR_NAMES, armed_uprobes, bpf_objects, holders, marked_pids

REPO = Path(__file__).resolve().parent.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
TRACEFS = Path("/sys/kernel/tracing")

pytestmark = [pytest.mark.root, pytest.mark.bpf]


@pytest.fixture(autouse=True)
def _nothing_left_behind(nothing_left_behind):
    """Every test of this module is checked for leftovers (conftest.py)."""
    yield


@pytest.fixture
def trace(pytrace):
    """trace(*args, env=None, timeout=120) -> the finished TracerProcess (its exit status in .rc)."""
    def run(*args, timeout: float = 120, **kw):
        t = pytrace(*args, **kw)
        t.rc = t.finish(timeout)
        return t
    return run


def wait_for_process(mark: str, text: str, tracer=None, timeout: float = 30) -> None:
    """Until a process of the test whose command line holds `text` runs."""
    deadline = time.monotonic() + timeout
    while not any(text in cmd for cmd in marked_pids(mark).values()):
        alive = tracer is None or tracer.p.poll() is None
        detail = f"; the tracer's stderr:\n{tracer.stderr}" if tracer else ""
        assert alive and time.monotonic() < deadline, f"no process '{text}' seen{detail}"
        time.sleep(0.01)


def test_leak_check_sees_a_live_trace(calls, pytrace, nothing_left_behind):
    """Each check of nothing_left_behind finds what a running trace has: it can fail."""
    t = pytrace("-e", f"uprobe:{calls}:work {{ @c = count(); }} tracepoint:syscalls:sys_enter_getppid {{ @g = 1; }}")
    t.wait_attached()
    try:
        assert t.p.pid in marked_pids(nothing_left_behind.mark), "the tracer does not carry the mark"
        assert armed_uprobes(calls), f"no breakpoint armed in {calls} while tracing it"
        held = holders()
        mine = {obj: name for obj, name in bpf_objects().items() if t.p.pid in held.get(obj, ())}
        assert {o[0] for o in mine} >= {"prog", "map"}, f"the tracer holds no BPF program or map: {mine}"
        assert all(OUR_NAMES.match(name) for (kind, _), name in mine.items() if kind != "link"), mine
        assert nothing_left_behind.problems_now(), "a live trace looks like nothing left behind"
    finally:
        t.interrupt()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_trace_runs_end_and_prints_maps(sig, calls, pytrace):
    t = pytrace("-e", f'uprobe:{calls}:work {{ @c = count(); }} END {{ printf("end\\n"); }}')
    t.wait_attached()
    subprocess.run([str(calls), "25"], check=True)
    time.sleep(0.2)
    t.p.send_signal(sig)
    assert t.finish() == 0, t.stderr
    assert t.stdout == "end\n\n\n@c: 25\n"


def test_second_ctrl_c_still_cleans_up(calls, pytrace):
    t = pytrace("-e", f"uprobe:{calls}:work {{ @c = count(); }}", "-c", f"{calls} 10 30000")
    t.wait_attached()
    t.p.send_signal(signal.SIGINT)
    t.p.send_signal(signal.SIGINT)
    assert t.finish() in (0, 130), t.stderr


def test_sigkill_of_the_tracer(calls, pytrace):
    """The kernel detaches what a killed tracer attached (every attachment is a descriptor)."""
    t = pytrace("-e", f"uprobe:{calls}:work {{ @c = count(); }} profile:hz:99 {{ @p = count(); }}")
    t.wait_attached()
    t.p.kill()
    t.finish()


def test_sigkill_of_the_tracer_while_bcc_compiles(calls, pytrace, tmp_path):
    """Killed before anything is loaded, with the BCC compiler process running: it ends too."""
    t = pytrace("-e", f"uprobe:{calls}:work {{ @c = count(); }}",
               env=dict(os.environ, PYTRACE_CACHE_DIR=str(tmp_path / "cache")))
    wait_for_process(os.environ[MARK], "-m kubectl_pytrace.bpf.bcc_compile", t)  # not the test's tmp_path
    t.p.kill()
    t.finish()


def test_sigkill_of_the_tracer_ends_its_command(calls, pytrace, nothing_left_behind):
    """The -c command dies with the tracer, even when the tracer is SIGKILLed (as bpftrace's -c
    child does): it asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG)."""
    t = pytrace("-e", f"uprobe:{calls}:work {{ @c = count(); }}", "-c", f"{calls} 10 30000")
    t.wait_attached()
    wait_for_process(nothing_left_behind.mark, f"{calls} 10 30000")  # started after "Attached"
    t.p.kill()
    t.finish()
    problems = nothing_left_behind.leftovers()
    nothing_left_behind.kill_leftovers()
    assert not problems, problems


def test_deadline_stops_a_command_that_runs_longer(trace):
    t = trace("--deadline", "500ms", "-c", "sleep 30", "-e", 'BEGIN { printf("go\\n"); } END { printf("end\\n"); }')
    assert t.rc == 0, t.stderr
    assert t.stdout == "go\nend\n\n\n"


def test_failure_while_attaching_detaches_what_was_attached(calls, trace):
    """The uprobe is attached (program order) before the interval's program is refused."""
    t = trace("-c", f"{calls} 10", "-e", f"uprobe:{calls}:work {{ @c = count(); }} "
              "interval:s:1 { $i = 0; while ($i < 1000000) { $i += 1 + rand % 2; } }")
    assert t.rc == 1, t.stderr
    assert "error: cannot attach interval:s:1: the BPF verifier rejected the program" in t.stderr


def lost_reported(stderr: str) -> int:
    return sum(int(x) for x in re.findall(r"^Lost (\d+) events$", stderr, re.M))


def test_lost_events_are_counted_and_reported(calls, trace):
    """A one-page ring buffer cannot hold a burst: what is lost is counted, never silent."""
    n = 20000
    t = trace("-e", f'uprobe:{calls}:work {{ printf("%d\\n", arg0); }}', "-c", f"{calls} {n}",
              env=dict(os.environ, PYTRACE_RINGBUF_PAGES="1"))
    assert t.rc == 0, t.stderr
    printed = len([line for line in t.stdout.splitlines() if line.strip()])
    assert lost_reported(t.stderr) > 0, "a 4 KiB ring buffer kept up with 20000 events?"
    assert printed + lost_reported(t.stderr) == n


def test_no_event_lost_in_three_300k_runs(calls, trace):
    """Three back-to-back runs of 300,000 uprobe printf()s in one trace: every event arrives.

    21.6 MB of records (24 bytes each) pass through the default 16 MiB ring, so a consumer
    position the kernel ever reads wrong (0) shows as lost events. Measured here: 0 lost in every
    run since the fix (before: 1-18 of 900,000); bpftrace 0.17 loses none either. No tolerance."""
    n = 300_000
    assert 3 * n * 24 > CodegenOptions.ringbuf_pages * 4096, "the runs no longer wrap the ring"
    t = trace("-e", f'uprobe:{calls}:work {{ printf("%d\\n", arg0); }}',
              "-c", f"sh -c '{calls} {n}; {calls} {n}; {calls} {n}'", timeout=300)
    assert t.rc == 0, t.stderr
    assert lost_reported(t.stderr) == 0, t.stderr
    values = sorted(int(x) for x in t.stdout.split())
    assert values == sorted(list(range(n)) * 3), f"{3 * n - len(values)} events missing, none reported lost"


def test_lost_events_in_json(calls, trace):
    t = trace("-o", "json", "-e", f'uprobe:{calls}:work {{ printf("%d\\n", arg0); }}', "-c", f"{calls} 20000",
              env=dict(os.environ, PYTRACE_RINGBUF_PAGES="1"))
    assert t.rc == 0, t.stderr
    assert re.search(r'^\{"type": "lost_events", "count": \d+, "data": \{"events": \d+\}\}$', t.stdout, re.M)


def test_verifier_rejection_names_probe_and_shows_log():
    p = subprocess.run([PYTRACE, "run", "--local", "-e",
                        "BEGIN { $i = 0; while ($i < 1000000) { $i += 1 + rand % 2; } exit(); }"],
                       capture_output=True, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 1
    assert "error: cannot attach begin: the BPF verifier rejected the program" in err
    assert "processed 1000001 insns" in err
    assert "Attached" not in err


def test_verifier_rejection_names_probe_and_shows_log(trace):
    t = trace("-e", "BEGIN { $i = 0; while ($i < 1000000) { $i += 1 + rand % 2; } exit(); }")
    assert t.rc == 1
    assert "error: cannot attach begin: the BPF verifier rejected the program" in t.stderr
    assert "processed 1000001 insns" in t.stderr
    assert "Attached" not in t.stderr


@pytest.mark.parametrize("setting, message", [
    ({"BCC_KERNEL_SOURCE": "/nonexistent/pytrace-headers"},
     "BCC_KERNEL_SOURCE=/nonexistent/pytrace-headers: no such directory"),
    ({"PYTRACE_RINGBUF_PAGES": "3"}, "PYTRACE_RINGBUF_PAGES=3: must be a power of two"),
], ids=["missing_headers", "bad_ringbuf_pages"])
def test_bad_setting_named(setting, message, trace):
    t = trace("-e", "BEGIN { exit(); }", env=dict(os.environ, **setting))
    assert t.rc == 1
    assert message in t.stderr


def test_dump_c_loads_nothing(trace):
    t = trace("--dump", "c", "-e", "tracepoint:syscalls:sys_enter_openat { @[str(args->filename)] = count(); }")
    assert t.rc == 0
    assert "int probe_0(void *ctx)" in t.stdout
    assert "Attached" not in t.stderr


def _kprobes_available() -> bool:
    return (TRACEFS / "kprobe_events").exists()


@pytest.mark.skipif(_kprobes_available(), reason="this kernel has kprobes: see test_kprobe_attaches")
def test_kprobe_without_kprobes_says_why(trace):
    """Here CONFIG_KPROBES is off and fentry is refused: one clear error, nothing attached."""
    t = trace("-e", "kprobe:do_nanosleep { @ = count(); }")
    assert t.rc == 1
    assert re.search(r"^error: cannot attach kprobe:do_nanosleep: this kernel has no kprobes \(CONFIG_KPROBES "
                     r"is not set\) and the fentry fallback failed: .+$", t.stderr, re.M), t.stderr
    assert "Attached" not in t.stderr


@pytest.mark.kprobes
def test_kprobe_attaches(trace):
    t = trace("-c", "sleep 0.2", "-e",
              "kprobe:do_nanosleep /pid == cpid/ { @ = count(); } "
              "kretprobe:do_nanosleep /pid == cpid/ { @r = count(); }")
    assert t.rc == 0, t.stderr
    assert re.search(r"^@: [1-9]\d*$", t.stdout, re.M)
    assert re.search(r"^@r: [1-9]\d*$", t.stdout, re.M)


def test_not_root_is_told_to_use_sudo(trace):
    t = trace("-e", "BEGIN { exit(); }",
              argv0=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTRACE))
    assert t.rc == 1
    assert "tracing needs root" in t.stderr
