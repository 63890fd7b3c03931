"""The plugin on the kind cluster of hack/kind.sh: two workers, so a workload's replicas get one
tracer each and the paths of several tracers (per-pod lines, JSON events labelled with their node,
--merge) meet real nodes; and the kind nodes share this machine's kernel, so scoping, PIDs and
clean-up are checked from here: a busy pod on the same node and one on the other node stay silent,
BPF programs and tracer processes in the node containers are gone after Ctrl-C and --deadline.

Run by `hack/kind.sh test` (deselected against other clusters: tests/cluster/conftest.py)."""
from __future__ import annotations

import json
import re
import signal
import time
import uuid
from typing import Dict, List

import pytest

from clusterlib import bpf_program_loaded, bpf_programs_in, manifest_pod, tracer_processes_in
from pluginlib import TICKER, Running, left_behind, plugin, ticks

pytestmark = [pytest.mark.cluster, pytest.mark.kind]

UPROBE = f"uprobe:{TICKER}:pytrace_tick"
OPENAT = "tracepoint:syscalls:sys_enter_openat"


def workers(cluster) -> List[str]:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return sorted(n["metadata"]["name"] for n in nodes
                  if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {}))


def pinned_ticker(cluster, ns: str, name: str, node: str, *args: str) -> dict:
    pod = manifest_pod(name, cluster.workload_image, [TICKER, *args], nodeName=node)
    pod["metadata"]["labels"] = {"app": name}
    cluster.apply(pod, ns)
    cluster.wait_pod_phase(name, ns, ["Running"])
    return cluster.get("pod", name, ns)


def host_pids(pod: dict) -> List[int]:
    """The host PIDs of a pod's container: kind's nodes are containers on this machine."""
    from kubectl_pytrace.containers.resolve import resolve_container

    return list(resolve_container(pod["status"]["containerStatuses"][0]["containerID"]).pids)


def nspids(host_pid: int) -> List[int]:
    """A process's PID in each pid namespace, the machine's first (NSpid of /proc/PID/status)."""
    with open(f"/proc/{host_pid}/status") as f:
        return [int(x) for x in next(line for line in f if line.startswith("NSpid:")).split()[1:]]


def node_pids(pod: dict) -> List[int]:
    """The PIDs a pod's processes have in their node (what `docker exec NODE ps` shows, and what
    `pid` is in a trace there: the tracer's own pid namespace is the node's)."""
    return [nspids(p)[1] for p in host_pids(pod)]


@pytest.fixture(scope="module")
def spread(cluster):
    """A namespace with
    - deploy/web: two tickers (every 100 ms), one on each worker (topology spread),
    - target: a ticker on worker A that opens /etc/hostname every 100 ms,
    - neighbour (worker A) and remote (worker B): tickers of the same binary opening /etc/hosts every 20 ms.
    """
    assert cluster.kind, "needs the kind cluster of hack/kind.sh"
    a, b = workers(cluster)
    ns = f"pytrace-kind-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", ns, check=False)
                     .returncode == 0, timeout=60, what="the default service account")
    spec = manifest_pod("web", cluster.workload_image, [TICKER, "-i", "100"])["spec"]
    spec["restartPolicy"] = "Always"
    spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                          "whenUnsatisfiable": "DoNotSchedule",
                                          "labelSelector": {"matchLabels": {"app": "web"}}}]
    spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [a, b]}]}]}}}
    cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}}, ns)
    pods = {"target": pinned_ticker(cluster, ns, "target", a, "-i", "100", "-f", "/etc/hostname"),
            "neighbour": pinned_ticker(cluster, ns, "neighbour", a, "-i", "20", "-f", "/etc/hosts"),
            "remote": pinned_ticker(cluster, ns, "remote", b, "-i", "20", "-f", "/etc/hosts")}

    def web_pods() -> Dict[str, str]:  # pod -> node, once both run
        items = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o", "json").stdout)["items"]
        running = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in items
                   if p.get("status", {}).get("phase") == "Running"
                   and all(c.get("ready") for c in p["status"].get("containerStatuses", [{}]))}
        return running if len(running) == 2 else {}
    web = cluster.wait_for(web_pods, timeout=120, what="two ready replicas of deploy/web")
    assert sorted(web.values()) == [a, b], web  # one on each worker
    yield {"ns": ns, "a": a, "b": b, "web": web, **pods}
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def on_the_nodes(cluster) -> Dict[str, list]:
    """What of traces is in the node containers, per node that has any: tracer processes and the
    BPF programs that processes of pods hold."""
    out = {}
    for node, cid in cluster.kind_nodes.items():
        out[node] = tracer_processes_in(cid) + bpf_programs_in(cid)
    return {n: v for n, v in out.items() if v}


