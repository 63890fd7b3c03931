"""How a trace ends and fails: signals, lost events, verifier and attach errors, headers, cleanup.

Every test runs the real CLI against the real kernel. After each trace nothing of ours may be left
attached: no uprobe/kprobe event in tracefs and no BPF program held by the (finished) process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
TRACEFS = Path("/sys/kernel/tracing")

pytestmark = [pytest.mark.root, pytest.mark.bpf]


def probe_events() -> str:
    out = ""
    for name in ("uprobe_events", "kprobe_events"):
        f = TRACEFS / name
        if f.exists():
            out += f.read_text()
    return out


@pytest.fixture(autouse=True)
def nothing_left_behind():
    before = probe_events()
    yield
    assert probe_events() == before, "probe events left in tracefs"


def start(program: str, *args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([PYTRACE, "run", "--local", "-e", program, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def wait_attached(p: subprocess.Popen, timeout: float = 30) -> str:
    """Reads stderr until "Attached N probes"; returns what was read."""
    seen = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(p.stderr.fileno(), False)
    while time.monotonic() < deadline:
        chunk = p.stderr.read() or b""
        seen += chunk
        if re.search(rb"^Attached \d+ probes?$", seen, re.M):
            os.set_blocking(p.stderr.fileno(), True)
            return seen.decode()
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    raise AssertionError(f"no 'Attached' line; stderr: {seen.decode()}")


def bpf_programs_of(pid: int) -> list:
    """Names of BPF programs the process holds (from /proc/PID/fdinfo)."""
    names = []
    fd_dir = Path(f"/proc/{pid}/fd")
    if not fd_dir.exists():
        return names
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == "anon_inode:bpf-prog":
                names.append(fd.name)
        except OSError:
            pass
    return names


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_trace_runs_end_and_prints_maps(sig, host_workloads):
    p = start(f"uprobe:{host_workloads['calls']}:work {{ @c = count(); }} END {{ printf(\"end\\n\"); }}")
    wait_attached(p)
    assert bpf_programs_of(p.pid), "the tracer holds no BPF program while tracing"
    subprocess.run([str(host_workloads["calls"]), "25"], check=True)
    time.sleep(0.2)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    assert out.decode() == "end\n\n\n@c: 25\n"


def test_second_ctrl_c_still_cleans_up(host_workloads):
    p = start(f"uprobe:{host_workloads['calls']}:work {{ @c = count(); }}")
    wait_attached(p)
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode in (0, 130)


def test_sigkill_leaves_no_probe_event(host_workloads):
    # uprobes are attached through the uprobe PMU: the kernel removes them with the last fd
    p = start(f"uprobe:{host_workloads['calls']}:work {{ @c = count(); }}")
    wait_attached(p)
    p.kill()
    p.communicate(timeout=30)
    assert "calls" not in probe_events()


def test_deadline_stops_a_command_that_runs_longer():
    p = subprocess.run([PYTRACE, "run", "--local", "--deadline", "500ms", "-c", "sleep 30", "-e",
                        "BEGIN { printf(\"go\\n\"); } END { printf(\"end\\n\"); }"],
                       capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode() == "go\nend\n\n\n"


def test_lost_events_are_counted_and_reported(host_workloads):
    """A one-page ring buffer cannot hold a burst: what is lost is counted, never silent."""
    n = 20000
    env = dict(os.environ, PYTRACE_RINGBUF_PAGES="1")
    p = subprocess.run([PYTRACE, "run", "--local", "-e",
                        f"uprobe:{host_workloads['calls']}:work {{ printf(\"%d\\n\", arg0); }}",
                        "-c", f"{host_workloads['calls']} {n}"], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    printed = len([line for line in p.stdout.decode().splitlines() if line.strip()])
    lost = sum(int(x) for x in re.findall(r"^Lost (\d+) events$", p.stderr.decode(), re.M))
    assert lost > 0, "a 4 KiB ring buffer kept up with 20000 events?"
    assert printed + lost == n


def test_lost_events_in_json(host_workloads):
    env = dict(os.environ, PYTRACE_RINGBUF_PAGES="1")
    p = subprocess.run([PYTRACE, "run", "--local", "-o", "json", "-e",
                        f"uprobe:{host_workloads['calls']}:work {{ printf(\"%d\\n\", arg0); }}",
                        "-c", f"{host_workloads['calls']} 20000"], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0
    assert re.search(rb'^\{"type": "lost_events", "count": \d+, "data": \{"events": \d+\}\}$', p.stdout, re.M)


def test_verifier_rejection_names_probe_and_shows_log():
    p = subprocess.run([PYTRACE, "run", "--local", "-e",
                        "BEGIN { $i = 0; while ($i < 1000000) { $i += 1 + rand % 2; } exit(); }"],
                       capture_output=True, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 1
    assert "error: cannot attach begin: the BPF verifier rejected the program" in err
    assert "processed 1000001 insns" in err
    assert "Attached" not in err


def test_missing_headers_named():
    env = dict(os.environ, BCC_KERNEL_SOURCE="/nonexistent/pytrace-headers")
    p = subprocess.run([PYTRACE, "run", "--local", "-e", "BEGIN { exit(); }"], capture_output=True, env=env,
                       timeout=60)
    assert p.returncode == 1
    assert "BCC_KERNEL_SOURCE=/nonexistent/pytrace-headers: no such directory" in p.stderr.decode()


def test_dump_c_loads_nothing():
    p = subprocess.run([PYTRACE, "run", "--local", "--dump", "c", "-e",
                        'tracepoint:syscalls:sys_enter_openat { @[str(args->filename)] = count(); }'],
                       capture_output=True, timeout=60)
    assert p.returncode == 0
    assert "int probe_0(void *ctx)" in p.stdout.decode()
    assert "Attached" not in p.stderr.decode()


def test_bad_ringbuf_setting_rejected():
    env = dict(os.environ, PYTRACE_RINGBUF_PAGES="3")
    p = subprocess.run([PYTRACE, "run", "--local", "-e", "BEGIN { exit(); }"], capture_output=True, env=env)
    assert p.returncode == 1
    assert "PYTRACE_RINGBUF_PAGES=3: must be a power of two" in p.stderr.decode()


def _kprobes_available() -> bool:
    return (TRACEFS / "kprobe_events").exists()


@pytest.mark.skipif(_kprobes_available(), reason="this kernel has kprobes: see test_kprobe_attaches")
def test_kprobe_without_kprobes_says_why():
    """Here CONFIG_KPROBES is off and fentry is refused: one clear error, nothing attached."""
    p = subprocess.run([PYTRACE, "run", "--local", "-e", "kprobe:do_nanosleep { @ = count(); }"],
                       capture_output=True, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 1
    assert re.search(r"^error: cannot attach kprobe:do_nanosleep: this kernel has no kprobes \(CONFIG_KPROBES "
                     r"is not set\) and the fentry fallback failed: .+$", err, re.M), err
    assert "Attached" not in err


@pytest.mark.kprobes
def test_kprobe_attaches():
    p = subprocess.run([PYTRACE, "run", "--local", "-c", "sleep 0.2", "-e",
                        "kprobe:do_nanosleep /pid == cpid/ { @ = count(); } kretprobe:do_nanosleep /pid == cpid/ { @r = count(); }"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert re.search(r"^@: [1-9]\d*$", p.stdout.decode(), re.M)
    assert re.search(r"^@r: [1-9]\d*$", p.stdout.decode(), re.M)


def test_not_root_is_told_to_use_sudo(tmp_path):
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTRACE, "run", "--local",
                        "-e", "BEGIN { exit(); }"], capture_output=True, timeout=60)
    assert p.returncode == 1
    assert "tracing needs root" in p.stderr.decode()
