"""The log stream of a trace survives what a cluster does to connections: an API server or a
kubelet that restarts mid-stream loses and repeats no line."""
from __future__ import annotations

import signal
import time

import pytest

from clusterlib import cluster_sh
from pluginlib import TICKER, Running, left_behind, new_namespace, ticker_pod, ticks

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("component", ["apiserver", "kubelet"])
def test_a_restart_loses_and_repeats_no_line(cluster, component):
    if not cluster.local:
        pytest.skip(f"restarts the local cluster's {component} (hack/cluster.sh restart-{component})")
    with new_namespace(cluster, "pytrace-stream") as ns:
        ticker_pod(cluster, ns, "fast", "-i", "20")  # 50 lines a second
        run = Running(cluster, "run", "pod/fast", "-n", ns, "--attach",
                      "-e", f'uprobe:{TICKER}:pytrace_tick {{ printf("tick %d\\n", arg0); }}')
        run.read_until(lambda line: line.startswith("tick "))
        p = cluster_sh(f"restart-{component}", timeout=180)
        assert p.returncode == 0, p.stderr
        restarted = time.monotonic()
        # lines written after the restart arrive
        run.read_until(lambda line: line.startswith("tick ") and time.monotonic() - restarted > 3, timeout=120)
        run.signal(signal.SIGINT)
        r = run.finish()
        assert r.code == 0, r.err
        n = ticks(r.lines())
        assert len(n) > 150, len(n)  # seconds of ticks, across the restart
        assert n == list(range(n[0], n[0] + len(n))), [x for i, x in enumerate(n[1:]) if x != n[i] + 1][:10]
    assert left_behind(cluster) == []
