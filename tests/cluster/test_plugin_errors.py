"""Mistakes and refusals through the plugin, on the real cluster: each is a clear message and a
non-zero exit, and leaves nothing behind."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from clusterlib import REPO
from pluginlib import TICKER, left_behind, new_namespace, plugin, ticker_pod

pytestmark = pytest.mark.cluster

UPROBE = f"uprobe:{TICKER}:pytrace_tick {{ @ = count(); }}"


@pytest.fixture(scope="module")
def ns(cluster):
    with new_namespace(cluster, "pytrace-errors") as name:
        ticker_pod(cluster, name, "tick", "-i", "200")
        yield name


def jobs_now(cluster) -> list:
    return left_behind(cluster)


def test_a_program_error_creates_nothing(cluster, ns):
    before = jobs_now(cluster)
    r = plugin(cluster, "run", "pod/tick", "-n", ns, "--attach", "-e", "BEGIN { printf(\"%d\\n\"); }")
    assert r.code == 1
    assert r.err == ('stdin:1:9-22: ERROR: not enough arguments for format string (0 supplied, 1 expected)\n'
                     'BEGIN { printf("%d\\n"); }\n'
                     '        ~~~~~~~~~~~~~~\n'), r.err
    assert jobs_now(cluster) == before == []


def test_a_missing_pod_container_or_node(cluster, ns):
    r = plugin(cluster, "run", "pod/nope", "-n", ns, "-e", UPROBE)
    assert (r.code, r.err.strip()) == (1, f"error: pod 'nope' not found in namespace '{ns}'")
    r = plugin(cluster, "run", "pod/tick", "-c", "sidecar", "-n", ns, "-e", UPROBE)
    assert (r.code, r.err.strip()) == (1, "error: pod tick has no container 'sidecar' (it has main)")
    r = plugin(cluster, "run", "node/no-such-node", "-e", UPROBE)
    assert (r.code, r.err.strip()) == (1, "error: node 'no-such-node' not found")
    r = plugin(cluster, "run", "deploy/nope", "-n", ns, "-e", UPROBE)
    assert (r.code, r.err.strip()) == (1, f"error: deployment 'nope' not found in namespace '{ns}'")
    r = plugin(cluster, "run", "pods/tick/x", "-n", ns, "-e", UPROBE)
    assert r.code == 2 and "is not TYPE/NAME" in r.err
    assert jobs_now(cluster) == []


def test_a_pod_that_is_not_running(cluster, ns):
    ticker_pod(cluster, ns, "done", "-n", "1", "-i", "10", wait=False)
    cluster.wait_pod_phase("done", ns, ["Succeeded"])
    r = plugin(cluster, "run", "pod/done", "-n", ns, "-e", UPROBE)
    assert r.code == 1 and r.err.startswith("error: pod done is Succeeded"), r.err
    assert "only running pods can be traced" in r.err


def test_a_node_error_comes_back_through_the_plugin(cluster, ns):
    # compiles on the client (it cannot know the function is missing), fails on the node
    r = plugin(cluster, "run", "pod/tick", "-n", ns, "--attach", "--deadline", "5s",
               "-e", f"uprobe:{TICKER}:no_such_function {{ @ = count(); }}")
    assert r.code == 1, r.err
    assert "ERROR: uprobe:" in r.err and "no function named 'no_such_function'" in r.err, r.err
    assert jobs_now(cluster) == []


def test_an_image_that_cannot_be_pulled_fails_fast(cluster, ns):
    start = time.monotonic()
    r = plugin(cluster, "run", "pod/tick", "-n", ns, "--attach", "--image", "localhost/no/such-image:1",
               "-e", UPROBE)
    took = time.monotonic() - start
    assert r.code == 1, r.err
    assert "cannot start on node" in r.err and ("ErrImagePull" in r.err or "ImagePullBackOff" in r.err), r.err
    assert took < 60, took
    assert jobs_now(cluster) == []


def test_a_node_without_kernel_headers(cluster, ns, tmp_path):
    # the tracer's /usr/src and /lib/modules replaced by empty directories
    name = f"no-headers-{uuid.uuid4().hex[:6]}"
    job = json.loads(plugin(cluster, "run", "pod/tick", "-n", ns, "--dry-run=client", "-o", "json", "--name", name,
                            "-e", UPROBE).out)["items"][1]
    volumes = job["spec"]["template"]["spec"]["volumes"]
    for v in volumes:
        if v["name"] in ("src", "modules"):
            v["hostPath"] = {"path": f"/tmp/pytrace-empty-{v['name']}", "type": "DirectoryOrCreate"}
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"spec": {"template": {"spec": {"volumes": volumes}}}}))
    r = plugin(cluster, "run", "pod/tick", "-n", ns, "--attach", "--patch", str(patch), "--name", name, "-e", UPROBE)
    assert r.code == 1, r.err
    assert "error: no kernel headers found for kernel " in r.err, r.err
    assert "in the tracer pod, mount the host's /lib/modules and /usr/src" in r.err
    assert jobs_now(cluster) == []


def test_server_side_dry_run_validates_and_creates_nothing(cluster, ns):
    r = plugin(cluster, "run", "pod/tick", "-n", ns, "--dry-run=server", "-o", "json", "-e", UPROBE)
    assert r.code == 0, r.err
    items = json.loads(r.out)["items"]
    assert [i["kind"] for i in items] == ["ConfigMap", "Job"]
    assert items[1]["spec"]["template"]["spec"]["hostPID"] is True
    assert items[1]["metadata"]["uid"]  # the server filled it in
    assert jobs_now(cluster) == []


def test_client_dry_run_of_a_node_needs_no_cluster(cluster):
    r = plugin(cluster, "run", "node/any", "--dry-run=client", "-e", UPROBE,
               env={"KUBECONFIG": "/nonexistent"})
    assert r.code == 0, r.err
    assert "kind: Job" in r.out and "nodeName: any" in r.out


def test_restricted_target_namespace_is_traced(cluster):
    with new_namespace(cluster, "pytrace-restricted", {"pod-security.kubernetes.io/enforce": "restricted"}) as ns:
        from clusterlib import manifest_pod

        pod = manifest_pod("locked", cluster.workload_image, [TICKER, "-i", "100"])
        pod["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        pod["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                           "capabilities": {"drop": ["ALL"]}}
        cluster.apply(pod, ns)
        cluster.wait_pod_phase("locked", ns, ["Running"])
        # a privileged pod is refused there...
        bad = plugin(cluster, "run", "pod/locked", "-n", ns, "--tracer-namespace", ns, "-e", UPROBE)
        assert bad.code == 1, bad.err
        assert bad.err.startswith(f"error: the tracer namespace {ns} enforces the Pod Security level 'restricted'")
        # ...so the tracers run in their own namespace
        r = plugin(cluster, "run", "pod/locked", "-n", ns, "--attach", "--deadline", "2s", "-e", UPROBE)
        assert r.code == 0, r.err
        assert any(line.startswith("@: ") and int(line.split(": ")[1]) > 0 for line in r.lines()), r.out
    assert jobs_now(cluster) == []


def test_rbac_roles_of_the_manifest_are_enough_and_needed(cluster, ns):
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "rbac.yaml"))
    user = f"tracer-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "clusterrolebinding", user, "--clusterrole=kubectl-pytrace-user", f"--user={user}")
    cluster.kubectl("create", "rolebinding", user, "-n", "kubectl-pytrace", "--role=kubectl-pytrace-tracer",
                    f"--user={user}")
    try:
        r = plugin(cluster, "run", "pod/tick", "-n", ns, "--as", user, "--name", "as-user",
                   "-e", f"uprobe:{TICKER}:pytrace_tick {{ printf(\"tick %d\\n\", arg0); }}")
        assert r.code == 0, r.err
        assert "as-user" in plugin(cluster, "get", "--as", user).out
        logs = cluster.wait_for(lambda: [line for line in plugin(cluster, "logs", "as-user", "--as", user).out.splitlines()
                                         if line.startswith("tick ")], timeout=60, what="ticks")
        assert logs
        d = plugin(cluster, "delete", "as-user", "--as", user)
        assert d.code == 0, d.err
        stranger = plugin(cluster, "run", "pod/tick", "-n", ns, "--as", "nobody", "-e", UPROBE)
        assert stranger.code == 1
        assert stranger.err.startswith(f"error: forbidden: nobody cannot get pods in namespace {ns}\n"), stranger.err
        assert "manifests/rbac.yaml" in stranger.err
    finally:
        cluster.kubectl("delete", "clusterrolebinding", user, check=False)
        cluster.kubectl("delete", "rolebinding", user, "-n", "kubectl-pytrace", check=False)
    assert jobs_now(cluster) == []
