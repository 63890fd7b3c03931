"""Container resolution against real Docker containers (no BPF)."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kubectl_pytrace.containers import cgroups
from kubectl_pytrace.kernel import procfs
from kubectl_pytrace.containers import fs as F
from kubectl_pytrace.containers import resolve as C

pytestmark = [pytest.mark.docker, pytest.mark.root]


def _wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_resolve_by_id_forms(two_containers):
    a, b = two_containers
    pid = a.pid
    for text in (a.id, "docker://" + a.id, a.id[:12], a.id[:12].upper(), "containerd://" + a.id[:20]):
        c = C.resolve_container(text)
        assert c.id == a.id
        assert c.runtime == "docker"
        assert c.pid == pid                      # the container's init
        assert pid in c.pids
        assert c.root == f"/proc/{pid}/root"
        assert c.pidns == procfs.ns_id("/proc", pid, "pid")
        assert c.mntns == procfs.ns_id("/proc", pid, "mnt")
        assert c.ns_pid(pid) == 1
    assert C.resolve_container(b.id).pid == b.pid


def test_neighbours_are_apart(two_containers):
    a, b = two_containers
    ca, cb = C.resolve_container(a.id), C.resolve_container(b.id)
    assert not set(ca.pids) & set(cb.pids)
    assert ca.pidns != cb.pidns and ca.mntns != cb.mntns
    fa, fb = C.choose_filter(ca), C.choose_filter(cb)
    assert fa.kind == fb.kind
    assert fa != fb
    # What this host allows: the cgroup filter when runc put the container into a cgroup v2
    # group of its own (runc 1.1 does on hybrid hosts), else the pid namespace.
    own_v2 = a.id in (cgroups.v2_path(cgroups.parse_cgroup_file(Path(f"/proc/{a.pid}/cgroup").read_text())) or "")
    assert fa.kind == ("cgroup" if own_v2 and procfs.find_cgroup2_mount() else "pidns"), fa.reason
    if fa.kind == "cgroup":
        assert ca.cgroup_v2_id == os.stat(f"{procfs.find_cgroup2_mount().mount_point}/docker/{a.id}").st_ino
        assert ca.cgroup_v2_level == 2
    assert fa.pidns_ino == ca.pidns.ino and fa.pidns_dev == ca.pidns.kernel_dev
    print(fa.reason)


def test_pidns_filter_is_available_too(two_containers):
    a, _ = two_containers
    f = C.choose_filter(C.resolve_container(a.id), kinds=("pidns",))
    assert f.kind == "pidns" and "using its own pid namespace" in f.reason
    f = C.choose_filter(C.resolve_container(a.id), kinds=("mntns",))
    assert f.kind == "mntns"


def test_late_process_belongs_to_the_container(two_containers):
    a, _ = two_containers
    before = C.resolve_container(a.id)
    a.exec("/app/server", "5", "0", "1000", detach=True)
    late = _wait_for(lambda: [p for p in C.resolve_container(a.id).pids if p not in before.pids
                              and Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"/app/server\0" + b"5")],
                     what="the exec'd server")[0]
    via_pid = C.resolve_pid(late)
    assert via_pid.id == a.id and via_pid.pid == before.pid
    assert procfs.ns_id("/proc", late, "pid") == before.pidns
    os.kill(late, 15)


def test_resolve_pid(two_containers):
    a, _ = two_containers
    c = C.resolve_pid(a.pid)
    assert c.id == a.id
    me = C.resolve_pid(os.getpid())
    assert me.id is None and C.choose_filter(me).kind == "tgid"


def test_paths_inside(two_containers):
    a, _ = two_containers
    c = C.resolve_container(a.id)
    p = F.resolve_path(c, "/app/server")
    assert p == f"/proc/{c.pid}/root/app/server"
    inside = a.exec("sha256sum", "/app/server").stdout.split()[0]
    assert hashlib.sha256(Path(p).read_bytes()).hexdigest() == inside
    # An absolute symlink inside the container: resolved in it (the host has no /app).
    assert not os.path.exists("/app/server")
    assert F.resolve_path(c, "/usr/local/bin/pytrace-server") == p
    with pytest.raises(C.PathNotInContainer) as e:
        F.resolve_path(c, "/usr/sbin/dockerd")
    assert str(e.value) == f"/usr/sbin/dockerd: no such file in container {a.id[:12]} (docker)"


def test_library_in_the_container(two_containers, new_container):
    a, _ = two_containers
    c = C.resolve_container(a.id)
    want = "/opt/pytrace/lib/libpytracetest.so.1.0.0"
    for name in ("libpytracetest", "pytracetest", "libpytracetest.so.1", "libpytracetest.so"):
        inside, host = F.find_library(c, name)
        assert inside == want, name
        assert host == f"/proc/{c.pid}/root{want}"
    assert F.resolve_binary(c, "libpytracetest") == f"/proc/{c.pid}/root{want}"
    # A container whose processes have not loaded it: found through its own ld.so.cache.
    idle = new_container(3, "sleep", "600")
    ci = C.resolve_container(idle.id)
    assert not any("pytracetest" in m for m in procfs.mapped_files("/proc", ci.pid))
    assert F.find_library(ci, "libpytracetest")[0] == want
    if os.uname().machine == "x86_64":
        assert F.find_library(ci, "libc")[0] == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    with pytest.raises(C.PathNotInContainer, match=r"^library libbcc: not found in container [0-9a-f]{12} \(docker\)"):
        F.find_library(ci, "libbcc")          # the host has it; the container does not


def test_unknown_created_and_stopped(new_container):
    unknown = "0123456789ab" * 5 + "cdef"
    with pytest.raises(C.ContainerNotFound) as e:
        C.resolve_container(unknown)
    assert str(e.value).startswith(f"no running container with ID '{unknown}' on this host")
    created = new_container(4, start=False)
    with pytest.raises(C.NoRunningProcess) as e:
        C.resolve_container(created.id)
    assert str(e.value) == f"container {created.id[:12]} (docker) has no running process"
    done = new_container(5, "/app/server", "5", "3", "0")
    _wait_for(lambda: done.inspect()["State"]["Status"] == "exited", what="the container to exit")
    with pytest.raises(C.NoRunningProcess):
        C.resolve_container("docker://" + done.id[:16])


def test_no_such_pid():
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    with pytest.raises(C.NoSuchPid) as e:
        C.resolve_pid(pid)
    assert str(e.value) == f"no process with PID {pid} (looked in /proc)"


def test_watcher_across_docker_restart(new_container):
    x = new_container(6)
    c = C.resolve_container(x.id)
    f = C.choose_filter(c)
    w = C.FilterWatcher(c, f)
    assert w.poll() is None
    from dockerlib import docker
    docker("restart", "-t", "0", x.name, timeout=60)
    x.wait_ready()
    new = C.choose_filter(C.resolve_container(x.id))
    g = w.poll()
    assert replace(w.current, reason="") == replace(new, reason="")
    if f.kind == "cgroup":
        # A new cgroup, a new id (cgroup ids are never reused).
        assert g is not None and g.cgroup_id == new.cgroup_id != f.cgroup_id
