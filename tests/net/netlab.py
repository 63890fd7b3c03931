"""Network namespaces joined by a veth pair, and what the firewall and shaper tests look at.

    lab = Lab.create()                 # namespaces <tag>-a and <tag>-b, veth va (in a) <-> vb (in b)
    lab.a.run("python3", ...)          # a command inside a namespace
    lab.connect("b", 8080)             # from a to b's address: "connected", "refused" or "timeout"
    lab.destroy()

What is attached is read with the tools a user has (ip, tc, bpftool), never with the product's code:
xdp_prog(ns, dev) from `ip -d -j link`, tc_filters(ns, dev) from `tc -j filter show`, links(prog_ids)
from `bpftool link` (tcx links, which Debian's bpftool 7.1 does not show in `bpftool net`), and
progs(name) from `bpftool prog`.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
PY = sys.executable


def sh(*cmd: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr}")
    return p


@dataclass
class Netns:
    name: str
    dev: str
    addr: str
    addr6: str

    def cmd(self, *cmd: str) -> List[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return sh(*self.cmd(*cmd), **kw)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(*cmd), **kw)


@dataclass
class Lab:
    tag: str
    a: Netns
    b: Netns
    extra_b: str = ""  # a second IPv4 address of b (set by add_address)

    @staticmethod
    def create() -> "Lab":
        tag = f"pyt{secrets.token_hex(3)}"
        n = int(tag[3:], 16) % 200 + 20
        a = Netns(f"{tag}-a", "va", f"10.{n}.0.1", f"fd00:{n:x}::1")
        b = Netns(f"{tag}-b", "vb", f"10.{n}.0.2", f"fd00:{n:x}::2")
        lab = Lab(tag, a, b)
        try:
            for ns in (a, b):
                sh("ip", "netns", "add", ns.name)
            sh("ip", "link", "add", a.dev, "netns", a.name, "type", "veth", "peer", "name", b.dev, "netns", b.name)
            for ns in (a, b):
                ns.run("ip", "addr", "add", f"{ns.addr}/24", "dev", ns.dev)
                ns.run("ip", "-6", "addr", "add", f"{ns.addr6}/64", "dev", ns.dev, "nodad")
                ns.run("ip", "link", "set", ns.dev, "up")
                ns.run("ip", "link", "set", "lo", "up")
        except BaseException:
            lab.destroy()
            raise
        return lab

    def add_address(self, which: str = "b") -> str:
        ns = self.b if which == "b" else self.a
        extra = ns.addr.rsplit(".", 1)[0] + (".3" if which == "b" else ".4")
        ns.run("ip", "addr", "add", f"{extra}/24", "dev", ns.dev)
        return extra

    def destroy(self) -> None:
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns.name, check=False)

    # ---- traffic -----------------------------------------------------------------------------
    def servers(self, ports: Sequence[int], which: str = "b") -> subprocess.Popen:
        """TCP listeners on the ports (every address), until the process is killed."""
        ns = self.b if which == "b" else self.a
        p = ns.popen(PY, str(HERE / "listen.py"), *map(str, ports), stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "listening", "the listeners did not start"
        return p

    def connect(self, host: str, port: int, source: Optional[str] = None, timeout: float = 1.5) -> str:
        """From a: 'connected', 'refused' or 'timeout' (no answer at all)."""
        args = [PY, str(HERE / "listen.py"), "--connect", host, str(port), str(timeout)]
        if source:
            args.append(source)
        return self.a.run(*args, timeout=timeout + 30).stdout.strip()

    def ping(self, host: str) -> bool:
        return self.a.run(PY, str(HERE / "listen.py"), "--ping", host, check=False).returncode == 0

    def bulk_bps(self, host: str, seconds: float, port: int = 5201, skip: float = 1.0) -> float:
        """A bulk TCP transfer a -> b: the rate b received after its first `skip` seconds (bulk.py)."""
        srv = self.b.popen(PY, str(HERE / "bulk.py"), "serve", str(port), str(seconds), str(skip), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        try:
            assert srv.stderr.readline().strip() == "listening"
            snd = self.a.popen(PY, str(HERE / "bulk.py"), "send", host, str(port), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            out, _ = srv.communicate(timeout=seconds + 60)
            snd.wait(timeout=30)
        finally:
            srv.kill()
        return json.loads(out)["bps"]


# ---- what is attached, as the tools show it --------------------------------------------------------

def xdp_prog(ns: Netns) -> Optional[int]:
    """The id of the XDP program on ns's device, None when there is none."""
    info = json.loads(ns.run("ip", "-d", "-j", "link", "show", "dev", ns.dev).stdout)[0]
    xdp = info.get("xdp") or {}
    prog = xdp.get("prog") or next(iter(xdp.get("attached") or []), {}).get("prog") or {}
    return prog.get("id")


