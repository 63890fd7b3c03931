"""The in-kernel container filter with real BPF and real containers, through plain BCC
(scope_probe.py): the predicates TaskFilter describes are the ones the engine emits."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubectl_pytrace.containers import fs as F
from kubectl_pytrace.containers import resolve as C

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.bpf]

PROBE = Path(__file__).with_name("scope_probe.py")


@pytest.fixture(scope="module", autouse=True)
def _bcc():
    if os.geteuid() != 0:
        pytest.skip("loading BPF programs needs root")
    pytest.importorskip("bcc", reason="BCC's Python module (apt-get install python3-bpfcc)")


class Probe:
    def __init__(self, f: C.TaskFilter, server: str, lib: str, cached: bool = False) -> None:
        arg = json.dumps({"filter": dataclasses.asdict(f), "server": server, "lib": lib, "cached": cached})
        self.p = subprocess.Popen([sys.executable, str(PROBE), arg], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if line.strip() != "attached":
            self.p.kill()
            raise AssertionError(f"scope_probe.py did not attach:\n{line}{self.p.stderr.read()[-4000:]}")

    def stop(self) -> dict:
        out, err = self.p.communicate("stop\n", timeout=60)
        assert self.p.returncode == 0, err[-4000:]
        return {k: {int(t): n for t, n in v.items()} for k, v in json.loads(out.splitlines()[-1]).items()}


def _filter(c, which):
    return C.choose_filter(c) if which == "chosen" else C.choose_filter(c, kinds=(which,))


@pytest.mark.parametrize("cached", [False, True], ids=["direct", "cached"])
@pytest.mark.parametrize("which", ["chosen", "pidns"])
def test_only_the_target_container_counts(two_containers, which, cached):
    a, b = two_containers
    c = C.resolve_container(a.id)
    f = _filter(c, which)
    server = F.resolve_path(c, "/app/server")
    lib = F.find_library(c, "libpytracetest")[1]
    probe = Probe(f, server, lib, cached)
    time.sleep(1.0)
    # Processes the containers start after attach: exactly 100 iterations each.
    a.exec("/app/server", "7", "100", "0")
    b.exec("/app/server", "8", "100", "0")
    n = probe.stop()
    print(f.kind, f.reason, n)
    for event in ("uprobe", "usdt", "openat"):
        # Unfiltered, both containers hit the probes (the same image file: one inode).
        assert n[event + "_all"].get(1, 0) > 0 and n[event + "_all"].get(2, 0) > 0, (event, n)
        # Filtered: only A, and nothing at all of B.
        assert n[event].get(1, 0) > 0, (event, n)
        assert n[event].get(2, 0) == 0, (event, n)
        assert n[event].get(7, 0) == 100, (event, n)
        assert n[event].get(8, 0) == 0, (event, n)
        assert n[event + "_all"].get(8, 0) == 100, (event, n)


@pytest.mark.parametrize("cached", [False, True], ids=["direct", "cached"])
def test_a_task_moving_into_the_container_cgroup(two_containers, cached):
    # A host process opens marker 9 fifty times, moves itself into A's cgroup v2 group, and opens
    # it fifty times more: the cgroup filter counts exactly the last fifty (the cached form drops
    # the verdict it had for the task), the pid namespace filter none.
    a, _ = two_containers
    c = C.resolve_container(a.id)
    f = C.choose_filter(c)
    if f.kind != "cgroup":
        pytest.skip(f"this host uses the {f.kind} filter: {f.reason}")
    from kubectl_pytrace.kernel import procfs
    group = os.path.join(procfs.find_cgroup2_mount().mount_point, c.cgroup_v2_path.lstrip("/"))
    Path("/tmp/pytrace-marker-9").touch()
    script = ('i=0; while [ $i -lt 50 ]; do : < /tmp/pytrace-marker-9; i=$((i+1)); done; '
              'echo $$ > "$1/cgroup.procs"; '
              'i=0; while [ $i -lt 50 ]; do : < /tmp/pytrace-marker-9; i=$((i+1)); done')
    server = F.resolve_path(c, "/app/server")
    lib = F.find_library(c, "libpytracetest")[1]
    for g in (f, C.choose_filter(c, kinds=("pidns",))):
        probe = Probe(g, server, lib, cached)
        subprocess.run(["/bin/sh", "-c", script, "sh", group], check=True)
        n = probe.stop()
        assert n["openat_all"].get(9, 0) == 100, n
        assert n["openat"].get(9, 0) == (50 if g.kind == "cgroup" else 0), (g.kind, n)
