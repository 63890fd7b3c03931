"""Catalog programs run by name against a pod (`run pod/X --program NAME --param k=v`): the client
compiles with the node's facts deferred, positional parameters included, and the events come from
the pod's kernel."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from kubectl_pytrace.k8s.manifests import TRACE_LABEL
from pluginlib import TICKER, left_behind, new_namespace, plugin, ticker_pod

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def pod(cluster):
    with new_namespace(cluster, "pytrace-programs") as ns:
        ticker_pod(cluster, ns, "tick", "-i", "100", "-f", "/etc/hostname")
        yield ns


def nothing_left_of(cluster, name: str, timeout: float = 60) -> None:
    """This trace's objects are gone (other traces may run in the cluster meanwhile)."""
    end = time.monotonic() + timeout
    while left_behind(cluster, f"{TRACE_LABEL}={name}") and time.monotonic() < end:
        time.sleep(0.5)
    assert left_behind(cluster, f"{TRACE_LABEL}={name}") == []


def test_filewatch_by_name_against_a_pod(cluster, pod):
    name = f"pytrace-fw-{uuid.uuid4().hex[:6]}"
    r = plugin(cluster, "run", "pod/tick", "-n", pod, "--attach", "--deadline", "3s", "--name", name,
               "--program", "filewatch", "--param", "path=/etc/hostname")
    assert r.code == 0, r.err
    opens = [line for line in r.lines() if re.match(r"^\d\d:\d\d:\d\d \d+\s+\d+\s+ticker\s+/etc/hostname$", line)]
    assert len(opens) >= 10, r.out
    assert re.search(r"^@opens\[ticker, \d+\]: \d+$", r.out, re.M), r.out
    nothing_left_of(cluster, name)


def test_funccount_wildcard_from_positional_parameters_against_a_pod(cluster, pod):
    # uprobe:$1:$2 with $1 the pod's binary: resolved and expanded on the node, not on the client
    name = f"pytrace-fc-{uuid.uuid4().hex[:6]}"
    r = plugin(cluster, "run", "pod/tick", "-n", pod, "--attach", "--deadline", "3s", "--name", name,
               "--program", "funccount", "--param", f"binary={TICKER}", "--param", "pattern=pytrace_*")
    assert r.code == 0, r.err
    m = re.search(rf"^@\[uprobe:{re.escape(TICKER)}:pytrace_tick\]: (\d+)$", r.out, re.M)
    assert m and int(m.group(1)) >= 10, r.out
    nothing_left_of(cluster, name)
