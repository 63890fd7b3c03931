"""The kind cluster of hack/kind.sh itself: its nodes, and the check that `hack/kind.sh down` runs at
its end (`hack/kind.sh leftovers`), shown here to find the running cluster and a running trace's
BPF programs: the check that must come back empty after `down` can fail."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from clusterlib import REPO, manifest_pod
from pluginlib import TICKER, Running

pytestmark = [pytest.mark.cluster, pytest.mark.kind]

KIND_SH = REPO / "hack" / "kind.sh"


def leftovers() -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(KIND_SH), "leftovers"], capture_output=True, text=True, timeout=120)


def test_one_control_plane_and_two_workers_of_the_local_node_image(cluster):
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    roles = sorted("control-plane" if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"] else "worker"
                   for n in nodes)
    assert roles == ["control-plane", "worker", "worker"]
    assert set(cluster.kind_nodes) == {n["metadata"]["name"] for n in nodes}
    for n in nodes:
        info = n["status"]["nodeInfo"]
        assert info["kubeletVersion"] == "v1.34.4" and info["containerRuntimeVersion"].startswith("containerd://")
        assert n["spec"]["providerID"].startswith("kind://docker/"), n["spec"]
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True", n["metadata"]["name"]
    # every pod of kube-system runs: kubeadm's control plane, kube-proxy, CoreDNS, the pod network
    pods = json.loads(cluster.kubectl("get", "pods", "-n", "kube-system", "-o", "json").stdout)["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods), \
        [(p["metadata"]["name"], p["status"]["phase"]) for p in pods]
    apps = {re.sub(r"-[a-z0-9]{5}$|-[a-z0-9]{8,10}-[a-z0-9]{5}$", "", p["metadata"]["name"]) for p in pods}
    assert {"coredns", "kube-proxy", "pytrace-kindnet"} <= apps, apps


def test_pods_on_the_two_workers_reach_each_other(cluster, namespace):
    workers = sorted(n for n in cluster.kind_nodes if not n.endswith("control-plane"))
    server = manifest_pod("server", cluster.workload_image, ["httpd", "-f", "-p", "8080"], nodeName=workers[0])
    client = manifest_pod("client", cluster.workload_image, ["sleep", "300"], nodeName=workers[1])
    for pod in (server, client):
        cluster.apply(pod, namespace)
        cluster.wait_pod_phase(pod["metadata"]["name"], namespace, ["Running"])
    ip = cluster.get("pod", "server", namespace)["status"]["podIP"]
    out = cluster.wait_for(lambda: cluster.kubectl(
        "exec", "-n", namespace, "client", "--", "sh", "-c",
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080", check=False).stdout, timeout=60,
        what="an answer from the other worker's pod")
    assert out.startswith("HTTP/1.") and " 404 " in out.splitlines()[0], out


def test_pods_resolve_cluster_names_and_the_nodes(cluster, namespace):
    # CoreDNS answers for the cluster and forwards the rest to the node's resolver, which the
    # entrypoint points at Docker's (not at a loopback address, where CoreDNS would find itself)
    script = ("import socket\n"
              "for n in ('kubernetes.default.svc.cluster.local', 'pytrace-control-plane'):\n"
              "    print(n, socket.gethostbyname(n))\n")
    control_plane = next(n for n in cluster.kind_nodes if n.endswith("control-plane"))
    script = script.replace("pytrace-control-plane", control_plane)
    cluster.apply(manifest_pod("resolver", cluster.tracer_image, ["python3", "-c", script],
                               container={"imagePullPolicy": "Never"}), namespace)
    assert cluster.wait_pod_phase("resolver", namespace, ["Succeeded"]) == "Succeeded"
    svc = cluster.get("service", "kubernetes", "default")["spec"]["clusterIP"]
    node_ip = next(a["address"] for a in cluster.get("node", control_plane)["status"]["addresses"]
                   if a["type"] == "InternalIP")
    assert cluster.logs("resolver", namespace).splitlines() == [
        f"kubernetes.default.svc.cluster.local {svc}", f"{control_plane} {node_ip}"]


def test_the_down_check_finds_a_running_cluster_and_a_trace(cluster, namespace):
    cluster.apply(manifest_pod("ticker", cluster.workload_image, [TICKER, "-i", "100"]), namespace)
    cluster.wait_pod_phase("ticker", namespace, ["Running"])
    run = Running(cluster, "run", "pod/ticker", "-n", namespace, "--attach",
                  "-e", f'uprobe:{TICKER}:pytrace_tick {{ printf("tick %d\\n", arg0); }}')
    try:
        run.read_until(lambda line: line.startswith("tick "))
        p = leftovers()
    finally:
        run.signal(signal.SIGINT)
        assert run.finish().code == 0
    assert p.returncode == 1, p
    kinds = {}
    for line in p.stdout.splitlines():
        kinds.setdefault(line.split(":", 1)[0], []).append(line)
    for cid in cluster.kind_nodes.values():
        assert f"container: {cid[:12]}" in p.stdout
        assert any(cid in line for line in kinds["cgroup"]), cid
    assert kinds["network"] == [f"network: {os.environ.get('PYTRACE_KIND_NETWORK', 'pytrace-kind')}"]
    assert len(kinds["volume"]) == 3 and len(kinds["mount"]) >= 3 and len(kinds["link"]) == 4, p.stdout
    # the trace's programs, held by the tracer in a node (and those of the nodes' systemd)
    assert any(re.match(r"bpf: program \d+ \(python3, pid \d+\)$", line) for line in kinds["bpf"]), p.stdout
    assert any(re.match(r"bpf: program \d+ \(systemd, pid \d+\)$", line) for line in kinds["bpf"]), p.stdout
    assert kinds["file"] == [f"file: {cluster.kubeconfig}"]


def test_addresses_keep_out_of_the_local_clusters(cluster):
    # hack/cluster.sh's pods are in 10.244.0.0/24 and its Services in 10.96.0.0/24 on this machine
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert all(n["spec"]["podCIDR"].startswith("10.245.") for n in nodes), [n["spec"]["podCIDR"] for n in nodes]
    svc = cluster.get("service", "kubernetes", "default")["spec"]["clusterIP"]
    assert svc.startswith("10.97."), svc
    assert not any(n.startswith("pytrace-node") for n in cluster.kind_nodes)

