"""`kubectl pytrace ps` on the cluster: a running trace shows up with its tracer pod."""
from __future__ import annotations

import json

import pytest

from pluginlib import TICKER, left_behind, new_namespace, plugin, ticker_pod, ticks

pytestmark = pytest.mark.cluster


def test_a_running_trace_shows_up_with_its_pod(cluster):
    with new_namespace(cluster, "pytrace-ps") as ns:
        ticker_pod(cluster, ns, "watched", "-i", "100")
        r = plugin(cluster, "run", "pod/watched", "-n", ns, "--name", "seen-by-ps",
                   "-e", f'uprobe:{TICKER}:pytrace_tick {{ printf("tick %d\\n", arg0); }}')
        assert r.code == 0, r.err
        cluster.wait_for(lambda: ticks(plugin(cluster, "logs", "seen-by-ps").lines()), timeout=90,
                         what="the trace running")
        try:
            p = plugin(cluster, "ps", "-o", "json")
            assert p.code == 0, p.err
            progs = json.loads(p.out)
            tracer_pods = json.loads(cluster.kubectl("get", "pods", "-n", "kubectl-pytrace", "-l",
                                                     "kubectl-pytrace/trace=seen-by-ps", "-o", "json").stdout)["items"]
            pod = tracer_pods[0]["metadata"]["name"]
            mine = [x for x in progs if any(h.get("pod") == f"kubectl-pytrace/{pod}/tracer" for h in x["holders"])]
            assert mine and all(x["ours"] for x in mine), progs
            assert any(a.startswith("uprobe:") and a.endswith(tuple("0123456789abcdef")) and "ticker" in a
                       for x in mine for a in x["attached"]), mine
            assert {x["node"] for x in mine} == {tracer_pods[0]["spec"]["nodeName"]}
            text = plugin(cluster, "ps")
            assert text.lines()[0].split()[:4] == ["NODE", "ID", "TYPE", "NAME"]
            assert any(f"kubectl-pytrace/{pod}/tracer" in line and line.split()[-1] == "yes" for line in text.lines())
        finally:
            plugin(cluster, "delete", "seen-by-ps")
    assert [x for x in left_behind(cluster) if "pytrace-ps-" in x] == []
