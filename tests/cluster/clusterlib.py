"""Helpers of the cluster tests: the Cluster handle, `hack/cluster.sh` calls, manifests as dicts."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest


REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "hack" / "cluster.sh"
TRACER_IMAGE = os.environ.get("PYTRACE_TRACER_IMAGE", "localhost/kubectl-pytrace/tracer:dev")
WORKLOAD_IMAGE = os.environ.get("PYTRACE_WORKLOAD_IMAGE", "localhost/kubectl-pytrace/workload:dev")
POSTGRES_IMAGE = os.environ.get("PYTRACE_POSTGRES_IMAGE", "localhost/kubectl-pytrace/postgres:dev")
# `up` may have to install packages, build Kubernetes (cold: ~5 min) and the tracer image.
UP_TIMEOUT = int(os.environ.get("PYTRACE_CLUSTER_UP_TIMEOUT", "2400"))


class ClusterError(RuntimeError):
    pass


@dataclasses.dataclass
class Cluster:
    kubeconfig: str
    kubectl_path: str
    local: bool  # the cluster of hack/cluster.sh on this host
    tracer_image: str = TRACER_IMAGE
    workload_image: str = WORKLOAD_IMAGE
    postgres_image: str = POSTGRES_IMAGE  # Debian's postgresql-15 (hack/images.sh postgres)
    up_seconds: Optional[float] = None  # how long `hack/cluster.sh up` took in this session
    # a kind cluster on this machine (hack/kind.sh): node name -> the ID of its Docker container
    kind_nodes: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def kind(self) -> bool:
        return bool(self.kind_nodes)

    @property
    def nodes_on_this_host(self) -> bool:
        """The nodes' processes run on this machine's kernel and show in its /proc: hack/cluster.sh's
        node is this host, kind's nodes are containers on it."""
        return self.local or self.kind

    def host_dir_on_nodes(self, path: pathlib.Path) -> None:
        """Makes a directory of this host available at the same path on every node, for a hostPath
        volume: hack/cluster.sh's node is this host; kind's nodes get a copy (through tar inside the
        node: its /tmp is a tmpfs that `docker cp` does not see)."""
        if not self.kind_nodes:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(path), arcname=path.name)
        for node, container in self.kind_nodes.items():
            p = subprocess.run([DOCKER, "exec", "-i", container, "sh", "-c",
                                'mkdir -p "$1" && tar -xf - -C "$1"', "sh", str(path.parent)],
                               input=buf.getvalue(), capture_output=True, timeout=120)
            if p.returncode != 0:
                raise ClusterError(f"copying {path} to node {node}: {p.stderr.decode(errors='replace').strip()}")

    def kubectl(self, *args: str, input: Optional[str] = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        """Run kubectl against this cluster; with check=True a failure raises ClusterError."""
        cmd = [self.kubectl_path, "--kubeconfig", self.kubeconfig, *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p

    def apply(self, obj: dict, namespace: Optional[str] = None) -> None:
        """Create or update an object given as a dict (sent as JSON: no text templating)."""
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, input=json.dumps(obj))

    def get(self, kind: str, name: str, namespace: Optional[str] = None) -> dict:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        return json.loads(self.kubectl(*args).stdout)

    def wait_for(self, predicate, timeout: float = 120, interval: float = 0.5, what: str = "condition"):
        """Poll predicate() until it returns a true value, which is returned."""
        deadline = time.monotonic() + timeout
        last_exc: Optional[BaseException] = None
        while time.monotonic() < deadline:
            try:
                v = predicate()
                if v:
                    return v
            except ClusterError as e:
                last_exc = e
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout}s waiting for {what}"
                           + (f" (last error: {last_exc})" if last_exc else ""))

    def pod_phase(self, name: str, namespace: str) -> str:
        return self.get("pod", name, namespace).get("status", {}).get("phase", "")

    def wait_pod_phase(self, name: str, namespace: str, phases: Sequence[str], timeout: float = 120) -> str:
        def check():
            phase = self.pod_phase(name, namespace)
            if phase in ("Failed",) and "Failed" not in phases:
                raise AssertionError(f"pod {namespace}/{name} failed:\n{self.describe('pod', name, namespace)}")
            return phase if phase in phases else ""
        try:
            return self.wait_for(check, timeout=timeout, what=f"pod {namespace}/{name} in {'/'.join(phases)}")
        except ClusterError as e:
            raise ClusterError(f"{e}\n{self.describe('pod', name, namespace)}") from None

    def describe(self, kind: str, name: str, namespace: str) -> str:
        return self.kubectl("describe", kind, name, "-n", namespace, check=False).stdout[-3000:]

    def logs(self, name: str, namespace: str, *extra: str) -> str:
        return self.kubectl("logs", name, "-n", namespace, *extra).stdout