def programs(found: Dict[str, list]) -> List[int]:
    return [x[0] for v in found.values() for x in v if isinstance(x, tuple)]


def test_a_deployment_on_two_workers_gets_one_tracer_per_node(cluster, spread):
    ns, web = spread["ns"], spread["web"]
    run = Running(cluster, "run", "deploy/web", "-n", ns, "--attach", "--name", "two-nodes", "--deadline", "4s",
                  "-e", UPROBE + ' { printf("tick %d\\n", arg0); @calls = count(); }')
    run.read_until(lambda line: line.startswith("[pod/"))
    jobs = json.loads(cluster.kubectl("get", "pods", "-n", "kubectl-pytrace", "-l", "kubectl-pytrace/trace=two-nodes",
                                      "-o", "json").stdout)["items"]
    assert sorted(p["spec"]["nodeName"] for p in jobs) == sorted(web.values())  # one tracer on each worker
    r = run.finish()
    assert r.code == 0, r.err
    # each worker's tracer attached and printed the ticks of the replica on its node
    assert sorted(re.findall(r"^\[node/([^\]]+)\] Attached 1 probe$", r.err, re.M)) == sorted(web.values()), r.err
    by_pod: Dict[str, List[int]] = {}
    for line in r.lines():
        m = re.match(r"^\[pod/([^/]+)/main\] tick (\d+)$", line)
        if m:
            by_pod.setdefault(m.group(1), []).append(int(m.group(2)))
    assert set(by_pod) == set(web), r.out
    for pod, n in by_pod.items():
        assert len(n) >= 10 and n == list(range(n[0], n[0] + len(n))), (pod, n)  # consecutive: none lost
    # without --merge, each tracer's maps, under its node and pod, count that replica's calls
    for pod, node in web.items():
        block = r.out.split(f"=== maps of node/{node} (pod/{pod}/main) ===", 1)[1]
        calls = int(re.search(r"^@calls: (\d+)$", block, re.M).group(1))
        assert calls == len(by_pod[pod]), (node, pod, calls, len(by_pod[pod]))
    assert left_behind(cluster) == []


