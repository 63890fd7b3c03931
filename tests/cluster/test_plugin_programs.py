"""Catalog programs run by name against a pod (`run pod/X --program NAME --param k=v`): the client
compiles with the node's facts deferred, positional parameters included, and the events come from
the pod's kernel."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from kubectl_pytrace.k8s.manifests import TRACE_LABEL
from clusterlib import manifest_pod
from pluginlib import TICKER, Running, left_behind, new_namespace, plugin, ticker_pod, wait_ready

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


# ---- slowqueries: a real PostgreSQL server in a pod ----------------------------------------------

PG_BIN = "/usr/lib/postgresql/15/bin"
PG_DIR = "/tmp/pg"  # the data directory and the socket, inside the pod
PG_START = f"""set -e
mkdir -p {PG_DIR} && chown postgres {PG_DIR}
runuser -u postgres -- {PG_BIN}/initdb -A trust -U postgres -D {PG_DIR}/data >/dev/null
exec runuser -u postgres -- {PG_BIN}/postgres -D {PG_DIR}/data -k {PG_DIR} -c listen_addresses=
"""


@pytest.fixture(scope="module")
def postgres(cluster):
    """A pod running Debian's postgresql-15 (USDT probes in its binary), ready for queries."""
    with new_namespace(cluster, "pytrace-pg") as ns:
        pod = manifest_pod("pg", cluster.postgres_image, ["sh", "-c", PG_START], container={
            "readinessProbe": {"exec": {"command": [f"{PG_BIN}/pg_isready", "-q", "-h", PG_DIR]},
                               "periodSeconds": 1}})
        cluster.apply(pod, ns)
        wait_ready(cluster, "pg", ns, timeout=120)
        yield ns


def psql(cluster, ns: str, *sql: str) -> str:
    """Runs each statement as a query of its own, in one session (one backend process) of pod pg."""
    args = [arg for one in sql for arg in ("-c", one)]
    return cluster.kubectl("exec", "-n", ns, "pg", "--", "runuser", "-u", "postgres", "--", f"{PG_BIN}/psql",
                           "-h", PG_DIR, "-XAtq", *args, timeout=60).stdout


def test_slowqueries_reports_the_slow_query_of_a_postgres_pod(cluster, postgres):
    name = f"pytrace-sq-{uuid.uuid4().hex[:6]}"
    trace = Running(cluster, "run", "pod/pg", "-n", postgres, "--attach", "--deadline", "60s", "--name", name,
                   "--ns-pids", "--program", "slowqueries", "--param", "threshold=200ms")
    trace.read_until(lambda line: line.startswith("TIME"))  # BEGIN: the probes are attached
    backend = psql(cluster, postgres, "SELECT pg_backend_pid()", "SELECT 1", "SELECT pg_sleep(0.3)",
                   "SELECT 42").split()[0]
    lines = trace.read_until(lambda line: "pg_sleep" in line, timeout=30)
    psql(cluster, postgres, "SELECT 7")  # fast: must not be reported either
    trace.signal()
    r = trace.finish()
    assert r.code == 0, r.err
    queries = [line for line in r.lines() if "SELECT" in line]
    assert len(queries) == 1, (lines, r.out)  # SELECT 1, 42, 7 and the pid query are fast
    m = re.match(r"^\d\d:\d\d:\d\d (\d+)\s+(\d+)  SELECT pg_sleep\(0\.3\)$", queries[0])
    assert m, r.out
    assert m.group(1) == backend  # --ns-pids: the pid the server itself reports
    assert 300 <= int(m.group(2)) < 2000, r.out
    nothing_left_of(cluster, name)
