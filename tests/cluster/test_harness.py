"""Tests of the cluster harness itself: the cluster runs real pods and Jobs, a privileged hostPID pod
of the tracer image can load BPF, and (local cluster) a crashed run recovers and `down` leaves
nothing behind. The down test runs last and brings the cluster back up (warm) for later tests."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

import pytest

from clusterlib import CLUSTER_SH, manifest_pod, start_local_cluster

pytestmark = pytest.mark.cluster

STATE = "/var/lib/pytrace-cluster"
RUN = "/run/pytrace-cluster"
PIDS = pathlib.Path(RUN) / "pids"

# Loads a trivial socket filter ("r0 = 0; exit") with the bpf() system call and finds it by name
# in `bpftool prog list`: no kernel headers needed, so it tests the pod's privileges, not BCC's set-up.
LOAD_AND_LIST_BPF = r"""
import ctypes, json, struct, subprocess, bcc
libc = ctypes.CDLL(None, use_errno=True)
insns = ctypes.create_string_buffer(bytes([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]), 16)
lic = ctypes.create_string_buffer(b"GPL")
attr = ctypes.create_string_buffer(128)
struct.pack_into("IIQQ", attr, 0, 1, 2, ctypes.addressof(insns), ctypes.addressof(lic))
attr[48:48 + 13] = b"pytrace_probe"
fd = libc.syscall(321, 5, attr, 128)  # bpf(BPF_PROG_LOAD, ...)
if fd < 0:
    raise OSError(ctypes.get_errno(), "BPF_PROG_LOAD failed")
progs = json.loads(subprocess.check_output(["bpftool", "-j", "prog", "list"]))
mine = [p for p in progs if p.get("name") == "pytrace_probe"]
print(json.dumps({"bcc": bcc.__file__, "programs": len(progs), "mine": mine}))
"""


def test_workload_pod_runs_and_logs_are_readable(cluster, namespace):
    cluster.apply(manifest_pod("ticker", cluster.workload_image, ["/usr/local/bin/ticker", "-i", "100"]),
                  namespace)
    assert cluster.wait_pod_phase("ticker", namespace, ["Running"]) == "Running"
    logs = cluster.wait_for(lambda: (lambda out: out if "tick 3" in out else "")(cluster.logs("ticker", namespace)),
                            timeout=30, what="tick 3 in the logs")
    assert logs.splitlines()[:3] == ["tick 1", "tick 2", "tick 3"]
    # exec goes through the API server, the kubelet and containerd's streaming server.
    out = cluster.kubectl("exec", "-n", namespace, "ticker", "--", "cat", "/etc/hostname").stdout
    assert out.strip() == "ticker"


def test_job_completes(cluster, namespace):
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "three-ticks"},
        "spec": {"backoffLimit": 0, "template": manifest_pod(
            "three-ticks", cluster.workload_image, ["/usr/local/bin/ticker", "-n", "3", "-i", "50"])},
    }
    del job["spec"]["template"]["apiVersion"], job["spec"]["template"]["kind"]
    cluster.apply(job, namespace)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/three-ticks", "--timeout=120s",
                    timeout=130)
    assert cluster.logs("job/three-ticks", namespace).splitlines() == ["tick 1", "tick 2", "tick 3"]


def tracer_pod(name: str, image: str, command):
    """A privileged hostPID pod with the host mounts a BPF tracer needs."""
    mounts = [("sys", "/sys", False), ("debugfs", "/sys/kernel/debug", False),
              ("tracefs", "/sys/kernel/tracing", False), ("proc", "/host/proc", True),
              ("modules", "/lib/modules", True), ("src", "/usr/src", True)]
    host = {"sys": "/sys", "debugfs": "/sys/kernel/debug", "tracefs": "/sys/kernel/tracing",
            "proc": "/proc", "modules": "/lib/modules", "src": "/usr/src"}
    return manifest_pod(
        name, image, command,
        hostPID=True,
        container={"securityContext": {"privileged": True},
                   "volumeMounts": [{"name": n, "mountPath": p, "readOnly": ro} for n, p, ro in mounts]},
        volumes=[{"name": n, "hostPath": {"path": host[n]}} for n, _, _ in mounts],
    )


def test_tracer_pod_imports_bcc_and_loads_bpf(cluster, namespace):
    cluster.apply(tracer_pod("bpf", cluster.tracer_image, ["python3", "-c", LOAD_AND_LIST_BPF]), namespace)
    phase = cluster.wait_pod_phase("bpf", namespace, ["Succeeded", "Failed"], timeout=180)
    logs = cluster.logs("bpf", namespace)
    assert phase == "Succeeded", logs
    result = json.loads(logs.strip().splitlines()[-1])
    assert result["bcc"].startswith("/usr/lib/python3/dist-packages/bcc/")
    assert [p["type"] for p in result["mine"]] == ["socket_filter"], result


def test_tracer_pod_sees_host_pids_and_tracefs(cluster, namespace):
    script = ("readlink /proc/self/ns/pid; test -e /sys/kernel/tracing/events/syscalls && echo tracefs; "
              "test -e /sys/kernel/debug/tracing && echo debugfs; test -e /sys/kernel/btf/vmlinux && echo btf; "
              "ls /lib/modules >/dev/null && ls /usr/src >/dev/null && echo hostdirs; "
              "python3 -c 'import kubectl_pytrace' && echo package")
    cluster.apply(tracer_pod("host", cluster.tracer_image, ["sh", "-c", script]), namespace)
    phase = cluster.wait_pod_phase("host", namespace, ["Succeeded", "Failed"], timeout=120)
    lines = cluster.logs("host", namespace).splitlines()
    assert phase == "Succeeded", lines
    assert {"tracefs", "debugfs", "btf", "hostdirs", "package"} <= set(lines), lines
    if cluster.local:  # same host: the pod is in the host's PID namespace
        assert lines[0] == os.readlink("/proc/self/ns/pid")


# --- local cluster only: crash recovery and a clean `down` --------------------------------------

def _our_pids() -> dict[str, int]:
    pids = {}
    for f in PIDS.glob("*.pid"):
        pid, _, exe = f.read_text().strip().partition(" ")
        pids[f.stem] = int(pid)
    return pids


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _leftover_processes() -> list[str]:
    """Processes of the local cluster: in its pods' cgroups, or talking to its containerd."""
    found = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cgroups = (d / "cgroup").read_text()
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ":/pytrace/" in cgroups or RUN in cmdline or STATE in cmdline:
            found.append(f"{d.name}: {cmdline[:200]}")
    return found