def test_merge_adds_up_the_maps_of_both_workers(cluster, spread):
    ns, web = spread["ns"], spread["web"]
    pids = {pid: pod for pod in web for pid in node_pids(cluster.get("pod", pod, ns))}
    r = plugin(cluster, "run", "deploy/web", "-n", ns, "--attach", "--deadline", "3s", "--merge",
               "-e", UPROBE + " { @calls = count(); @by_pid[pid] = count(); }")
    assert r.code == 0, r.err
    assert "=== maps of" not in r.out  # one set of maps
    calls = [int(x) for x in re.findall(r"^@calls: (\d+)$", r.out, re.M)]
    by_pid = {int(k): int(v) for k, v in re.findall(r"^@by_pid\[(\d+)\]: (\d+)$", r.out, re.M)}
    assert len(calls) == 1 and set(by_pid) == set(pids), (r.out, pids)  # both replicas, both nodes
    assert calls[0] == sum(by_pid.values()) and min(by_pid.values()) >= 10, r.out
    # JSON: events of both nodes labelled with their node and pod; merged maps carry no node
    j = plugin(cluster, "run", "deploy/web", "-n", ns, "--attach", "--deadline", "2s", "-o", "json", "--merge",
               "-e", UPROBE + ' { printf("tick %d\\n", arg0); @calls = count(); }')
    assert j.code == 0, j.err
    events = [json.loads(line) for line in j.lines() if line.startswith("{")]
    printfs = [e for e in events if e["type"] == "printf"]
    assert {(e["pod"], e["node"]) for e in printfs} == set(web.items())
    maps = [e for e in events if e["type"] == "map"]
    assert maps == [{"type": "map", "data": {"@calls": len(printfs)}}], maps
    # without --merge: one map event per node
    u = plugin(cluster, "run", "deploy/web", "-n", ns, "--attach", "--deadline", "2s", "-o", "json",
               "-e", UPROBE + " { @calls = count(); }")
    assert u.code == 0, u.err
    maps = [json.loads(line) for line in u.lines() if line.startswith("{")]
    assert sorted(m["node"] for m in maps if m["type"] == "map") == sorted(web.values()), maps


def test_busy_pods_on_the_same_and_the_other_worker_stay_silent(cluster, spread):
    ns, a, b = spread["ns"], spread["a"], spread["b"]
    target, neighbour = (node_pids(spread[k]) for k in ("target", "neighbour"))
    prog = OPENAT + " { @[pid, str(args->filename)] = count(); }"
    scoped = plugin(cluster, "run", "pod/target", "-n", ns, "--attach", "--deadline", "3s", "-e", prog)
    assert scoped.code == 0, scoped.err
    seen = {(int(p), f) for p, f in re.findall(r"^@\[(\d+), (.*)\]: \d+$", scoped.out, re.M)}
    assert seen == {(target[0], "/etc/hostname")}, scoped.out
    # the same binary on the same node (one inode for the uprobe): only the target's calls
    u = plugin(cluster, "run", "pod/target", "-n", ns, "--attach", "--deadline", "2s",
               "-e", UPROBE + ' { printf("%d %s\\n", pid, str(arg1)); }')
    assert u.code == 0, u.err
    assert u.lines() and set(u.lines()) == {f"{target[0]} /etc/hostname"}, u.out
    # the busy pods were busy: a trace of worker A sees the neighbour's opens. A node/ trace sees
    # the node's processes (its PID namespace and the pods' nested in it), not those of worker B,
    # which shares the machine's kernel but which node A cannot number (pid 0) (docs/cluster.md)
    whole_a = plugin(cluster, "run", f"node/{a}", "--attach", "--deadline", "3s", "-e", prog)
    assert whole_a.code == 0, whole_a.err
    hosts_a = {int(p) for p, f in re.findall(r"^@\[(\d+), (.*)\]: \d+$", whole_a.out, re.M) if f == "/etc/hosts"}
    assert set(neighbour) <= hosts_a and 0 not in hosts_a, (whole_a.out[-2000:], neighbour)
    assert f"{target[0]}, /etc/hostname]" in whole_a.out
    assert not re.search(r"^@\[0, ", whole_a.out, re.M), whole_a.out[-2000:]
    whole_b = plugin(cluster, "run", f"node/{b}", "--attach", "--deadline", "3s", "-e", prog)
    assert whole_b.code == 0, whole_b.err
    assert not re.search(r"^@\[0, ", whole_b.out, re.M), whole_b.out  # not worker A's pods
    assert node_pids(spread["remote"])[0] in {int(p) for p in re.findall(r"^@\[(\d+), /etc/hosts\]", whole_b.out, re.M)}


