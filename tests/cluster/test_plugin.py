"""`kubectl pytrace run` against the real cluster: events that really came from the pods' kernels,
scoped to the pods named, and nothing left in the cluster afterwards."""
from __future__ import annotations

import json
import os
import signal

import pytest

from pluginlib import (TICKER, Running, deployment, left_behind, new_namespace, plugin, ticker_pod, ticks,
                       wait_nothing_left)

pytestmark = pytest.mark.cluster

UPROBE = f"uprobe:{TICKER}:pytrace_tick"


@pytest.fixture(scope="module")
def pods(cluster):
    """Two tickers of one image on one node: A reads /etc/hostname every 100 ms, B /etc/hosts."""
    with new_namespace(cluster, "pytrace-plugin") as ns:
        a = ticker_pod(cluster, ns, "tick-a", "-i", "100", "-f", "/etc/hostname")
        ticker_pod(cluster, ns, "tick-b", "-i", "100", "-f", "/etc/hosts", nodeName=a["spec"]["nodeName"])
        yield ns


def test_uprobe_receives_the_real_arguments(cluster, pods):
    r = plugin(cluster, "run", "pod/tick-a", "-n", pods, "--attach", "--deadline", "3s",
               "-e", UPROBE + ' { printf("tick %d %s\\n", arg0, str(arg1)); }')
    assert r.code == 0, r.err
    got = [line.split() for line in r.lines() if line.startswith("tick ")]
    assert len(got) >= 10, r.out
    numbers = [int(g[1]) for g in got]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers  # consecutive calls
    assert {g[2] for g in got} == {"/etc/hostname"}  # the second argument, read from the pod's memory
    # the same numbers the pod itself printed
    printed = set(ticks(cluster.logs("tick-a", pods).splitlines()))
    assert set(numbers) <= printed
    assert "Attached 1 probe" in r.err
    assert left_behind(cluster) == []


def test_uretprobe_receives_the_return_values(cluster, pods):
    # pytrace_tick returns what read() got from /etc/hostname: the pod's name and a newline
    r = plugin(cluster, "run", "pod/tick-a", "-n", pods, "--attach", "--deadline", "2s",
               "-e", f"uretprobe:{TICKER}:pytrace_tick {{ @[retval] = count(); }}")
    assert r.code == 0, r.err
    maps = [line for line in r.lines() if line.startswith("@[")]
    assert len(maps) == 1 and maps[0].startswith(f"@[{len('tick-a') + 1}]: "), r.out
    assert int(maps[0].split(": ")[1]) >= 10


def test_a_pod_trace_sees_only_that_pods_syscalls(cluster, pods):
    prog = 'tracepoint:syscalls:sys_enter_openat { @[str(args->filename)] = count(); }'
    scoped = plugin(cluster, "run", "pod/tick-a", "-n", pods, "--attach", "--deadline", "3s", "-e", prog)
    assert scoped.code == 0, scoped.err
    assert "@[/etc/hostname]: " in scoped.out
    assert "/etc/hosts]" not in scoped.out  # B was busy opening it all along (the node trace sees it)
    assert len([line for line in scoped.lines() if line.startswith("@[")]) == 1, scoped.out
    node = cluster.get("pod", "tick-a", pods)["spec"]["nodeName"]
    whole = plugin(cluster, "run", f"node/{node}", "--attach", "--deadline", "3s", "-e", prog)
    assert whole.code == 0, whole.err
    assert "@[/etc/hostname]: " in whole.out and "@[/etc/hosts]: " in whole.out


def test_json_events_carry_the_pod(cluster, pods):
    r = plugin(cluster, "run", "pod/tick-a", "-n", pods, "--attach", "--deadline", "2s", "-o", "json",
               "-e", UPROBE + ' { printf("tick %d\\n", arg0); }')
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.lines() if line.startswith("{")]
    printfs = [e for e in events if e["type"] == "printf"]
    assert printfs and all(e["data"].startswith("tick ") for e in printfs)
    node = cluster.get("pod", "tick-a", pods)["spec"]["nodeName"]
    assert all(e == {"type": "printf", "data": e["data"], "namespace": pods, "pod": "tick-a", "container": "main",
                     "node": node} for e in printfs), printfs[0]
    maps = [e for e in events if e["type"] != "printf"]
    assert maps == [], maps  # no map in this program


def test_a_deployment_is_traced_in_every_replica(cluster, pods):
    names = deployment(cluster, pods, "web", 2, "-i", "100")
    r = plugin(cluster, "run", "deploy/web", "-n", pods, "--attach", "--deadline", "3s",
               "-e", UPROBE + ' { printf("tick %d\\n", arg0); @calls = count(); }')
    assert r.code == 0, r.err
    prefixes = {line.split("] ")[0] + "]" for line in r.lines() if line.startswith("[pod/")}
    assert prefixes == {f"[pod/{n}/main]" for n in names}, r.out
    # the counts cover both replicas: as many calls as tick lines of both (one @calls per tracer:
    # one when both replicas are on one node, one per node otherwise)
    calls = sum(int(line.split(": ")[1]) for line in r.lines() if line.startswith("@calls: "))
    assert calls == len(ticks(r.lines()))
    j = plugin(cluster, "run", "deploy/web", "-n", pods, "--attach", "--deadline", "2s", "-o", "json",
               "-e", UPROBE + ' { printf("tick %d\\n", arg0); }')
    assert j.code == 0, j.err
    events = [json.loads(line) for line in j.lines() if line.startswith("{")]
    printfs = [e for e in events if e["type"] == "printf"]
    assert {e["pod"] for e in printfs} == set(names)
    assert {(e["namespace"], e["container"]) for e in printfs} == {(pods, "main")}
    assert all(e["node"] for e in printfs)


