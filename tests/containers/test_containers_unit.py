"""Container resolution over fake /proc trees: every runtime and cgroup layout, IDs, PIDs, filters."""

from __future__ import annotations

import os

import pytest

from kubectl_pytrace.containers import cgroups
from kubectl_pytrace.kernel import procfs
from kubectl_pytrace.containers import resolve as C
from kubectl_pytrace.kernel.procfs import NsId

from fakeproc import FakeHost, cid

UID = "0d5d6c2a-7f3e-4b8e-9a61-2f7c3c1e4b10"
UID_ = UID.replace("-", "_")
V1_CONTROLLERS = ["12:memory", "11:pids", "4:cpu,cpuacct", "1:name=systemd"]


def v1(path: str):
    return [f"{h}:{path}" for h in V1_CONTROLLERS]


# (name, cgroup lines of a container process for ID x, runtime, driver, has own v2 group)
LAYOUTS = [
    # Docker, cgroupfs driver, cgroup v1 only:            12:memory:/docker/<id>
    ("docker-cgroupfs-v1", lambda x: v1(f"/docker/{x}"), "docker", "cgroupfs", False),
    # Docker, cgroupfs, hybrid, runc not in the unified hierarchy (every container in 0::/)
    ("docker-cgroupfs-hybrid-shared", lambda x: v1(f"/docker/{x}") + ["0::/"], "docker", "cgroupfs", False),
    # Docker, cgroupfs, hybrid, runc 1.1 joining the unified hierarchy:   0::/docker/<id>
    ("docker-cgroupfs-hybrid-own", lambda x: v1(f"/docker/{x}") + [f"0::/docker/{x}"], "docker", "cgroupfs", True),
    # Docker, cgroupfs, cgroup v2:                        0::/docker/<id>
    ("docker-cgroupfs-v2", lambda x: [f"0::/docker/{x}"], "docker", "cgroupfs", True),
    # Docker, systemd driver:                             0::/system.slice/docker-<id>.scope
    ("docker-systemd-v2", lambda x: [f"0::/system.slice/docker-{x}.scope"], "docker", "systemd", True),
    ("docker-systemd-v1", lambda x: v1(f"/system.slice/docker-{x}.scope"), "docker", "systemd", False),
    # containerd outside Kubernetes (ctr/nerdctl):        0::/default/<id>
    ("containerd-ctr-v2", lambda x: [f"0::/default/{x}"], "containerd", "cgroupfs", True),
    ("containerd-ctr-v1", lambda x: v1(f"/default/{x}"), "containerd", "cgroupfs", False),
    # Kubernetes, cgroupfs driver:                        /kubepods/burstable/pod<uid>/<id>
    ("k8s-cgroupfs-burstable-v1", lambda x: v1(f"/kubepods/burstable/pod{UID}/{x}"), "kubernetes", "cgroupfs", False),
    ("k8s-cgroupfs-besteffort-v2", lambda x: [f"0::/kubepods/besteffort/pod{UID}/{x}"], "kubernetes", "cgroupfs", True),
    ("k8s-cgroupfs-guaranteed-v2", lambda x: [f"0::/kubepods/pod{UID}/{x}"], "kubernetes", "cgroupfs", True),
    # Kubernetes + containerd, systemd driver:            .../kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
    ("k8s-containerd-systemd-v2",
     lambda x: [f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{x}.scope"],
     "containerd", "systemd", True),
    ("k8s-containerd-systemd-v1",
     lambda x: v1(f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{x}.scope"),
     "containerd", "systemd", False),
    # Kubernetes + Docker, systemd driver:                .../docker-<id>.scope
    ("k8s-docker-systemd-v2",
     lambda x: [f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{x}.scope"],
     "docker", "systemd", True),
    # Kubernetes + CRI-O, systemd driver:                 .../crio-<id>.scope
    ("k8s-crio-systemd-v2",
     lambda x: [f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{x}.scope"],
     "cri-o", "systemd", True),
    ("k8s-crio-systemd-v1",
     lambda x: v1(f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{x}.scope"),
     "cri-o", "systemd", False),
    # Kubernetes + CRI-O, cgroupfs driver:                /kubepods/burstable/pod<uid>/crio-<id>
    ("k8s-crio-cgroupfs-v1", lambda x: v1(f"/kubepods/burstable/pod{UID}/crio-{x}"), "cri-o", "cgroupfs", False),
    # Podman:                                             0::/machine.slice/libpod-<id>.scope
    ("podman-systemd-v2", lambda x: [f"0::/machine.slice/libpod-{x}.scope"], "podman", "systemd", True),
    ("podman-cgroupfs-v2", lambda x: [f"0::/libpod_parent/libpod-{x}"], "podman", "cgroupfs", True),
]


def build(tmp_path, layout, *, neighbour=True, host_process=True):
    """A host with container A (PIDs 100, 101), neighbour B (PID 200) of the same layout, and a host
    process (PID 300)."""
    _, lines, _, _, _ = layout
    h = FakeHost(tmp_path)
    a, b = cid("aaaa"), cid("bbbb")
    h.add(100, lines(a), pidns="pid-a", mntns="mnt-a", nspid=[100, 1], root=h.rootfs("a"))
    h.add(101, lines(a), pidns="pid-a", mntns="mnt-a", nspid=[101, 7], root=h.rootfs("a"))
    if neighbour:
        h.add(200, lines(b), pidns="pid-b", mntns="mnt-b", nspid=[200, 1], root=h.rootfs("b"))
    if host_process:
        h.add(300, ["12:memory:/user.slice", "1:name=systemd:/user.slice", "0::/user.slice"])
    return h, a, b


@pytest.mark.parametrize("layout", LAYOUTS, ids=[l[0] for l in LAYOUTS])
def test_layouts(tmp_path, layout):
    name, lines, runtime, driver, own_v2 = layout
    h, a, b = build(tmp_path, layout)
    c = C.resolve_container(a, proc_root=str(h.proc), host_root=str(h.host_root), cgroup2_mount=h.mount)
    assert (c.id, c.runtime, c.cgroup_driver) == (a, runtime, driver)
    assert c.pids == (100, 101) and c.pid == 100
    assert c.pidns == NsId(os.stat(h.ns("pid-a")).st_dev, h.ns_ino("pid-a"))
    assert c.mntns.ino == h.ns_ino("mnt-a")
    assert c.root == os.path.join(str(h.proc), "100", "root")
    f = C.choose_filter(c)
    assert f.pidns_ino == h.ns_ino("pid-a")
    if own_v2:
        v2 = cgroups.v2_path(cgroups.parse_cgroup_file("\n".join(lines(a))))
        assert c.cgroup_v2_id == h.cgroup_ino(v2)
        assert c.cgroup_v2_level == cgroups.cgroup_level(v2)
        assert (f.kind, f.cgroup_id, f.cgroup_level) == ("cgroup", c.cgroup_v2_id, c.cgroup_v2_level)
        assert f"own cgroup v2 group {v2}" in f.reason
    else:
        assert c.cgroup_v2_id is None
        assert f.kind == "pidns"
        dev = os.stat(h.ns("pid-a")).st_dev
        assert f.pidns_dev == (os.major(dev) << 20) | os.minor(dev)
        assert "using its own pid namespace" in f.reason
        assert f.reason.startswith("cgroup v1") or f.reason.startswith("cgroup v1+v2")
    # The neighbour resolves to itself, with a different filter.
    cb = C.resolve_container(b, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert cb.pids == (200,)
    fb = C.choose_filter(cb)
    assert fb.kind == f.kind and fb != f


def test_layout_reasons_on_v1(tmp_path):
    h, a, _ = build(tmp_path, LAYOUTS[0])
    f = C.choose_filter(C.resolve_container(a, proc_root=str(h.proc), cgroup2_mount=h.mount))
    assert f.reason == (
        "cgroup v1, docker, cgroupfs driver: no cgroup filter: its processes are in no cgroup v2 "
        f"group (cgroup v1 only); using its own pid namespace (dev {f.pidns_dev}, inode {f.pidns_ino})")
    h2, a2, _ = build(tmp_path / "shared", LAYOUTS[1])
    f2 = C.choose_filter(C.resolve_container(a2, proc_root=str(h2.proc), cgroup2_mount=h2.mount))
    assert f2.kind == "pidns"
    assert "no cgroup filter: its cgroup v2 group / is not its own" in f2.reason


def test_cgroup_lines_parse():
    lines = cgroups.parse_cgroup_file("12:memory:/docker/x\n1:name=systemd:/a:b\n0::/\ngarbage\n\n")
    assert [(l.hierarchy, l.controllers, l.path) for l in lines] == [
        (12, ("memory",), "/docker/x"), (1, ("name=systemd",), "/a:b"), (0, (), "/")]
    assert cgroups.v2_path(lines) == "/"
    assert lines[2].is_v2 and not lines[0].is_v2


def test_conmon_is_not_the_container(tmp_path):
    h = FakeHost(tmp_path)
    x = cid("c0c0")
    pod = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
    h.add(50, [f"0::{pod}/crio-conmon-{x}.scope"], name="conmon")
    h.add(60, [f"0::{pod}/crio-{x}.scope"], pidns="p", mntns="m", nspid=[60, 1])
    c = C.resolve_container("cri-o://" + x, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert c.pids == (60,) and c.runtime == "cri-o"


def test_nested_containers(tmp_path):
    # Docker in Docker: the inner container's processes are also in the outer one.
    h = FakeHost(tmp_path)
    outer, inner = cid("0a0a"), cid("1b1b")
    h.add(10, [f"0::/docker/{outer}"], pidns="po", mntns="mo", nspid=[10, 1])
    h.add(20, [f"0::/docker/{outer}/docker/{inner}"], pidns="pi", mntns="mi", nspid=[20, 30, 1])
    assert cgroups.containers_in_path(f"/docker/{outer}/docker/{inner}") == [
        cgroups.ContainerRef(outer, "docker", "cgroupfs"), cgroups.ContainerRef(inner, "docker", "cgroupfs")]
    co = C.resolve_container(outer, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert co.pids == (10, 20) and co.pid == 10
    ci = C.resolve_container(inner, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert ci.pids == (20,) and ci.cgroup_v2_level == 4
    assert C.resolve_pid(20, proc_root=str(h.proc), cgroup2_mount=h.mount).id == inner


def test_runtime_hint_for_kubernetes_cgroupfs(tmp_path):
    h, a, _ = build(tmp_path, LAYOUTS[9])       # /kubepods/besteffort/pod<uid>/<id>
    for prefix, runtime in (("", "kubernetes"), ("containerd://", "containerd"), ("docker://", "docker"),
                            ("cri-o://", "cri-o"), ("crio://", "cri-o")):
        c = C.resolve_container(prefix + a, proc_root=str(h.proc), cgroup2_mount=h.mount)
        assert c.runtime == runtime


# ------------------------------------------------------------------------------------------------
# IDs

@pytest.mark.parametrize("text", [
    "aaaa0123456789abcdef", "AAAA0123456789ABCDEF", "docker://aaaa01234567", " containerd://aaaa0123456789ab ",
    "cri-o://" + cid("aaaa"), cid("aaaa")])
def test_id_forms(tmp_path, text):
    h, a, _ = build(tmp_path, LAYOUTS[3])
    assert C.resolve_container(text, proc_root=str(h.proc), cgroup2_mount=h.mount).id == a


@pytest.mark.parametrize("text,message", [
    ("aaaa0123", "container ID 'aaaa0123' is too short: give at least 12 hex digits"),
    ("docker://", "invalid container ID 'docker://': expected hex digits, optionally after docker://, containerd:// or cri-o://"),
    ("nginx", "invalid container ID 'nginx': expected hex digits, optionally after docker://, containerd:// or cri-o://"),
    ("rkt://aaaa0123456789ab", "invalid container ID 'rkt://aaaa0123456789ab': unknown runtime 'rkt://' (known: docker://, containerd://, cri-o://)"),
    ("a" * 65, f"invalid container ID '{'a' * 65}': longer than 64 hex digits"),
])
def test_invalid_ids(tmp_path, text, message):
    h, _, _ = build(tmp_path, LAYOUTS[3])
    with pytest.raises(C.InvalidContainerId) as e:
        C.resolve_container(text, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert str(e.value) == message


def test_ambiguous_prefix(tmp_path):
    h = FakeHost(tmp_path)
    x, y = cid("abcdef012345" + "1"), cid("abcdef012345" + "2")
    h.add(10, [f"0::/docker/{x}"], pidns="p1")
    h.add(11, [f"0::/docker/{y}"], pidns="p2")
    with pytest.raises(C.AmbiguousContainerId) as e:
        C.resolve_container("abcdef012345", proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert str(e.value) == ("container ID 'abcdef012345' is ambiguous: it starts 2 running containers "
                            "(abcdef012345, abcdef012345); give more digits")
    assert C.resolve_container("abcdef0123452", proc_root=str(h.proc), cgroup2_mount=h.mount).id == y


def test_unknown_and_stopped(tmp_path):
    h, _, _ = build(tmp_path, LAYOUTS[3])
    unknown = cid("dddd")
    with pytest.raises(C.ContainerNotFound) as e:
        C.resolve_container(unknown, proc_root=str(h.proc), host_root=str(h.host_root), cgroup2_mount=h.mount)
    assert str(e.value) == (f"no running container with ID '{unknown}' on this host "
                            f"(no process in {h.proc} is in a cgroup named after it)")
    # Docker knows it (stopped): its state directory exists but no process is in its cgroup.
    (h.host_root / "var/lib/docker/containers" / unknown).mkdir(parents=True)
    with pytest.raises(C.NoRunningProcess) as e:
        C.resolve_container(unknown[:12], proc_root=str(h.proc), host_root=str(h.host_root), cgroup2_mount=h.mount)
    assert str(e.value) == "container dddd01234567 (docker) has no running process"
    # containerd's task directory (created, not started).
    other = cid("eeee")
    (h.host_root / "run/containerd/io.containerd.runtime.v2.task/k8s.io" / other).mkdir(parents=True)
    with pytest.raises(C.NoRunningProcess, match=r"container eeee01234567 \(containerd\) has no running process"):
        C.resolve_container(other, proc_root=str(h.proc), host_root=str(h.host_root), cgroup2_mount=h.mount)
    assert issubclass(C.NoRunningProcess, C.ContainerError)


def test_default_proc_root(monkeypatch, tmp_path):
    h, a, _ = build(tmp_path, LAYOUTS[3])
    monkeypatch.setenv("HOST_PROC", str(h.proc))
    assert procfs.default_proc_root() == str(h.proc)
    assert C.resolve_container(a, cgroup2_mount=h.mount).pids == (100, 101)
    monkeypatch.delenv("HOST_PROC")
    assert procfs.default_proc_root() == "/proc"


# ------------------------------------------------------------------------------------------------
# --pid

def test_pid_in_container(tmp_path):
    h, a, _ = build(tmp_path, LAYOUTS[3])
    c = C.resolve_pid(101, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert c.id == a and c.pids == (100, 101) and c.pid == 100
    assert c.ns_pid(101) == 7


def test_pid_on_host(tmp_path):
    h, _, _ = build(tmp_path, LAYOUTS[3])
    c = C.resolve_pid(300, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert (c.id, c.runtime, c.pids, c.pid, c.describe()) == (None, "host", (300,), 300, "process 300 (host)")
    f = C.choose_filter(c)
    assert (f.kind, f.tgid, f.pidns_ino) == ("tgid", 300, 0)
    assert f.reason == "PID 300 is in no container: only that process is traced"


def test_no_such_pid(tmp_path):
    h, _, _ = build(tmp_path, LAYOUTS[3])
    with pytest.raises(C.NoSuchPid) as e:
        C.resolve_pid(4242, proc_root=str(h.proc))
    assert str(e.value) == f"no process with PID 4242 (looked in {h.proc})"
    with pytest.raises(C.NoSuchPid):
        C.resolve_pid(0, proc_root=str(h.proc))


# ------------------------------------------------------------------------------------------------
# Filter choice beyond the layouts

def test_cgroup_namespace_paths_fall_back(tmp_path):
    # A tracer in a private cgroup namespace sees "/.." paths: no cgroup id, pid namespace instead.
    h = FakeHost(tmp_path)
    x = cid("9999")
    h.add(10, [f"0::/../../kubepods/besteffort/pod{UID}/{x}"], pidns="p", mntns="m", nspid=[10, 1])
    c = C.resolve_container(x, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert c.cgroup_v2_id is None
    f = C.choose_filter(c)
    assert f.kind == "pidns"
    assert "is outside the tracer's cgroup namespace" in f.reason


def test_level_unknown_in_other_cgroup_namespace(tmp_path):
    # The tracer's cgroup namespace is not the host's: ids are exact, levels unknown.
    h = FakeHost(tmp_path)
    h.add(2, ["0::/"], name="kthreadd", ppid=0, cgroupns="host-cgroup")
    x = cid("8888")
    h.add(10, [f"0::/docker/{x}"], pidns="p", mntns="m")
    c = C.resolve_container(x, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert c.cgroup_v2_id == h.cgroup_ino(f"/docker/{x}") and c.cgroup_v2_level is None
    f = C.choose_filter(c)
    assert (f.kind, f.cgroup_level) == ("cgroup", -1)


def test_level_unknown_inside_a_kind_node(tmp_path):
    # A tracer in a kind node: its /host/proc is the node's (PID 1 the node's systemd, no kthreadd)
    # and it shares the node's cgroup namespace, which starts at the node container's cgroup
    # (/docker/<node> on the machine): the paths it reads are relative, so a level from them would
    # name the wrong ancestor (measured: level 5 for a container at level 7, and no event at all).
    h = FakeHost(tmp_path)
    h.remove(2)
    h.add(1, ["0::/init.scope"], name="systemd", ppid=0, cgroupns="real-cgroup")
    h.add(2, ["0::/system.slice/systemd-journald.service"], name="systemd-journal", ppid=1)
    x = cid("6666")
    scope = (f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
             f"kubelet-kubepods-besteffort-pod{UID}.slice/cri-containerd-{x}.scope")
    h.add(10, [f"0::{scope}"], pidns="p", mntns="m", nspid=[10, 1])
    c = C.resolve_container(x, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert c.cgroup_v2_id == h.cgroup_ino(scope) and c.cgroup_v2_level is None
    f = C.choose_filter(c)
    assert (f.kind, f.cgroup_id, f.cgroup_level) == ("cgroup", c.cgroup_v2_id, -1)


def test_cgroup2_mount_of_a_subtree(tmp_path):
    # The tracer's cgroup2 mount shows only /kubepods (a bind mount of a subtree).
    h = FakeHost(tmp_path)
    x = cid("7777")
    h.add(10, [f"0::/kubepods/pod{UID}/{x}"], pidns="p", mntns="m", make_cgroup_dirs=False)
    (h.cgroup2 / f"pod{UID}" / x).mkdir(parents=True)
    from kubectl_pytrace.kernel.procfs import Mount
    c = C.resolve_container(x, proc_root=str(h.proc), cgroup2_mount=Mount(str(h.cgroup2), "/kubepods", "cgroup2"))
    assert c.cgroup_v2_id == os.stat(h.cgroup2 / f"pod{UID}" / x).st_ino
    assert c.cgroup_v2_level is None


def test_shared_pid_namespace_uses_mount_namespace(tmp_path):
    # A pod with shareProcessNamespace on cgroup v1: the pause container and two containers share a
    # pid namespace, each has its own mount namespace.
    h = FakeHost(tmp_path)
    pause, app, side = cid("1111"), cid("2222"), cid("3333")
    pod = f"/kubepods/burstable/pod{UID}"
    h.add(10, v1(f"{pod}/{pause}"), pidns="pod", mntns="m-pause", nspid=[10, 1])
    h.add(20, v1(f"{pod}/{app}"), pidns="pod", mntns="m-app", nspid=[20, 2])
    h.add(30, v1(f"{pod}/{side}"), pidns="pod", mntns="m-side", nspid=[30, 3])
    c = C.resolve_container(app, proc_root=str(h.proc), cgroup2_mount=h.mount)
    f = C.choose_filter(c)
    assert (f.kind, f.mntns_ino) == ("mntns", h.ns_ino("m-app"))
    assert "no pid namespace filter: its pid namespace also holds other processes (PIDs 10, 30)" in f.reason
    with pytest.raises(C.NoUsableFilter) as e:
        C.choose_filter(c, kinds=("cgroup", "pidns"))
    assert str(e.value) == (
        f"cannot scope probes to container {app[:12]} (kubernetes): no cgroup filter: its processes are "
        "in no cgroup v2 group (cgroup v1 only); no pid namespace filter: its pid namespace also holds "
        "other processes (PIDs 10, 30)")


def test_host_pid_namespace_container(tmp_path):
    # docker run --pid=host on cgroup v1: only the mount namespace tells it apart.
    h = FakeHost(tmp_path)
    x = cid("4444")
    h.add(10, v1(f"/docker/{x}"), pidns="host", mntns="m")
    c = C.resolve_container(x, proc_root=str(h.proc), cgroup2_mount=h.mount)
    f = C.choose_filter(c)
    assert f.kind == "mntns" and f.pidns_ino == 0
    assert "no pid namespace filter: it shares the host's pid namespace" in f.reason
    # With its own cgroup v2 group the cgroup filter still isolates it.
    h.add(10, [f"0::/docker/{x}"], pidns="host", mntns="m")
    f2 = C.choose_filter(C.resolve_container(x, proc_root=str(h.proc), cgroup2_mount=h.mount))
    assert f2.kind == "cgroup"


def test_late_process_is_not_foreign(tmp_path):
    # A process the container starts after resolution shares its pid namespace but is its own.
    h, a, _ = build(tmp_path, LAYOUTS[0])
    c = C.resolve_container(a, proc_root=str(h.proc), cgroup2_mount=h.mount)
    h.add(150, v1(f"/docker/{a}"), pidns="pid-a", mntns="mnt-a", nspid=[150, 9])
    assert C.choose_filter(c).kind == "pidns"


def test_kinds_are_checked(tmp_path):
    h, a, _ = build(tmp_path, LAYOUTS[3])
    c = C.resolve_container(a, proc_root=str(h.proc), cgroup2_mount=h.mount)
    assert C.choose_filter(c, kinds=("pidns",)).kind == "pidns"
    assert C.choose_filter(c, kinds=("mntns",)).kind == "mntns"
    with pytest.raises(ValueError):
        C.choose_filter(c, kinds=("pids",))


def test_kernel_dev_encoding():
    assert NsId(os.makedev(0, 4), 1).kernel_dev == 4
    assert NsId(os.makedev(0, 300), 1).kernel_dev == 300
    assert NsId(os.makedev(259, 3), 1).kernel_dev == (259 << 20) | 3
    assert os.makedev(259, 3) != (259 << 20) | 3      # st_dev is encoded differently


def test_each_filter_kind_has_a_predicate():
    # the engine's predicate (lang/scope.py) for every kind choose_filter can return; the
    # mount namespace one needs the BTF offsets
    from kubectl_pytrace.lang import scope
    for kind in ("cgroup", "pidns", "tgid"):
        assert "pytrace_in_scope" in scope.prelude(scope.ScopeFilter(kind))
    with pytest.raises(ValueError):
        scope.prelude(scope.ScopeFilter("mntns"))
    assert "task + 8" in scope.prelude(scope.ScopeFilter("mntns", (8, 16, 24)))


def test_watcher_follows_a_restart(tmp_path):
    h, a, _ = build(tmp_path, LAYOUTS[3])
    c = C.resolve_container(a, proc_root=str(h.proc), cgroup2_mount=h.mount)
    f = C.choose_filter(c)
    w = C.FilterWatcher(c, f, cgroup2_mount=h.mount)
    assert w.poll() is None
    # Stopped: no process; nothing matches meanwhile.
    h.remove(100)
    h.remove(101)
    off = w.poll()
    assert (off.kind, off.cgroup_id, off.pidns_ino, off.mntns_ino) == ("cgroup", 0, 0, 0)
    assert off.reason == f"container {a[:12]} (docker) has no running process: nothing matches until it is back"
    assert w.poll() is None
    # Restarted: same ID, a new cgroup (the old directory kept so its inode is not reused) and
    # new namespaces.
    os.rename(h.cgroup2 / "docker" / a, h.cgroup2 / "old")
    h.add(400, [f"0::/docker/{a}"], pidns="pid-a2", mntns="mnt-a2", nspid=[400, 1])
    g = w.poll()
    assert g is not None and g.kind == "cgroup"
    assert g.cgroup_id == h.cgroup_ino(f"/docker/{a}") != f.cgroup_id
    assert g.pidns_ino == h.ns_ino("pid-a2")
    assert w.poll() is None


def test_watcher_keeps_the_kind(tmp_path):
    h, a, _ = build(tmp_path, LAYOUTS[0])
    c = C.resolve_container(a, proc_root=str(h.proc), cgroup2_mount=h.mount)
    w = C.FilterWatcher(c, C.choose_filter(c), cgroup2_mount=h.mount)
    h.add(100, v1(f"/docker/{a}"), pidns="pid-a3", mntns="mnt-a", nspid=[100, 1])
    h.add(101, v1(f"/docker/{a}"), pidns="pid-a3", mntns="mnt-a", nspid=[101, 2])
    g = w.poll()
    assert (g.kind, g.pidns_ino) == ("pidns", h.ns_ino("pid-a3"))


# ------------------------------------------------------------------------------------------------
# procfs details

def test_mountinfo():
    text = ("24 1 0:22 / /sys rw - sysfs sysfs rw\n"
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
            "50 24 0:40 /kubepods /host/cgroup\\040v2 rw shared:5 - cgroup2 cgroup2 rw\n")
    mounts = procfs.parse_mountinfo(text)
    assert mounts[1] == procfs.Mount("/sys/fs/cgroup/unified", "/", "cgroup2")
    assert mounts[2] == procfs.Mount("/host/cgroup v2", "/kubepods", "cgroup2")


def test_find_cgroup2_mount_here():
    m = procfs.find_cgroup2_mount()
    if m is None:
        pytest.skip("no cgroup2 mount on this host")
    assert os.path.isfile(os.path.join(m.mount_point, "cgroup.procs"))


def test_maps_and_environ(tmp_path):
    h = FakeHost(tmp_path)
    h.add(10, ["0::/"], maps=["/usr/lib/libc.so.6", "/usr/lib/libc.so.6", "/app/my lib.so"],
          environ={"LD_LIBRARY_PATH": "/opt/lib", "A": "b=c"})
    assert procfs.mapped_files(str(h.proc), 10) == ["/usr/lib/libc.so.6", "/app/my lib.so"]
    assert procfs.environ(str(h.proc), 10) == {"LD_LIBRARY_PATH": "/opt/lib", "A": "b=c"}
    assert procfs.ns_pids(str(h.proc), 2) == (2,)
