"""firewall, shape and seccomp on the local cluster (hack/cluster.sh): tracer Jobs that attach in a
pod's network namespace, counters streamed back, updates while running, Ctrl-C that leaves nothing
attached nor in the cluster; a profile recorded from a pod that another pod then runs under.

The node is this host, so the tests reach pod IPs directly and look into the pods' network
namespaces (the CNI's, under /run/netns) with ip/bpftool; on another cluster they are skipped.
The tracer image is built from this checkout as localhost/kubectl-pytrace/tracer:net and loaded
into the cluster's containerd (PYTRACE_GUARD_IMAGE names another one to use instead).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterlib import REPO, env_from_cluster_sh, local_cluster_running, manifest_pod
from pluginlib import MANAGED, Running, left_behind, plugin

pytestmark = [pytest.mark.cluster, pytest.mark.root, pytest.mark.bpf]
NET_TESTS = REPO / "tests" / "net"
IMAGE = "localhost/kubectl-pytrace/tracer:net"
CTRD_SOCK = "/run/pytrace-cluster/containerd/containerd.sock"
SECCOMP_ROOT = Path("/var/lib/pytrace-cluster/kubelet/seccomp")  # the local kubelet's --root-dir + /seccomp
WORKLOAD = ("set -e; sleep 2; i=0; while [ $i -lt {n} ]; do i=$((i+1)); mkdir -p /tmp/d$i; date > /tmp/d$i/f; "
            "cat /tmp/d$i/f > /dev/null; ls /tmp > /dev/null; sleep 0.1; done; echo finished")


def _sh(*cmd: str, input: bytes = None, timeout: float = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), input=input, capture_output=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)}: {p.stderr.decode(errors='replace')[-3000:]}"
    return p


def _node_is_this_host(cluster) -> bool:
    """The local cluster, started by the session or named by KUBECONFIG (`eval "$(hack/cluster.sh env)"`)."""
    if cluster.local:
        return True
    local = env_from_cluster_sh().get("KUBECONFIG", "")
    return bool(local) and os.path.realpath(local) == os.path.realpath(cluster.kubeconfig) and local_cluster_running()


@pytest.fixture(scope="module")
def image(cluster):
    if not _node_is_this_host(cluster):
        pytest.skip("these tests reach pod IPs and the pods' network namespaces from the node: the local cluster")
    if os.environ.get("PYTRACE_GUARD_IMAGE"):
        return os.environ["PYTRACE_GUARD_IMAGE"]
    base = _sh(str(REPO / "hack" / "base-image.sh")).stdout.decode().split()[-1]
    _sh("/usr/bin/docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE, "-f",
        str(REPO / "Dockerfile"), str(REPO))
    saved = _sh("/usr/bin/docker", "save", IMAGE).stdout
    _sh("ctr", "--address", CTRD_SOCK, "-n", "k8s.io", "images", "import", "-", input=saved)
    return IMAGE


def _pod(cluster, ns: str, name: str, command: str, **spec) -> dict:
    pod = manifest_pod(name, cluster.workload_image, ["sh", "-c", command], **spec)
    cluster.apply(pod, ns)
    if spec.get("restartPolicy", "Never") == "Never" and "securityContext" in spec:
        return pod
    cluster.wait_pod_phase(name, ns, ["Running"])
    return cluster.get("pod", name, ns)


def _netns_of(ip: str) -> str:
    """The CNI's network namespace (ip netns) that holds this address."""
    for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
        name = line.split()[0]
        out = subprocess.run(["ip", "-n", name, "-j", "addr"], capture_output=True, text=True).stdout
        if any(a.get("local") == ip for i in json.loads(out or "[]") for a in i.get("addr_info", [])):
            return name
    raise AssertionError(f"no network namespace has {ip}")