def _our_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if STATE in line or RUN in line]


@pytest.fixture
def local_only(cluster):
    if not cluster.local:
        pytest.skip("tests hack/cluster.sh itself: only with the local cluster (KUBECONFIG unset)")
    return cluster


def test_up_after_a_crash_recovers(local_only, namespace):
    cluster = local_only
    cluster.apply(manifest_pod("survivor", cluster.workload_image, ["/usr/local/bin/ticker"]), namespace)
    cluster.wait_pod_phase("survivor", namespace, ["Running"])
    # A crash: every daemon killed at once, with pods, mounts and state left behind.
    for name, pid in _our_pids().items():
        os.kill(pid, 9)
    assert subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True).returncode != 0
    start = time.monotonic()
    again = start_local_cluster()
    took = time.monotonic() - start
    assert again.kubeconfig == cluster.kubeconfig
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [c["status"] for n in node for c in n["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    print(f"up after a crash: {took:.1f}s")


def test_down_leaves_nothing_then_up_again(local_only, namespace):
    cluster = local_only
    # Pods with volumes (service account token: a tmpfs mount), a shared-memory mount, a veth.
    cluster.apply(manifest_pod("before-down", cluster.workload_image, ["/usr/local/bin/ticker"]), namespace)
    cluster.wait_pod_phase("before-down", namespace, ["Running"])
    pids = _our_pids()
    assert set(pids) >= {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                         "containerd", "kubelet"}
    assert _our_mounts(), "expected pod mounts while the cluster runs"
    netns_before = {p.name for p in pathlib.Path("/run/netns").glob("cni-*")}

    start = time.monotonic()
    p = subprocess.run(["bash", str(CLUSTER_SH), "down"], capture_output=True, text=True, timeout=600)
    down_s = time.monotonic() - start
    assert p.returncode == 0, p.stderr
    try:
        assert [n for n, pid in pids.items() if _alive(pid)] == []
        assert _leftover_processes() == []
        assert _our_mounts() == []
        assert not os.path.exists(STATE) and not os.path.exists(RUN)
        assert netns_before & {p.name for p in pathlib.Path("/run/netns").glob("cni-*")} == set()
        assert subprocess.run(["ip", "link", "show", "pytrace0"], capture_output=True).returncode != 0
        assert subprocess.run(["iptables", "-w", "-n", "-L", "PYTRACE-FORWARD"], capture_output=True).returncode != 0
        assert "CNI-" not in subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True,
                                            text=True).stdout
        assert subprocess.run(["nft", "list", "table", "ip", "kube-proxy"], capture_output=True).returncode != 0
        for hierarchy in pathlib.Path("/sys/fs/cgroup").iterdir():
            assert not (hierarchy / "pytrace").exists(), hierarchy
    finally:
        # Later tests of the session use the cluster: bring it back (warm: binaries are cached).
        again = start_local_cluster()
    print(f"down: {down_s:.1f}s, warm up: {again.up_seconds:.1f}s")
    assert again.up_seconds < 60


def test_service_cluster_ip_routes_to_a_pod(cluster, namespace):
    server = manifest_pod("web", cluster.workload_image, ["httpd", "-f", "-p", "8080", "-h", "/etc"])
    server["metadata"]["labels"] = {"app": "web"}
    cluster.apply(server, namespace)
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
                  namespace)
    cluster.wait_pod_phase("web", namespace, ["Running"])
    ip = cluster.get("service", "web", namespace)["spec"]["clusterIP"]
    # The client retries: kube-proxy programs the Service and its endpoint asynchronously.
    # (busybox's wget crashes in a static build: it is not in the image; nc is.)
    request = "GET /hostname HTTP/1.0\r\n\r\n"
    client = manifest_pod("client", cluster.workload_image, [
        "sh", "-c", 'for i in $(seq 60); do printf "$0" | nc -w 2 "$1" 80 | grep -q "^HTTP/1.[01] 200" '
                    '&& { printf "$0" | nc -w 2 "$1" 80; exit 0; }; sleep 1; done; exit 1', request, ip])
    cluster.apply(client, namespace)
    assert cluster.wait_pod_phase("client", namespace, ["Succeeded", "Failed"], timeout=120) == "Succeeded", \
        cluster.logs("client", namespace)
    assert cluster.logs("client", namespace).splitlines()[-1] == "web"
