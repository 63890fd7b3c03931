"""Shared test set-up: facility checks behind the markers, and the host workloads.

Markers (pyproject.toml): root, bpf, kprobes, bpftrace, docker, cluster. A test carrying one is
skipped, with the reason, only when this machine really lacks the facility; CI runs as root on a
BPF-capable kernel and runs them all.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")


def _bpf_missing() -> str:
    if os.geteuid() != 0:
        return "needs root (loads BPF programs)"
    if not os.path.exists("/sys/kernel/btf/vmlinux") and not os.path.exists("/sys/fs/bpf"):
        return "this kernel has no BPF support"
    return ""


def _kprobes_missing() -> str:
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(os.path.join(root, "kprobe_events")):
            return ""
    return "this kernel has no kprobes (CONFIG_KPROBES is not set)"


def pytest_collection_modifyitems(config, items):
    reasons = {
        "root": "needs root" if os.geteuid() != 0 else "",
        "bpf": _bpf_missing(),
        "kprobes": _kprobes_missing(),
        "bpftrace": "" if shutil.which("bpftrace") else "bpftrace is not installed (apt-get install bpftrace)",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(scope="session", autouse=True)
def _tracefs_mounted():
    """bpftrace and the tracer both need tracefs, which this VM does not mount at boot."""
    if os.geteuid() == 0 and not os.path.exists("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], capture_output=True)


@pytest.fixture(scope="session")
def host_workloads():
    """{name: path} of the C programs of tests/workloads/host, built with gcc (cached)."""
    path = REPO / "tests" / "workloads" / "host" / "build.py"
    spec = importlib.util.spec_from_file_location("pytrace_host_workloads", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_workloads()


@pytest.fixture(scope="session")
def go_workload():
    """Path of tests/workloads/go's goserver, built with the Go toolchain (cached)."""
    path = REPO / "tests" / "workloads" / "go" / "build.py"
    spec = importlib.util.spec_from_file_location("pytrace_go_workload", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_go()


@pytest.fixture(scope="session", autouse=True)
def _docker_stopped_if_we_started_it():
    """The cluster's image build (hack/images.sh) and the container tests start the Docker engine;
    stop it at the end of the session unless it ran before (or PYTRACE_KEEP_DOCKER=1)."""
    script = REPO / "hack" / "docker.sh"
    was_running = subprocess.run([str(script), "status"], capture_output=True).returncode == 0
    yield
    if not was_running and os.environ.get("PYTRACE_KEEP_DOCKER") != "1" and os.geteuid() == 0:
        subprocess.run([str(script), "down"], capture_output=True)


class TracerProcess:
    """`kubectl-pytrace run --local ARGS` with stdout and stderr in files, so that waiting for it
    waits for the tracer alone: a pipe's end comes only when every process that inherited it is
    gone, and a test reading one would wait for whatever the tracer left running."""

    def __init__(self, tmp: Path, *args: str, env=None, argv0=(PYTRACE,)):
        self.out_path, self.err_path = tmp / f"out.{id(self)}", tmp / f"err.{id(self)}"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen([*argv0, "run", "--local", *args], stdout=out, stderr=err, env=env)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_attached(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(r"^Attached \d+ probes?$", self.stderr, re.M):
            if self.p.poll() is not None or time.monotonic() > deadline:
                self.p.kill()
                raise AssertionError(f"no 'Attached N probes' line; stderr:\n{self.stderr}")
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> int:
        return self.p.wait(timeout=timeout)

    def interrupt(self, timeout: float = 120) -> int:
        """Ctrl-C, and its exit status."""
        self.p.send_signal(signal.SIGINT)
        return self.finish(timeout)


@pytest.fixture
def pytrace(tmp_path):
    """pytrace(*args, env=None) -> a started TracerProcess: kubectl-pytrace run --local *args."""
    return lambda *args, **kw: TracerProcess(tmp_path, *args, **kw)
