"""Docker fixtures for the container tests (marker ``docker``).

- ``docker_engine`` (session): ``hack/docker.sh up``; ``hack/docker.sh down`` at the end unless the
  engine was already running before the session or ``PYTRACE_KEEP_DOCKER=1``.
- ``workload_image`` (session): the base images from ``hack/base-image.sh`` (cached, so only the first
  run pays for debootstrap) and the test image built from tests/workloads/container/.
- ``two_containers`` (session): containers A (tag 1) and B (tag 2) running the same /app/server.
- ``new_container`` (per test): a factory for containers a test may stop or restart; removed after.

Skips only when Docker truly cannot run here: not root. A failing set-up is an error.
"""

from __future__ import annotations

import os
import pathlib
from typing import List

import pytest

import dockerlib
from dockerlib import RunningContainer


@pytest.fixture(scope="session")
def docker_engine():
    if os.geteuid() != 0:
        pytest.skip("the Docker engine (hack/docker.sh) needs root")
    was_running = dockerlib.engine_ready()
    dockerlib.engine_up()
    try:
        yield
    finally:
        if not was_running and os.environ.get("PYTRACE_KEEP_DOCKER") != "1":
            dockerlib.engine_down()


@pytest.fixture(scope="session")
def workload_image(docker_engine) -> str:
    return dockerlib.workload_image()


@pytest.fixture(scope="session")
def two_containers(workload_image):
    a = dockerlib.start(workload_image, 1)
    try:
        b = dockerlib.start(workload_image, 2)
        try:
            yield a, b
        finally:
            b.remove()
    finally:
        a.remove()


@pytest.fixture
def new_container(workload_image):
    made: List[RunningContainer] = []

    def make(tag: int, *cmd: str, start: bool = True) -> RunningContainer:
        c = dockerlib.start(workload_image, tag, *cmd, start=start)
        made.append(c)
        return c

    yield make
    for c in made:
        c.remove()


def pytest_collection_modifyitems(config, items):
    # The first Docker test also pays for the engine and a cold build of the images.
    here = pathlib.Path(__file__).parent
    for item in items:
        if (here in pathlib.Path(str(item.fspath)).parents and item.get_closest_marker("docker")
                and item.get_closest_marker("timeout") is None):
            item.add_marker(pytest.mark.timeout(dockerlib.SETUP_TIMEOUT + 600))