def _attached_in(netns: str) -> dict:
    """XDP program id on eth0, and the BPF links of programs named pytrace_*."""
    info = json.loads(subprocess.run(["ip", "-n", netns, "-d", "-j", "link", "show", "eth0"], capture_output=True,
                                     text=True).stdout)[0]
    progs = {p["id"]: p.get("name") for p in json.loads(_sh("bpftool", "prog", "show", "-j").stdout)}
    links = [lk for lk in json.loads(_sh("bpftool", "link", "show", "-j").stdout)
             if str(progs.get(lk.get("prog_id"), "")).startswith("pytrace_fw") or
             str(progs.get(lk.get("prog_id"), "")).startswith("pytrace_shape")]
    return {"xdp": (info.get("xdp") or {}).get("prog", {}).get("id"), "links": links}


def _tc(netns: str) -> dict:
    """eth0's qdiscs and its tc filters on both clsact hooks, as `tc` shows them."""
    def show(*what: str) -> str:
        return subprocess.run(["ip", "netns", "exec", netns, "tc", *what], capture_output=True, text=True).stdout
    return {"qdiscs": show("qdisc", "show", "dev", "eth0"),
            "filters": [show("filter", "show", "dev", "eth0", hook) for hook in ("ingress", "egress")]}


def _connect(ip: str, port: int, timeout: float = 2.0) -> str:
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    finally:
        s.close()


def _trace_of(err: str) -> str:
    """The trace the plugin created (its first note names it)."""
    found = re.search(r"\b(pytrace-[0-9a-f]{8})\b", err)
    assert found, err
    return found.group(1)


def _nothing_left(cluster, err: str) -> None:
    """No Job, pod or ConfigMap of this test's trace (others' tests may run traces meanwhile)."""
    mine = f"kubectl-pytrace/trace={_trace_of(err)}"
    end = time.monotonic() + 60
    while left_behind(cluster, mine) and time.monotonic() < end:
        time.sleep(0.5)
    assert left_behind(cluster, mine) == []


def _jobs_for(cluster, namespace: str) -> list:
    """Names of kubectl-pytrace Jobs whose target is in this namespace (this test's)."""
    out = json.loads(cluster.kubectl("get", "jobs", "-A", "-l", MANAGED, "-o", "json").stdout)
    return [j["metadata"]["name"] for j in out["items"]
            if j["metadata"].get("annotations", {}).get("kubectl-pytrace/target-namespace") == namespace]


def _json_reports(lines):
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_firewall_on_a_pod(cluster, namespace, image):
    pod = _pod(cluster, namespace, "web", "httpd -p 8080 -h /tmp; httpd -f -p 8081 -h /tmp")
    ip = pod["status"]["podIP"]
    assert _connect(ip, 8080) == "connected"
    fw = Running(cluster, "firewall", "pod/web", "-n", namespace, "--deny", "tcp/8080", "--interval", "1s",
                 "-o", "json", "--image", image)
    fw.read_until(lambda line: line.startswith("{"))
    assert _connect(ip, 8080, 3.0) == "timeout"
    assert _connect(ip, 8081) == "connected"
    netns = _netns_of(ip)
    assert _attached_in(netns)["xdp"]
    upd = plugin(cluster, "firewall", "pod/web", "-n", namespace, "--update", "--deny", "tcp/8081")
    assert upd.code == 0, upd.err
    assert _connect(ip, 8080) == "connected" and _connect(ip, 8081, 3.0) == "timeout"
    fw.signal(signal.SIGINT)
    res = fw.finish()
    assert res.code == 0, res.err
    reports = _json_reports(res.lines())
    final = [r for r in reports if r["final"]][-1]
    assert final["type"] == "firewall" and final["pod"] == "web" and final["namespace"] == namespace
    assert final["rules"] == [{"rule": "tcp/8081", "packets": final["rules"][0]["packets"],
                               "bytes": final["rules"][0]["bytes"]}] and final["rules"][0]["packets"] >= 2
    assert any(r["rules"][0]["rule"] == "tcp/8080" and r["rules"][0]["packets"] >= 2 for r in reports)
    assert "firewall rules updated (generation 2): tcp/8081" in res.err
    assert _attached_in(netns) == {"xdp": None, "links": []}
    _nothing_left(cluster, res.err)