def test_a_node_target_runs_its_tracer_on_that_node(cluster, spread):
    b = spread["b"]
    r = plugin(cluster, "run", f"node/{b}", "--attach", "--deadline", "2s", "-o", "json",
               "-e", 'BEGIN { printf("hello\\n"); } ' + OPENAT + ' /comm == "ticker"/ { @[str(args->filename)] = count(); }')
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.lines() if line.startswith("{")]
    assert {"type": "printf", "data": "hello\n", "node": b} in events, events
    maps = [e for e in events if e["type"] == "map"]
    assert len(maps) == 1 and maps[0]["node"] == b and maps[0]["data"]["@"]["/etc/hosts"] >= 50, maps  # remote's
    assert left_behind(cluster) == []


def test_pids_are_the_nodes_and_ns_pids_the_containers(cluster, spread):
    ns = spread["ns"]
    pid = host_pids(spread["target"])[0]
    nspid = nspids(pid)
    # the machine's PID, the node's, the container's (the ticker is its container's first process)
    assert len(nspid) == 3 and nspid[0] == pid and nspid[2] == 1, nspid
    assert nspid[1] not in (pid, 1)
    prog = UPROBE + ' { printf("%d %d %d\\n", pid, tid, pid(init)); exit(); }'
    r = plugin(cluster, "run", "pod/target", "-n", ns, "--attach", "--deadline", "10s", "-e", prog)
    assert r.code == 0, r.err
    # the node's numbers (what `docker exec NODE ps` shows); pid(init): the machine's
    assert r.lines() == [f"{nspid[1]} {nspid[1]} {pid}"], r.out
    r = plugin(cluster, "run", "pod/target", "-n", ns, "--attach", "--deadline", "10s", "--ns-pids", "-e", prog)
    assert r.code == 0, r.err
    assert r.lines() == [f"1 1 {pid}"], r.out  # as the container sees itself


def test_ctrl_c_stops_both_tracers_and_leaves_nothing_on_either_node(cluster, spread):
    ns, web = spread["ns"], spread["web"]
    run = Running(cluster, "run", "deploy/web", "-n", ns, "--attach",
                  "-e", UPROBE + ' { printf("tick %d\\n", arg0); @n = count(); } END { printf("the end\\n"); }')
    seen = set()
    run.read_until(lambda line: bool(seen.add(line.split("]")[0])) or len(seen) == 2)
    # while it runs, the checks below find the tracers and their programs on both workers
    during = on_the_nodes(cluster)
    assert set(during) == set(web.values()) and len(programs(during)) >= 2, during
    assert left_behind(cluster) != []
    run.signal(signal.SIGINT)
    r = run.finish()
    assert r.code == 0, r.err
    assert sorted(line for line in r.lines() if line.endswith("the end")) == \
        sorted(f"[node/{n}] the end" for n in web.values()), r.out
    assert len(re.findall(r"^@n: \d+$", r.out, re.M)) == 2, r.out
    assert left_behind(cluster) == []
    assert on_the_nodes(cluster) == {}
    assert [p for p in programs(during) if bpf_program_loaded(p)] == []


def test_deadline_stops_both_tracers_and_leaves_nothing_on_either_node(cluster, spread):
    ns, web = spread["ns"], spread["web"]
    run = Running(cluster, "run", "deploy/web", "-n", ns, "--attach", "--deadline", "6s",
                  "-e", UPROBE + ' { @n = count(); } END { printf("ended\\n"); }')
    deadline = time.monotonic() + 60
    during: Dict[str, list] = {}
    while time.monotonic() < deadline and len(programs(during)) < 2:  # both tracers attached
        during = on_the_nodes(cluster)
        time.sleep(0.5)
    assert set(during) == set(web.values()) and len(programs(during)) >= 2, during
    r = run.finish()
    assert r.code == 0, r.err
    assert sorted(line for line in r.lines() if line.endswith("ended")) == \
        sorted(f"[node/{n}] ended" for n in web.values()), r.out
    assert left_behind(cluster) == []
    assert on_the_nodes(cluster) == {}
    assert [p for p in programs(during) if bpf_program_loaded(p)] == []
    assert ticks(r.lines()) == []
