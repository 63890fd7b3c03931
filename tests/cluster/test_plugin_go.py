"""A uprobe on a Go program in a pod: the client compiles without the binary, the tracer on the node
reads it (a Go binary, register ABI) and the arguments printed are the ones the pod passed."""
from __future__ import annotations

import importlib.util
import re
import uuid

import pytest

from clusterlib import REPO, manifest_pod
from pluginlib import new_namespace, plugin

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def go_pod(cluster):
    """tests/workloads/go's goserver, built on this host (copied to kind's nodes), in a pod of the
    workload image through a hostPath volume, as /app/goserver."""
    spec = importlib.util.spec_from_file_location("pytrace_go_build", REPO / "tests" / "workloads" / "go" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    binary = mod.build_go()
    cluster.host_dir_on_nodes(binary.parent)
    with new_namespace(cluster, "pytrace-go") as ns:
        pod = manifest_pod("goserver", cluster.workload_image, ["/app/goserver", "0", "100"],
                           container={"volumeMounts": [{"name": "app", "mountPath": "/app", "readOnly": True}]},
                           volumes=[{"name": "app", "hostPath": {"path": str(binary.parent), "type": "Directory"}}])
        cluster.apply(pod, ns)
        cluster.wait_pod_phase("goserver", ns, ["Running"])
        yield ns


def test_go_arguments_in_a_pod(cluster, go_pod):
    name = f"pytrace-go-{uuid.uuid4().hex[:6]}"
    prog = ('uprobe:/app/goserver:main.handle { printf("handle n=%d name=%s id=%d\\n", arg0, gostr(arg1, arg2), '
            '*(int64 *)arg3); }')
    r = plugin(cluster, "run", "pod/goserver", "-n", go_pod, "--attach", "--deadline", "3s", "--name", name,
               "-e", prog)
    assert r.code == 0, r.err
    got = re.findall(r"^handle n=(\d+) name=(\S+) id=(\d+)$", r.out, re.M)
    assert len(got) >= 10, r.out
    assert all(name_ == f"caller-{n}" and int(id_) == 1000 + int(n) for n, name_, id_ in got), got


def test_uretprobe_on_a_go_function_in_a_pod(cluster, go_pod):
    # the client cannot read the binary: the node finds main.handle's RET instructions; the pod's
    # goroutine stacks move (grow) under the probes and the pod keeps running
    prog = ('uretprobe:/app/goserver:main.handle { printf("handle -> %d\\n", retval); }\n'
            'uretprobe:/app/goserver:main.grow { @grow_returns = count(); }')
    r = plugin(cluster, "run", "pod/goserver", "-n", go_pod, "--attach", "--deadline", "3s", "-e", prog)
    assert r.code == 0, r.err
    got = [int(v) for v in re.findall(r"^handle -> (\d+)$", r.out, re.M)]
    assert len(got) >= 10, r.out
    # handle(i, "caller-"+i, &request{ID: 1000+i}) returns i + len(name) + 1000 + i: consecutive calls
    assert all(b - a in (2, 3) for a, b in zip(got, got[1:])), got
    m = re.search(r"^@grow_returns: (\d+)$", r.out, re.M)
    assert m and int(m.group(1)) >= 10 * 65, r.out
    pod = cluster.get("pod", "goserver", go_pod)
    assert pod["status"]["phase"] == "Running" and pod["status"]["containerStatuses"][0]["restartCount"] == 0


def test_uretprobe_on_a_go_address_in_a_pod_is_refused(cluster, go_pod):
    r = plugin(cluster, "run", "pod/goserver", "-n", go_pod, "--attach", "--deadline", "3s",
               "-e", "uretprobe:/app/goserver:0x401000 { print(retval); }")
    assert r.code != 0
    assert "uretprobes on an address of a Go binary are refused" in r.err, r.err