def test_a_pod_on_the_host_network_is_refused(cluster, namespace, image):
    _pod(cluster, namespace, "hostnet", "sleep 600", hostNetwork=True)
    r = plugin(cluster, "firewall", "pod/hostnet", "-n", namespace, "--deny", "tcp/80", "--image", image)
    assert r.code == 1
    assert "pod hostnet uses the host's network (hostNetwork: true)" in r.err and "node/" in r.err
    assert "created" not in r.err and _jobs_for(cluster, namespace) == []
    r = plugin(cluster, "firewall", "pod/hostnet", "-n", namespace, "--deny", "tcp/80:x", "--image", image)
    assert r.code == 1 and "invalid rule" in r.err


def _bridge_ip() -> str:
    out = json.loads(_sh("ip", "-j", "-4", "addr", "show", "pytrace0").stdout)
    return out[0]["addr_info"][0]["local"]


def _bulk_from_pod(cluster, namespace: str, pod: str, seconds: float) -> float:
    """A bulk transfer from the pod (busybox nc) to this host, measured by the receiver."""
    port = 20000 + secrets.randbelow(20000)
    srv = subprocess.Popen([sys.executable, str(NET_TESTS / "bulk.py"), "serve", str(port), str(seconds)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert srv.stderr.readline().strip() == "listening"
    snd = subprocess.Popen([cluster.kubectl_path, "--kubeconfig", cluster.kubeconfig, "exec", "-n", namespace, pod,
                            "--", "sh", "-c", f"nc {_bridge_ip()} {port} < /dev/zero"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, _ = srv.communicate(timeout=seconds + 60)
    finally:
        snd.kill()
        snd.wait()
    return json.loads(out)["bps"]


def test_shaping_a_pods_egress(cluster, namespace, image):
    pod = _pod(cluster, namespace, "sender", "sleep 600")
    netns = _netns_of(pod["status"]["podIP"])
    qdiscs_before = _tc(netns)
    sh = Running(cluster, "shape", "pod/sender", "-n", namespace, "--egress-rate", "2mbit", "--interval", "1s",
                 "-o", "json", "--image", image)
    sh.read_until(lambda line: line.startswith("{"))
    shaped = _bulk_from_pod(cluster, namespace, "sender", 5.0)
    assert _attached_in(netns)["links"]
    upd = plugin(cluster, "shape", "pod/sender", "-n", namespace, "--update", "--egress-rate", "8mbit")
    assert upd.code == 0, upd.err
    faster = _bulk_from_pod(cluster, namespace, "sender", 5.0)
    sh.signal(signal.SIGINT)
    res = sh.finish()
    assert res.code == 0, res.err
    free = _bulk_from_pod(cluster, namespace, "sender", 2.0)
    print(f"pod egress at 2mbit: {shaped / 1e6:.3f} Mbit/s ({shaped / 2e6:.3f}), updated to 8mbit: "
          f"{faster / 1e6:.3f} Mbit/s ({faster / 8e6:.3f}), after: {free / 1e6:.0f} Mbit/s")
    assert abs(shaped - 2e6) <= 0.15 * 2e6 and abs(faster - 8e6) <= 0.15 * 8e6 and free > 20e6, (shaped, faster, free)
    assert "shaper rate updated (generation 2): 8000000 bit/s" in res.err
    final = [r for r in _json_reports(res.lines()) if r["final"]][-1]
    assert final["type"] == "shape" and final["pod"] == "sender" and final["dropped"]["packets"] > 0
    assert "tcx BPF link" in res.err
    assert _attached_in(netns)["links"] == []
    assert _tc(netns) == qdiscs_before  # no qdisc or filter added and left (tcx needs none)
    _nothing_left(cluster, res.err)


def test_a_seccomp_profile_recorded_from_a_pod_runs_another(cluster, namespace, image):
    _pod(cluster, namespace, "loop", WORKLOAD.format(n=300))
    r = plugin(cluster, "seccomp", "pod/loop", "-n", namespace, "--duration", "5s", "--image", image, timeout=300)
    assert r.code == 0, r.err
    profile = json.loads(r.out)
    names = profile["syscalls"][0]["names"]
    assert "mkdir" in names or "mkdirat" in names
    assert cluster.get("pod", "loop", namespace)["status"]["phase"] == "Running"  # recorded while it ran
    directory = SECCOMP_ROOT / "pytrace-test"
    directory.mkdir(parents=True, exist_ok=True)
    good, bad = directory / f"{namespace}-good.json", directory / f"{namespace}-bad.json"
    good.write_text(json.dumps(profile))
    missing = "mkdir" if "mkdir" in names else "mkdirat"
    bad.write_text(json.dumps({**profile, "syscalls": [{"names": [n for n in names if n != missing],
                                                        "action": "SCMP_ACT_ALLOW"}]}))
    try:
        for name, path in (("ok", good), ("broken", bad)):
            _pod(cluster, namespace, name, WORKLOAD.format(n=10), restartPolicy="Never",
                 securityContext={"seccompProfile": {"type": "Localhost",
                                                     "localhostProfile": f"pytrace-test/{path.name}"}})
        assert cluster.wait_pod_phase("ok", namespace, ["Succeeded", "Failed"], timeout=120) == "Succeeded"
        assert cluster.logs("ok", namespace).strip().endswith("finished")
        assert cluster.wait_pod_phase("broken", namespace, ["Succeeded", "Failed"], timeout=120) == "Failed"
        assert "Operation not permitted" in cluster.logs("broken", namespace)
    finally:
        good.unlink()
        bad.unlink()
    _nothing_left(cluster, r.err)


def _tracer_pids() -> list:
    """Host PIDs of tracer processes (`python3 -m kubectl_pytrace tracer --config ...`) running now."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd[1:4] == [b"-m", b"kubectl_pytrace", b"tracer"]:
                pids.append(int(d.name))
    return pids


def test_a_killed_tracer_leaves_nothing_attached(cluster, namespace, image):
    """SIGKILL of the tracer process on the node: the kernel closes its BPF link, the XDP program
    goes with it; the plugin says the tracer was killed."""
    pod = _pod(cluster, namespace, "victim", "sleep 600")
    netns = _netns_of(pod["status"]["podIP"])
    before = set(_tracer_pids())
    fw = Running(cluster, "firewall", "pod/victim", "-n", namespace, "--deny", "tcp/1", "--interval", "1s",
                 "-o", "json", "--image", image)
    fw.read_until(lambda line: line.startswith("{"))
    assert _attached_in(netns)["xdp"]
    mine = set(_tracer_pids()) - before
    assert len(mine) == 1, mine
    os.kill(mine.pop(), signal.SIGKILL)
    res = fw.finish(timeout=180)
    assert res.code == 1
    assert "ended without finishing" in res.err and "137" in res.err
    assert _attached_in(netns) == {"xdp": None, "links": []}
    _nothing_left(cluster, res.err)


def test_a_firewall_on_a_node_interface(cluster, image):
    """node/NAME -i IFACE: the tracer pod's own network namespace is the node's (hostNetwork). The
    interface is a veth made for the test, its peer in a namespace of its own."""
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]
    tag = secrets.token_hex(3)
    host_if, ns = f"pyth{tag}", f"pytn{tag}"
    _sh("ip", "netns", "add", ns)
    try:
        _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "addr", "add", "10.251.7.1/30", "dev", host_if)
        _sh("ip", "link", "set", host_if, "up")
        _sh("ip", "-n", ns, "addr", "add", "10.251.7.2/30", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("10.251.7.1", 18080))
        srv.listen(8)
        fw = Running(cluster, "firewall", f"node/{node}", "-i", host_if, "--deny", "tcp/18080 from 10.251.7.2",
                     "--interval", "1s", "-o", "json", "--image", image)
        fw.read_until(lambda line: line.startswith("{"))
        probe = [sys.executable, str(NET_TESTS / "listen.py"), "--connect", "10.251.7.1", "18080", "2.5"]
        assert subprocess.run(["ip", "netns", "exec", ns, *probe], capture_output=True, text=True).stdout.strip() \
            == "timeout"
        fw.signal(signal.SIGINT)
        res = fw.finish()
        assert res.code == 0, res.err
        final = [r for r in _json_reports(res.lines()) if r["final"]][-1]
        assert final["target"] == f"node {node}" and final["node"] == node and "pod" not in final
        assert final["rules"][0]["packets"] >= 2
        assert subprocess.run(["ip", "netns", "exec", ns, *probe], capture_output=True, text=True).stdout.strip() \
            == "connected"
        assert "xdp" not in subprocess.run(["ip", "-d", "link", "show", host_if], capture_output=True,
                                           text=True).stdout
        srv.close()
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    _nothing_left(cluster, res.err)


def test_a_firewall_ends_at_its_deadline(cluster, namespace, image):
    """--deadline: the tracer detaches by itself, prints its final counters, the plugin exits 0
    and deletes the trace's objects."""
    pod = _pod(cluster, namespace, "timed", "httpd -f -p 8080 -h /tmp")
    ip = pod["status"]["podIP"]
    netns = _netns_of(ip)
    fw = Running(cluster, "firewall", "pod/timed", "-n", namespace, "--deny", "tcp/8080", "--interval", "1s",
                 "--deadline", "8s", "-o", "json", "--image", image)
    fw.read_until(lambda line: line.startswith("{"))
    assert _attached_in(netns)["xdp"]
    mine = f"kubectl-pytrace/trace={_trace_of(chr(10).join(e for e in fw.err if e))}"
    assert any(o.startswith("job") for o in left_behind(cluster, mine))  # what the check below finds if left
    assert _connect(ip, 8080, 2.0) == "timeout"
    res = fw.finish(timeout=120)  # no signal: the deadline ends it
    assert res.code == 0, res.err
    final = [r for r in _json_reports(res.lines()) if r["final"]]
    assert len(final) == 1 and final[0]["rules"][0]["packets"] >= 1
    assert _attached_in(netns) == {"xdp": None, "links": []}
    assert _connect(ip, 8080) == "connected"
    _nothing_left(cluster, res.err)


def test_a_failure_on_the_node_exits_1_and_leaves_nothing(cluster, namespace, image):
    """What only the node can tell: an interface the pod does not have, and an interface that already
    has an XDP program (without --force). The tracer says why, the plugin exits 1, nothing stays
    attached and the trace's objects are deleted."""
    pod = _pod(cluster, namespace, "plain", "sleep 600")
    netns = _netns_of(pod["status"]["podIP"])
    r = plugin(cluster, "firewall", "pod/plain", "-n", namespace, "-i", "nosuch0", "--deny", "tcp/80",
               "--image", image, timeout=300)
    assert r.code == 1, (r.out, r.err)
    assert "no interface 'nosuch0'" in r.err and "eth0" in r.err
    _nothing_left(cluster, r.err)

    first = Running(cluster, "firewall", "pod/plain", "-n", namespace, "--deny", "tcp/81", "--interval", "1s",
                    "-o", "json", "--image", image)
    first.read_until(lambda line: line.startswith("{"))
    held = _attached_in(netns)["xdp"]
    assert held
    r = plugin(cluster, "firewall", "pod/plain", "-n", namespace, "--deny", "tcp/82", "--image", image, timeout=300)
    assert r.code == 1, (r.out, r.err)
    assert "already has an XDP program" in r.err and "--force" in r.err
    _nothing_left(cluster, r.err)
    assert _attached_in(netns)["xdp"] == held  # the first one's, untouched
    first.signal(signal.SIGINT)
    res = first.finish()
    assert res.code == 0, res.err
    assert _attached_in(netns) == {"xdp": None, "links": []}
    _nothing_left(cluster, res.err)


@pytest.mark.parametrize("delay", [0.0, 1.0, 2.0])
def test_ctrl_c_at_once_leaves_nothing(cluster, namespace, image, delay):
    """Ctrl-C as soon as the objects exist, or a moment later while the tracer pod starts and
    attaches: the plugin deletes the trace, and the tracer, wherever it was, leaves no program on
    the pod's interface."""
    pod = _pod(cluster, namespace, "early", "sleep 600")
    netns = _netns_of(pod["status"]["podIP"])
    fw = Running(cluster, "firewall", "pod/early", "-n", namespace, "--deny", "tcp/1", "--image", image)
    end = time.monotonic() + 60
    while not any(e and "created for" in e for e in fw.err) and time.monotonic() < end:
        time.sleep(0.02)
    time.sleep(delay)
    fw.signal(signal.SIGINT)
    res = fw.finish()
    print(f"exit {res.code}: {res.err}")
    assert "Traceback" not in res.err
    _nothing_left(cluster, res.err)
    # The pods were deleted at once (grace 0): the API forgets them before the kubelet has killed
    # the tracer's container, whose BPF link goes with its process a moment later.
    end = time.monotonic() + 30
    while _attached_in(netns) != {"xdp": None, "links": []} and time.monotonic() < end:
        time.sleep(0.2)
    assert _attached_in(netns) == {"xdp": None, "links": []}


def test_a_firewall_on_every_pod_of_a_deployment(cluster, namespace, image):
    """deploy/NAME: one program in each of its pods' network namespaces, their counters labelled by
    pod; all detached at the end."""
    container = {"name": "main", "image": cluster.workload_image, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", "httpd -f -p 8080 -h /tmp"]}
    cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "webs"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "webs"}},
                            "template": {"metadata": {"labels": {"app": "webs"}},
                                         "spec": {"containers": [container]}}}}, namespace)

    def ready() -> list:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=webs", "-o", "json").stdout)
        ips = [p["status"].get("podIP") for p in pods["items"] if p["status"].get("phase") == "Running"]
        return ips if len(ips) == 2 and all(ips) else []
    ips = cluster.wait_for(ready, timeout=120, what="2 running pods of deploy/webs")
    assert all(_connect(ip, 8080) == "connected" for ip in ips)
    fw = Running(cluster, "firewall", "deploy/webs", "-n", namespace, "--deny", "tcp/8080", "--interval", "1s",
                 "-o", "json", "--image", image)
    fw.read_until(lambda line: line.startswith("{"))
    netnses = [_netns_of(ip) for ip in ips]
    assert all(_attached_in(n)["xdp"] for n in netnses)
    assert [_connect(ip, 8080, 2.0) for ip in ips] == ["timeout", "timeout"]
    upd = plugin(cluster, "firewall", "deployment/webs", "-n", namespace, "--update", "--deny", "udp/53")
    assert upd.code == 0, upd.err
    assert all(_connect(ip, 8080) == "connected" for ip in ips)
    fw.signal(signal.SIGINT)
    res = fw.finish()
    assert res.code == 0, res.err
    finals = [r for r in _json_reports(res.lines()) if r["final"]]
    assert len({r["pod"] for r in finals}) == 2 and all(r["rules"][0]["rule"] == "udp/53" for r in finals), finals
    reports = _json_reports(res.lines())
    assert {r["pod"] for r in reports if r["rules"][0]["rule"] == "tcp/8080" and r["rules"][0]["packets"] >= 1} \
        == {r["pod"] for r in finals}
    for n in netnses:
        assert _attached_in(n) == {"xdp": None, "links": []}
    assert all(_connect(ip, 8080) == "connected" for ip in ips)
    _nothing_left(cluster, res.err)


def test_ctrl_c_ends_a_seccomp_recording_sooner_with_its_profile(cluster, namespace, image):
    """--duration 10m, Ctrl-C once the tracer runs: the profile of what was seen so far is printed,
    exit 0, the trace deleted."""
    _pod(cluster, namespace, "busy", WORKLOAD.format(n=3000))
    rec = Running(cluster, "seccomp", "pod/busy", "-n", namespace, "--duration", "10m", "--image", image)
    end = time.monotonic() + 120
    while not any(e and "Attached" in e for e in rec.err) and time.monotonic() < end:
        time.sleep(0.2)
    time.sleep(3)
    rec.signal(signal.SIGINT)
    res = rec.finish(timeout=180)
    assert res.code == 0, res.err
    names = json.loads(res.out)["syscalls"][0]["names"]
    assert "mkdir" in names or "mkdirat" in names
    _nothing_left(cluster, res.err)
