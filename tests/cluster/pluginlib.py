"""Helpers of the plugin's end-to-end tests: the plugin run as a user runs it (its console script,
as a process), workload pods and deployments, and what a trace left in the cluster."""
from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

from clusterlib import Cluster, REPO, manifest_pod

PLUGIN = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
TRACER_NS = "kubectl-pytrace"
MANAGED = "app.kubernetes.io/managed-by=kubectl-pytrace"
TICKER = "/usr/local/bin/ticker"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def lines(self) -> List[str]:
        return [line for line in self.out.splitlines() if line]


def plugin(cluster: Cluster, *args: str, timeout: float = 180, env: Optional[Dict[str, str]] = None) -> Result:
    p = subprocess.run([PLUGIN, *args, "--kubeconfig", cluster.kubeconfig], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, **(env or {})))
    return Result(p.returncode, p.stdout, p.stderr)


class Running:
    """A plugin process running in the background (--attach), stopped like a user stops it. Its
    stdout and stderr are read by threads into queues, so no line is lost between reads."""

    def __init__(self, cluster: Cluster, *args: str):
        self.p = subprocess.Popen([PLUGIN, *args, "--kubeconfig", cluster.kubeconfig], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.err: List[str] = []
        self.out: List[str] = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put), daemon=True).start()
        self.err_done = threading.Thread(target=self._pump, args=(self.p.stderr, self.err.append), daemon=True)
        self.err_done.start()

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        put(None)

    def read_until(self, pred, timeout: float = 90) -> List[str]:
        """stdout lines until one satisfies pred (the trace is running)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                break
            self.out.append(line)
            if pred(line):
                return self.out
        self.p.kill()
        raise AssertionError(f"no line satisfied the condition in {timeout}s: {self.out[-20:]}\n"
                             + "\n".join(e for e in self.err[-30:] if e is not None))

    def signal(self, sig: int = signal.SIGINT) -> None:
        self.p.send_signal(sig)

    def finish(self, timeout: float = 120) -> Result:
        self.p.wait(timeout=timeout)
        while True:
            line = self.lines.get(timeout=30)
            if line is None:
                break
            self.out.append(line)
        self.err_done.join(timeout=30)
        err = [line for line in self.err if line is not None]
        return Result(self.p.returncode, "\n".join(self.out) + ("\n" if self.out else ""),
                      "\n".join(err) + ("\n" if err else ""))


@contextlib.contextmanager
def new_namespace(cluster: Cluster, prefix: str, labels: Optional[Dict[str, str]] = None) -> Iterator[str]:
    """A namespace of its own for a test (with its default service account), deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    for k, v in (labels or {}).items():
        cluster.kubectl("label", "namespace", name, f"{k}={v}")
    try:
        cluster.wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
                         .returncode == 0, timeout=120, what=f"the default service account of {name}")
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def ticker_pod(cluster: Cluster, namespace: str, name: str, *args: str, labels: Optional[dict] = None,
               wait: bool = True, **spec: Any) -> dict:
    pod = manifest_pod(name, cluster.workload_image, [TICKER, *args], **spec)
    pod["metadata"]["labels"] = labels or {"app": name}
    cluster.apply(pod, namespace)
    if wait:
        cluster.wait_pod_phase(name, namespace, ["Running"])
        wait_ready(cluster, name, namespace)
    return cluster.get("pod", name, namespace)


def wait_ready(cluster: Cluster, name: str, namespace: str, timeout: float = 60) -> None:
    cluster.wait_for(lambda: _ready(cluster, name, namespace), timeout=timeout, what=f"pod {name} ready")


def _ready(cluster: Cluster, name: str, namespace: str) -> bool:
    statuses = cluster.get("pod", name, namespace).get("status", {}).get("containerStatuses", [])
    return bool(statuses) and all(c.get("ready") for c in statuses)  # (a Pending pod has none)


def deployment(cluster: Cluster, namespace: str, name: str, replicas: int, *args: str) -> List[str]:
    """A deployment of tickers; returns its pods' names once all are ready."""
    pod = manifest_pod(name, cluster.workload_image, [TICKER, *args])
    spec = pod["spec"]
    spec["restartPolicy"] = "Always"
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}
    cluster.apply(obj, namespace)

    def ready() -> List[str]:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app={name}", "-o", "json").stdout)
        names = [p["metadata"]["name"] for p in pods["items"]
                 if all(c.get("ready") for c in p.get("status", {}).get("containerStatuses", [{}]))
                 and p.get("status", {}).get("containerStatuses")]
        return names if len(names) == replicas else []
    return cluster.wait_for(ready, timeout=120, what=f"{replicas} ready pods of deploy/{name}")


def left_behind(cluster: Cluster, selector: str = MANAGED) -> List[str]:
    """Jobs, pods and ConfigMaps of kubectl-pytrace still in the cluster."""
    out = cluster.kubectl("get", "jobs,pods,configmaps", "-A", "-l", selector, "-o", "name").stdout
    return [line for line in out.splitlines() if line]


def wait_nothing_left(cluster: Cluster, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while left_behind(cluster) and time.monotonic() < end:
        time.sleep(0.5)
    assert left_behind(cluster) == []


def ticks(lines: Sequence[str]) -> List[int]:
    """The numbers of "tick N" lines (with or without a [pod/...] prefix)."""
    out = []
    for line in lines:
        word = line.split("] ", 1)[-1]
        if word.startswith("tick "):
            out.append(int(word.split()[1]))
    return out
