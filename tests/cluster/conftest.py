"""The Kubernetes cluster that the cluster tests run against (session scope).

- ``KUBECONFIG`` set: that cluster is used as it is (kind, a real one...). kubectl is
  ``$PYTRACE_KUBECTL``, else ``kubectl`` on PATH, else the one hack/cluster.sh built. The tracer and
  workload images must already be on its nodes (hack/kind.sh loads them into kind). With
  ``PYTRACE_KIND_CLUSTER`` (``eval "$(hack/kind.sh env)"`` sets both) it is that kind cluster of
  this machine: ``cluster.kind_nodes`` names the node containers, and the tests marked ``kind``
  (tests/cluster/test_kind*.py: two workers, node processes seen from here) run; without it they
  are deselected (``hack/kind.sh test`` runs them once per CI run, hack/test.sh).
- ``KUBECONFIG`` unset: ``hack/cluster.sh up`` brings the local single-node cluster up (building
  Kubernetes on first use, ~5 min cold) and ``hack/cluster.sh down`` removes it at the end, unless
  ``PYTRACE_KEEP_CLUSTER=1`` or it was already running before the session.

It skips only when the cluster truly cannot exist here: not root, or a kernel without BPF. A failing
``up`` is an error, with the end of its log in the message.
"""
from __future__ import annotations

import os
import pathlib
import uuid

import pytest

from clusterlib import (KIND_ENV, UP_TIMEOUT, ClusterError, cluster_sh, bpf_missing_reason, external_cluster,
                        local_cluster_running, start_local_cluster)


@pytest.fixture(scope="session")
def cluster():
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        yield external_cluster(kubeconfig)
        return
    if os.geteuid() != 0:
        pytest.skip("the local cluster (hack/cluster.sh) needs root; run as root or set KUBECONFIG")
    reason = bpf_missing_reason()
    if reason:
        pytest.skip(reason)
    was_running = local_cluster_running()
    c = start_local_cluster()
    try:
        yield c
    finally:
        if not was_running and os.environ.get("PYTRACE_KEEP_CLUSTER") != "1":
            p = cluster_sh("down", timeout=600)
            if p.returncode != 0:
                raise ClusterError(f"hack/cluster.sh down failed:\n{p.stderr[-4000:]}")


@pytest.fixture
def namespace(cluster):
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"pytrace-test-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # Pods need the namespace's default service account, which a controller creates.
    cluster.wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name,
                                             check=False).returncode == 0,
                     timeout=60, what=f"service account default in {name}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "kind: needs the kind cluster of hack/kind.sh (two workers, node "
                                       "containers on this machine); deselected without PYTRACE_KIND_CLUSTER")


def pytest_collection_modifyitems(config, items):
    # The first cluster test also pays for `up` (a cold build of Kubernetes and the images), which
    # the suite's per-test timeout does not allow for.
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UP_TIMEOUT + 600))
    if not os.environ.get(KIND_ENV):
        kind_only = [item for item in items if item.get_closest_marker("kind")]
        if kind_only:
            config.hook.pytest_deselected(items=kind_only)
            items[:] = [item for item in items if not item.get_closest_marker("kind")]
