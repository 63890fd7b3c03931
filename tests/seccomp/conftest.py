"""Fixtures of the seccomp tests: the Docker engine and the minimal Debian image (tests/containers'
dockerlib, through tests/net/netlab.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "containers"))
sys.path.insert(0, str(TESTS / "net"))

from netlab import docker_base_image  # noqa: E402


@pytest.fixture(scope="session")
def base_image():
    yield from docker_base_image()
