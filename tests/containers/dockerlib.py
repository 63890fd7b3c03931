"""Docker for the container tests: the engine (hack/docker.sh), the images (hack/base-image.sh and
tests/workloads/container/Dockerfile) and containers of the workload.

The docker CLI is Debian's /usr/bin/docker (the daemon's version), not another `docker` on PATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]
WORKLOAD_DIR = REPO / "tests" / "workloads" / "container"
DOCKER = "/usr/bin/docker"
BUILDER_PACKAGES = ["gcc", "libc6-dev", "systemtap-sdt-dev"]
LABEL = "org.kubectl-pytrace.test"
# Cold: ~30 s for the base rootfs, ~70 s for the builder's, ~5 s for the image; docker up ~1 s.
SETUP_TIMEOUT = 1200


class DockerError(RuntimeError):
    pass


def run(cmd: List[str], *, timeout: float = 120, check: bool = True, env=None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise DockerError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-4000:]}")
    return p


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    env.pop("DOCKER_HOST", None)
    return run([DOCKER, *args], timeout=timeout, check=check, env=env)


def engine_ready() -> bool:
    return run([str(REPO / "hack/docker.sh"), "status"], check=False).returncode == 0


def engine_up() -> None:
    p = run([str(REPO / "hack/docker.sh"), "up"], timeout=SETUP_TIMEOUT, check=False)
    if p.returncode != 0:
        raise DockerError(f"hack/docker.sh up failed:\n{p.stderr[-4000:]}")


def engine_down() -> None:
    p = run([str(REPO / "hack/docker.sh"), "down"], timeout=300, check=False)
    if p.returncode != 0:
        raise DockerError(f"hack/docker.sh down failed:\n{p.stderr[-4000:]}")


def base_image(*packages: str) -> str:
    p = run([str(REPO / "hack/base-image.sh"), *packages], timeout=SETUP_TIMEOUT, check=False)
    if p.returncode != 0:
        raise DockerError(f"hack/base-image.sh {' '.join(packages)} failed:\n{p.stderr[-4000:]}")
    return p.stdout.strip().splitlines()[-1]


def workload_image() -> str:
    """pytrace-test-workload:<hash of the sources and base images>, built when missing."""
    base = base_image()
    builder = base_image(*BUILDER_PACKAGES)
    h = hashlib.sha256(f"{base}\0{builder}\0".encode())
    for f in sorted(WORKLOAD_DIR.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    tag = f"pytrace-test-workload:{h.hexdigest()[:12]}"
    if docker("image", "inspect", tag, check=False).returncode != 0:
        docker("build", "-q", "--build-arg", f"BASE={base}", "--build-arg", f"BUILDER={builder}",
               "-t", tag, str(WORKLOAD_DIR), timeout=SETUP_TIMEOUT)
    return tag


@dataclass
class RunningContainer:
    name: str
    id: str
    tag: int

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]

    @property
    def pid(self) -> int:
        """The host PID of the container's init process (0 when it is not running)."""
        return int(self.inspect()["State"]["Pid"])

    def exec(self, *cmd: str, detach: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        return docker("exec", *(["-d"] if detach else []), self.name, *cmd, timeout=timeout)

    def logs(self) -> str:
        p = docker("logs", self.name, check=False)
        return p.stdout + p.stderr

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready" in self.logs():
                return
            time.sleep(0.1)
        raise DockerError(f"container {self.name} did not print 'ready' in {timeout}s:\n{self.logs()}")

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False, timeout=60)


def start(image: str, tag: int, *cmd: str, start: bool = True, wait: bool = True) -> RunningContainer:
    """A container of the workload image running `cmd`, or only created when start is False.

    The default command, /app/server TAG 600000 1000, runs one iteration per millisecond for at
    least ten minutes: longer than any test, and containers an interrupted session leaves behind
    stop by themselves."""
    name = f"pytrace-test-{uuid.uuid4().hex[:8]}-{tag}"
    args = list(cmd) or ["/app/server", str(tag), "600000", "1000"]
    verb = ["run", "-d"] if start else ["create"]
    cid = docker(*verb, "--name", name, "--label", f"{LABEL}=1", image, *args).stdout.strip()
    c = RunningContainer(name, cid, tag)
    if start and wait and args[0] == "/app/server":
        c.wait_ready()
    return c