def test_selector_and_not_ready_pods(cluster, pods):
    r = plugin(cluster, "run", "-l", "app=tick-b", "-n", pods, "--attach", "--deadline", "1s",
               "-e", UPROBE + " { @ = count(); }")
    assert r.code == 0, r.err
    assert any(line.startswith("@: ") for line in r.lines())


def test_ctrl_c_prints_end_and_leaves_nothing(cluster, pods):
    run = Running(cluster, "run", "pod/tick-a", "-n", pods, "--attach",
                  "-e", UPROBE + ' { printf("tick %d\\n", arg0); @n = count(); } END { printf("the end\\n"); }')
    run.read_until(lambda line: line.startswith("tick "))
    run.signal(signal.SIGINT)
    r = run.finish()
    assert r.code == 0, r.err
    assert "the end" in r.lines() and any(line.startswith("@n: ") for line in r.lines()), r.out
    assert left_behind(cluster) == []


def test_deadline_ends_the_trace_and_leaves_nothing(cluster, pods):
    r = plugin(cluster, "run", "pod/tick-b", "-n", pods, "--attach", "--deadline", "1s",
               "-e", UPROBE + ' { @n = count(); } END { printf("ended\\n"); }')
    assert r.code == 0, r.err
    assert r.lines()[0] == "ended" and r.lines()[1].startswith("@n: "), r.out
    assert left_behind(cluster) == []


def test_deleting_the_target_pod_ends_the_trace(cluster, pods):
    ticker_pod(cluster, pods, "short-lived", "-i", "100")
    run = Running(cluster, "run", "pod/short-lived", "-n", pods, "--attach",
                  "-e", UPROBE + ' { printf("tick %d\\n", arg0); }')
    run.read_until(lambda line: line.startswith("tick "))
    cluster.kubectl("delete", "pod", "short-lived", "-n", pods, "--grace-period=1")
    r = run.finish(timeout=120)
    assert f"the target pod {pods}/short-lived was deleted: ending the trace" in r.err, r.err
    assert r.code == 0, r.err
    wait_nothing_left(cluster)


def test_a_killed_tracer_is_reported(cluster, pods):
    if not cluster.nodes_on_this_host:
        pytest.skip("kills the tracer process on the node: only the local cluster's and kind's nodes run here")
    run = Running(cluster, "run", "pod/tick-a", "-n", pods, "--attach", "--name", "to-be-killed",
                  "-e", UPROBE + ' { printf("tick %d\\n", arg0); }')
    run.read_until(lambda line: line.startswith("tick "))
    pod = json.loads(cluster.kubectl(
        "get", "pods", "-n", "kubectl-pytrace", "-l", "kubectl-pytrace/trace=to-be-killed", "-o", "json").stdout)["items"][0]
    from kubectl_pytrace.containers.resolve import resolve_container

    for pid in resolve_container(pod["status"]["containerStatuses"][0]["containerID"]).pids:
        os.kill(pid, signal.SIGKILL)  # the tracer, as the OOM killer would
    r = run.finish(timeout=120)
    assert r.code == 1, (r.code, r.err)
    name = pod["metadata"]["name"]
    assert f"error: the tracer pod {name} on node " in r.err, r.err
    assert "ended without finishing the trace: Error (exit code 137)" in r.err, r.err
    wait_nothing_left(cluster)


def test_without_attach_the_trace_runs_on_and_get_logs_delete_manage_it(cluster, pods):
    r = plugin(cluster, "run", "pod/tick-a", "-n", pods, "--name", "kept",
               "-e", UPROBE + ' { printf("tick %d\\n", arg0); }')
    assert r.code == 0, r.err
    assert r.out.startswith("trace/kept created (pod/tick-a: 1 container on node "), r.out
    try:
        cluster.wait_for(lambda: "Running" in plugin(cluster, "get", "kept").out, timeout=60, what="Running")
        g = plugin(cluster, "get")
        header, row = g.lines()[0].split(), next(line for line in g.lines() if " kept " in line).split()
        assert header == ["NAMESPACE", "NAME", "TARGET", "NODE", "STATUS", "AGE"]
        assert row[:3] == ["kubectl-pytrace", "kept", "pod/tick-a"] and row[4] == "Running", g.out
        assert plugin(cluster, "get", "-o", "name").lines() == ["trace/kept"]
        wide = plugin(cluster, "get", "kept", "-o", "wide")
        assert f"{pods}/tick-a" in wide.out and "IMAGE" in wide.lines()[0]
        items = json.loads(plugin(cluster, "get", "-o", "json").out)["items"]
        assert [i["kind"] for i in items] == ["Job"]
        cluster.wait_for(lambda: len(ticks(plugin(cluster, "logs", "kept").lines())) >= 3, timeout=60,
                         what="ticks in the trace's logs")
    finally:
        d = plugin(cluster, "delete", "kept")
    assert d.code == 0 and d.out.strip() == "trace/kept deleted", (d.out, d.err)
    assert left_behind(cluster) == []
    gone = plugin(cluster, "get", "kept")
    assert gone.code == 1 and "trace 'kept' not found" in gone.err
