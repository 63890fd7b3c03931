"""Fixtures of the seccomp tests: the Docker engine and the minimal Debian image (tests/containers'
dockerlib), and a profile recorded once from a running container."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "containers"))

import dockerlib  # noqa: E402


@pytest.fixture(scope="session")
def base_image():
    if os.geteuid() != 0:
        pytest.skip("the Docker engine (hack/docker.sh) needs root")
    was_running = dockerlib.engine_ready()
    dockerlib.engine_up()
    try:
        yield dockerlib.base_image()
    finally:
        if not was_running and os.environ.get("PYTRACE_KEEP_DOCKER") != "1":
            dockerlib.engine_down()