def cluster_sh(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SH), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def env_from_cluster_sh() -> dict:
    out = cluster_sh("env", timeout=30).stdout
    env = {}
    for line in out.splitlines():
        line = line.removeprefix("export ")
        k, sep, v = line.partition("=")
        if sep:
            env[k] = v
    return env


def bpf_missing_reason() -> Optional[str]:
    if not os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled"):
        return "this kernel has no bpf() system call (CONFIG_BPF_SYSCALL)"
    return None


def external_cluster(kubeconfig: str) -> Cluster:
    kubectl = os.environ.get("PYTRACE_KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        built = env_from_cluster_sh().get("KUBECTL", "")
        kubectl = built if built and os.access(built, os.X_OK) else None
    if not kubectl:
        pytest.skip("KUBECONFIG is set but no kubectl was found (set PYTRACE_KUBECTL or put kubectl on PATH)")
    c = Cluster(kubeconfig=kubeconfig, kubectl_path=kubectl, local=False)
    p = c.kubectl("version", "-o", "json", check=False, timeout=30)
    if p.returncode != 0:
        raise ClusterError(f"the cluster of KUBECONFIG={kubeconfig} does not answer: {p.stderr.strip()}")
    name = os.environ.get(KIND_ENV)
    if name:
        c.kind_nodes = kind_node_containers(name)
        nodes = set(c.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split())
        if not c.kind_nodes or set(c.kind_nodes) != nodes:
            raise ClusterError(f"{KIND_ENV}={name}, but the cluster's nodes {sorted(nodes)} are not the kind "
                               f"node containers on this machine {sorted(c.kind_nodes)}")
    return c


def start_local_cluster() -> Cluster:
    """`hack/cluster.sh up`; returns the Cluster (raises ClusterError with the log's end on failure)."""
    start = time.monotonic()
    p = cluster_sh("up")
    took = time.monotonic() - start
    if p.returncode != 0:
        raise ClusterError(f"hack/cluster.sh up failed ({p.returncode}) after {took:.0f}s:\n"
                           f"{p.stderr[-4000:]}")
    env = env_from_cluster_sh()
    return Cluster(kubeconfig=env["KUBECONFIG"], kubectl_path=env["KUBECTL"], local=True, up_seconds=took)


def local_cluster_running() -> bool:
    return cluster_sh("status", timeout=60).returncode == 0


def manifest_pod(name: str, image: str, command: Sequence[str], **spec: Any) -> dict:
    """A Pod as a dict: one container, never pulled (images are loaded into the node), no restarts."""
    container = {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": list(command)}
    container.update(spec.pop("container", {}))
    pod_spec = {"restartPolicy": spec.pop("restartPolicy", "Never"), "containers": [container],
                "terminationGracePeriodSeconds": 1}
    pod_spec.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}


# ------------------------------------------------------------------------------------------------
# kind (hack/kind.sh): its nodes are Docker containers on this machine, so the tests see their
# processes, cgroups and BPF programs from here.

KIND_ENV = "PYTRACE_KIND_CLUSTER"  # set by `hack/kind.sh env`: the cluster is that kind cluster
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")


def kind_node_containers(name: str) -> Dict[str, str]:
    """node name -> container ID of the kind cluster `name` (its containers carry kind's label)."""
    p = subprocess.run([DOCKER, "ps", "--no-trunc", "--filter", f"label=io.x-k8s.kind.cluster={name}",
                        "--format", "{{.Names}} {{.ID}}"], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise ClusterError(f"docker ps failed: {p.stderr.strip()}")
    return dict(line.split() for line in p.stdout.splitlines() if line.strip())


def _cgroup_text(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return ""


def _cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def processes_in(container_id: str, within: str = "") -> List[int]:
    """Host PIDs of the processes in a Docker container (a kind node) and everything it runs; with
    `within`, only those whose cgroup path also holds it (e.g. "kubepods": the node's pods)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            text = _cgroup_text(int(d))
            if f"/docker/{container_id}" in text and within in text:
                out.append(int(d))
    return out


def tracer_processes_in(container_id: str) -> List[int]:
    """Host PIDs of tracers (`python3 -m kubectl_pytrace tracer ...`) running in a kind node."""
    return [pid for pid in processes_in(container_id)
            if "kubectl_pytrace" in _cmdline(pid) and "tracer" in _cmdline(pid)]


def bpf_programs_in(container_id: str, within: str = "kubepods") -> List[Tuple[int, str, int]]:
    """(program id, holder's comm, holder's host PID) of every BPF program that a process of a kind
    node's pods holds (within=""': of the whole node, its systemd's too), read from the processes'
    file descriptors (this machine's bpftool lists no holders)."""
    found = set()
    for pid in processes_in(container_id, within):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    prog = next(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
            except (OSError, StopIteration):
                continue
            found.add((prog, comm, pid))
    return sorted(found)


def bpf_program_loaded(prog_id: int) -> bool:
    """Whether the kernel still has BPF program `prog_id` (ids are never reused)."""
    return subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True,
                          timeout=60).returncode == 0