def bpftool_net(ns: Netns) -> List[dict]:
    """What `bpftool net` lists for ns's device (XDP, and tc filters; not tcx, which Debian's
    bpftool 7.1 does not know)."""
    out = json.loads(ns.run("bpftool", "net", "show", "-j").stdout)[0]
    return [x for kind in ("xdp", "tc") for x in out.get(kind, []) if x.get("devname") == ns.dev]


def tc_filters(ns: Netns, direction: str = "egress") -> List[dict]:
    out = ns.run("tc", "-j", "filter", "show", "dev", ns.dev, direction, check=False).stdout
    return [f for f in (json.loads(out) if out.strip() else []) if f.get("kind") == "bpf"]


def qdiscs(ns: Netns) -> List[str]:
    return [q["kind"] for q in json.loads(ns.run("tc", "-j", "qdisc", "show", "dev", ns.dev).stdout)]


def progs(name: str) -> List[int]:
    """Ids of the loaded BPF programs called name."""
    return [p["id"] for p in json.loads(sh("bpftool", "prog", "show", "-j").stdout) if p.get("name") == name]


def links(prog_ids: Sequence[int]) -> List[dict]:
    """BPF links holding any of these programs."""
    return [lk for lk in json.loads(sh("bpftool", "link", "show", "-j").stdout) if lk.get("prog_id") in prog_ids]


@dataclass
class Leftovers:
    """Everything of one firewall/shaper run that could stay behind."""
    xdp: Optional[int] = None
    bpftool_net: List[dict] = field(default_factory=list)
    filters: List[dict] = field(default_factory=list)
    links: List[dict] = field(default_factory=list)
    progs: List[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.xdp or self.bpftool_net or self.filters or self.links or self.progs)


def leftovers(ns: Netns, prog_ids: Sequence[int]) -> Leftovers:
    alive = [i for i in progs_all() if i in prog_ids]
    return Leftovers(xdp_prog(ns), bpftool_net(ns), tc_filters(ns, "egress") + tc_filters(ns, "ingress"),
                     links(prog_ids), alive)


def progs_all() -> List[int]:
    return [p["id"] for p in json.loads(sh("bpftool", "prog", "show", "-j").stdout)]


# ---- the command under test ----------------------------------------------------------------------

class Guard:
    """`kubectl-pytrace firewall|shape --local ARGS` in the background: a TracerProcess of
    tests/conftest.py (output in files) and what the tests ask of it."""

    def __init__(self, kind: str, proc):
        self.kind, self.proc, self.p = kind, proc, proc.p

    @property
    def stdout(self) -> str:
        return self.proc.stdout

    @property
    def stderr(self) -> str:
        return self.proc.stderr

    def wait_attached(self, timeout: float = 90) -> str:
        """The line that says where and how it attached."""
        what = "firewall on" if self.kind == "firewall" else "shaper on"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.stderr.splitlines():
                if line.startswith(f"kubectl-pytrace: {what}"):
                    return line
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        self.p.kill()
        raise AssertionError(f"{self.kind} did not attach; stderr:\n{self.stderr}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        self.p.send_signal(sig)
        return self.p.wait(timeout=timeout)

    def reports(self) -> List[dict]:
        """The JSON reports (-o json) printed so far."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def final(self) -> dict:
        finals = [r for r in self.reports() if r.get("final")]
        assert finals, f"no final report; stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return finals[-1]


def docker_base_image():
    """For a session/module fixture (yield from it): the Docker engine up (tests/containers'
    dockerlib; stopped at the end unless it ran before or PYTRACE_KEEP_DOCKER=1), then the minimal
    Debian image of hack/base-image.sh."""
    sys.path.insert(0, str(REPO / "tests" / "containers"))
    import dockerlib

    if os.geteuid() != 0:
        import pytest

        pytest.skip("the Docker engine (hack/docker.sh) needs root")
    was_running = dockerlib.engine_ready()
    dockerlib.engine_up()
    try:
        yield dockerlib.base_image()
    finally:
        if not was_running and os.environ.get("PYTRACE_KEEP_DOCKER") != "1":
            dockerlib.engine_down()


def run_cli(*args: str, env: Optional[dict] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PYTRACE, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
