"""Where the firewall attaches on this host besides `ip netns` namespaces: a Docker container's
network namespace (--container-id), one on the host's network (refused: it would be the host's
traffic), and what happens when the namespace goes away under a running firewall."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from netlab import docker_base_image, progs, run_cli

pytestmark = [pytest.mark.root, pytest.mark.bpf]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "containers"))


@pytest.fixture(scope="module")
def image():
    yield from docker_base_image()


def _container(image: str, *args: str) -> str:
    import dockerlib

    return dockerlib.docker("run", "-d", "--label", f"{dockerlib.LABEL}=1", *args, image, "sleep", "300").stdout.strip()


@pytest.mark.docker
def test_a_containers_interface(image, guard):
    import dockerlib

    cid = _container(image)
    try:
        g = guard("firewall", "--container-id", cid[:12], "--deny", "icmp", "--deadline", "2s")
        line = g.wait_attached()
        assert f"firewall on eth0 (container {cid[:12]}): XDP (BPF link" in line
        assert g.p.wait(timeout=30) == 0
    finally:
        dockerlib.docker("rm", "-f", cid, check=False)


@pytest.mark.docker
def test_a_container_on_the_host_network_is_refused(image):
    import dockerlib

    cid = _container(image, "--network", "host")
    try:
        before = progs("pytrace_fw")
        p = run_cli("firewall", "--local", "--container-id", cid, "--deny", "tcp/80")
        assert p.returncode == 1
        assert f"container {cid[:12]} uses the host's network namespace (hostNetwork)" in p.stderr
        assert "--local --interface IFACE" in p.stderr and progs("pytrace_fw") == before
        p = run_cli("shape", "--local", "--container-id", cid, "--egress-rate", "1mbit")
        assert p.returncode == 1 and "uses the host's network namespace" in p.stderr
    finally:
        dockerlib.docker("rm", "-f", cid, check=False)


def test_the_firewall_ends_when_its_namespace_goes(lab, guard):
    g = guard("firewall", "--netns", lab.b.name, "-i", lab.b.dev, "--deny", "tcp/1", "--interval", "1s")
    g.wait_attached()
    ids = progs("pytrace_fw")
    lab.destroy()
    assert g.p.wait(timeout=30) == 0
    assert "the interface of target 1 is gone" in g.stderr
    assert "final counters" in g.stdout
    assert not set(ids) & set(progs("pytrace_fw"))


@pytest.mark.parametrize("args, message", [
    (["firewall", "--deny", "tcp/80"], "give a target: pod/NAME or node/NAME (or --local)"),
    (["firewall", "--netns", "x", "--deny", "tcp/80"], "--netns, --container-id and --pid go with --local"),
    (["firewall", "--local", "pod/x", "--deny", "tcp/80"], "--local takes no TARGET"),
    (["firewall", "--local", "--deny", "tcp/80"], "give the interface with -i/--interface"),
    (["firewall", "node/n1", "--deny", "tcp/80"], "give the interface with -i/--interface"),
    (["firewall", "--local", "--netns", "a", "--pid", "1", "--deny", "tcp/80"], "at most one of --netns"),
    (["shape", "--local", "-i", "lo"], "Missing option '--egress-rate'"),
    (["firewall", "--local", "-i", "bad/name", "--deny", "tcp/80"], "invalid interface name 'bad/name'"),
    (["seccomp", "--local", "--duration", "1s"], "--container-id ID or --pid PID"),
    (["seccomp", "--local", "--pid", "1", "--name", "web"], "--name names the SeccompProfile of -o profile-cr"),
    (["seccomp", "pod/web", "-o", "profile-cr", "--name", "Web_1"], "invalid name for a SeccompProfile: 'Web_1'"),
])
def test_usage_errors(args, message):
    p = run_cli(*args)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr


def _tracer_config(tmp_path: Path, command: str, options: dict, container_id: str = "") -> Path:
    import json

    from kubectl_pytrace import __version__, traceconfig

    targets = [{"namespace": "shop", "pod": "web-1", "container": "c", "container_id": f"docker://{container_id}",
                "pod_uid": "u"}] if container_id else []
    cfg = {"config_version": traceconfig.CONFIG_VERSION, "client_version": __version__, "name": "t", "filename": "",
           "params": [], "deadline": 2.0, "ns_pids": False, "nodes": {"n1": targets}, "command": command,
           "options": options}
    (tmp_path / traceconfig.CONFIG_FILE).write_text(json.dumps(cfg))
    (tmp_path / traceconfig.PROGRAM_FILE).write_text("")
    return tmp_path


def _tracer(directory: Path):
    import json
    import subprocess

    from netlab import PYTRACE

    p = subprocess.run([PYTRACE, "tracer", "--config", str(directory)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NODE_NAME="n1"))
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")], p.stderr


@pytest.mark.docker
def test_the_tracer_pods_command_on_a_container(image, tmp_path):
    """What a tracer Job runs for `firewall pod/...`, here with a Docker container for the pod."""
    import dockerlib
    from kubectl_pytrace.guard.commands import firewall_settings

    cid = _container(image)
    try:
        code, recs, err = _tracer(_tracer_config(tmp_path, "firewall", dict(
            firewall_settings(["icmp"], [], "count", "eth0", 1.0, False)), cid))
    finally:
        dockerlib.docker("rm", "-f", cid, check=False)
    assert code == 0, (recs, err)
    kinds = [next(iter(r)) for r in recs]
    assert kinds[0] == "hello" and kinds[-1] == "exit" and recs[-1]["exit"] == 0
    assert any("firewall on eth0 (pod shop/web-1): XDP (BPF link" in r.get("stderr", "") for r in recs)
    finals = [r for r in recs if "firewall" in r and r["firewall"]["final"]]
    assert len(finals) == 1 and finals[0]["src"] == 1 and finals[0]["firewall"]["mode"] == "count"


def test_the_tracer_refuses_a_command_it_does_not_know(tmp_path):
    code, recs, _ = _tracer(_tracer_config(tmp_path, "teleport", {}))
    assert code == 1 and recs[-1]["error"] == "this tracer does not know the command 'teleport'"
