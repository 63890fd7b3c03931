"""The programs of programs/, run by name (`run --local --program NAME --param k=v`) against
deterministic workloads: every assertion is about events that came from the kernel."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
sys.path.insert(0, str(WORKLOADS))

from postgres import LocalPostgres, missing as postgres_missing  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.bpf]


def start(pytrace, name, *params, command=None):
    """The program NAME running (its probes attached), with --param for each of params."""
    args = ["--program", name]
    for p in params:
        args += ["--param", p]
    if command:
        args += ["-c", command]
    t = pytrace(*args)
    if not command:
        t.wait_attached(timeout=120)
    return t


def stopped(t) -> str:
    """Ctrl-C (END runs and the maps are printed); the output."""
    assert t.interrupt() == 0, t.stderr
    return t.stdout


def ran(t) -> str:
    """The output of a trace that ends with its -c command."""
    assert t.finish(timeout=180) == 0, t.stderr
    return t.stdout


@pytest.fixture
def short_tmp():
    """A directory with a short path: the programs print paths as bpftrace does, cut at 63 bytes."""
    d = Path(tempfile.mkdtemp(prefix="ptp-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def count_of(out: str, key: str) -> int:
    m = re.search(rf"^{re.escape(key)}: (\d+)$", out, re.M)
    assert m, f"no {key} in:\n{out}"
    return int(m.group(1))


# ---- slowqueries: PostgreSQL's USDT probes (query__start/query__done) ------------------------------

@pytest.mark.skipif(bool(postgres_missing()), reason=postgres_missing() or "-")
def test_slowqueries_reports_the_slow_query_with_its_latency_and_pid(pytrace):
    with LocalPostgres() as pg:
        t = start(pytrace, "slowqueries", "threshold=200ms")
        backend = pg.psql("SELECT pg_backend_pid()", "SELECT 1", "SELECT pg_sleep(0.3)", "SELECT 42").split()[0]
        out = stopped(t)
    queries = [ln for ln in out.splitlines() if "SELECT" in ln]
    assert len(queries) == 1, out  # SELECT 1, 42 and the pid query are fast
    m = re.match(r"^\d\d:\d\d:\d\d (\d+)\s+(\d+)  SELECT pg_sleep\(0\.3\)$", queries[0])
    assert m, out
    assert m.group(1) == backend
    assert 300 <= int(m.group(2)) < 2000, out


# ---- pygc: CPython's USDT probes --------------------------------------------------------------------

def test_pygc_pause_histogram_per_process_and_slowest_functions(pytrace, tmp_path):
    # a copy of the interpreter: the probes are on its inode, so no other Python on the host is traced,
    # and its comm is its own
    python = tmp_path / "gcpython"
    shutil.copy2("/usr/bin/python3.11", python)
    t = start(pytrace, "pygc", f"python={python}", command=f"{python} {WORKLOADS / 'python' / 'gcload.py'} 5")
    out = ran(t)
    pid = re.search(r"^@collections\[gcpython, (\d+)\]: (\d+)$", out, re.M)
    assert pid, out
    assert int(pid.group(2)) >= 5  # gc.collect() in each round, and the automatic collections
    hist = out.split(f"@gc_pause_us[gcpython, {pid.group(1)}]:\n", 1)[1].split("\n\n", 1)[0]
    assert sum(int(n) for n in re.findall(r"^\[\S+, \S+\)\s+(\d+) \|", hist, re.M)) == int(pid.group(2))
    slow = count_of(out, f"@slowest_us[gcpython, {pid.group(1)}, slow_function]")
    assert 20_000 <= slow < 1_000_000  # time.sleep(0.02)
    assert count_of(out, f"@slowest_us[gcpython, {pid.group(1)}, main]") > 5 * slow


# ---- tcpretrans: the tcp:tcp_retransmit_skb tracepoint ---------------------------------------------

class NetnsPair:
    """Two network namespaces joined by a veth pair: A (10.251.X.1) and B (10.251.X.2)."""

    def __init__(self):
        tag = os.getpid() % 200 + 20
        self.a, self.b = f"pyt-a{os.getpid()}", f"pyt-b{os.getpid()}"
        self.ip_a, self.ip_b = f"10.251.{tag}.1", f"10.251.{tag}.2"
        veth_a, veth_b = f"pva{os.getpid()}"[:15], f"pvb{os.getpid()}"[:15]
        for cmd in (f"ip netns add {self.a}", f"ip netns add {self.b}",
                    f"ip link add {veth_a} type veth peer name {veth_b}",
                    f"ip link set {veth_a} netns {self.a}", f"ip link set {veth_b} netns {self.b}",
                    f"ip -n {self.a} addr add {self.ip_a}/24 dev {veth_a}",
                    f"ip -n {self.b} addr add {self.ip_b}/24 dev {veth_b}",
                    f"ip -n {self.a} link set {veth_a} up", f"ip -n {self.b} link set {veth_b} up",
                    f"ip -n {self.a} link set lo up", f"ip -n {self.b} link set lo up"):
            subprocess.run(cmd.split(), check=True, capture_output=True)

    def run(self, ns: str, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)

    def close(self):
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
while c.recv(65536): pass
"""

CLIENT = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print(c.getsockname()[1], flush=True)
sys.stdin.readline()                      # the test drops B's input now
c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
c.send(b"x" * 1000)
time.sleep(float(sys.argv[3]))            # retransmissions: 200 ms, 400 ms, 800 ms...
"""


def test_tcpretrans_reports_retransmits_with_addresses_and_ports(pytrace):
    net = NetnsPair()
    procs = []
    try:
        server = net.run(net.b, sys.executable, "-c", SERVER, net.ip_b, stdout=subprocess.PIPE, text=True)
        procs.append(server)
        port = int(server.stdout.readline())
        t = start(pytrace, "tcpretrans")
        client = net.run(net.a, sys.executable, "-c", CLIENT, net.ip_b, str(port), "2",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(client)
        client_port = int(client.stdout.readline())
        subprocess.run(["ip", "netns", "exec", net.b, "iptables", "-A", "INPUT", "-p", "tcp", "--dport",
                        str(port), "-j", "DROP"], check=True, capture_output=True)
        client.stdin.write("go\n")
        client.stdin.flush()
        client.wait(timeout=30)
        out = stopped(t)
    finally:
        for p in procs:
            p.kill()
        net.close()
    ours = [ln for ln in out.splitlines()
            if re.search(rf"\s{re.escape(net.ip_a)}\s+{client_port}\s+-> {re.escape(net.ip_b)}\s+{port}\s", ln)]
    assert len(ours) >= 2, out  # 2 s of loss: retransmits at ~0.2, 0.6, 1.4 s
    assert all(ln.endswith(" ESTABLISHED") for ln in ours), ours
    assert all(re.match(r"^\d\d:\d\d:\d\d \d+\s", ln) for ln in ours), ours


# ---- files and processes: tracepoints -----------------------------------------------------------------

def test_filewatch_reports_who_opened_the_file(pytrace, short_tmp, host_workloads):
    tmp_path = short_tmp
    watched = tmp_path / "secret.txt"
    watched.write_text("x")
    other = tmp_path / "other.txt"
    other.write_text("y")
    sysload = host_workloads["sysload"]
    t = start(pytrace, "filewatch", f"path={watched}",
              command=f"sh -c '{sysload} open 3 {watched}; {sysload} open 2 {other}'")
    out = ran(t)
    opens = [ln for ln in out.splitlines() if ln.endswith(str(watched)) and " sysload " in ln]
    assert len(opens) == 3, out
    assert not [ln for ln in out.splitlines() if str(other) in ln], out
    pid = opens[0].split()[1]
    assert count_of(out, f"@opens[sysload, {pid}]") == 3
    assert f"watching opens of {watched}" in out


def test_opensnoop_prints_fd_or_error_and_path(pytrace, short_tmp, host_workloads):
    tmp_path = short_tmp
    there = tmp_path / "there.txt"
    there.write_text("x")
    sysload = host_workloads["sysload"]
    t = start(pytrace, "opensnoop", command=f"sh -c '{sysload} open 2 {there}; {sysload} open 1 {tmp_path}/nope'")
    out = ran(t)
    found = re.findall(rf"^(\d+)\s+sysload\s+(-?\d+) {re.escape(str(there))}$", out, re.M)
    assert len(found) == 2 and all(int(fd) >= 3 for _, fd in found), out
    assert re.search(rf"^\d+\s+sysload\s+-2 {re.escape(str(tmp_path))}/nope$", out, re.M), out  # -ENOENT


def test_opensnoop_pid_filter(pytrace, tmp_path, host_workloads):
    sysload = host_workloads["sysload"]
    t = start(pytrace, "opensnoop", "pid=1", command=f"{sysload} open 2 {tmp_path}/x")
    out = ran(t)
    assert "sysload" not in out, out


def test_execsnoop_prints_pid_parent_and_file(pytrace, short_tmp):
    exe = short_tmp / "pytrace-exec-me"
    shutil.copy2("/bin/true", exe)
    t = start(pytrace, "execsnoop", command=f"sh -c '{exe}; {exe}; echo $$'")
    out = ran(t)
    shell = re.search(r"^(\d+)$", out, re.M).group(1)  # echo $$ (the events and it come in any order)
    lines = re.findall(rf"^(\d+)\s+(\d+)\s+{re.escape(str(exe))}$", out, re.M)
    assert len(lines) == 2, out
    assert all(ppid == shell for _, ppid in lines), (shell, lines)


def test_syscount_by_name_and_by_process(pytrace, host_workloads):
    sysload = host_workloads["sysload"]
    t = start(pytrace, "syscount", "by_process=true", command=f"{sysload} getppid 5000")
    out = ran(t)
    assert count_of(out, "@syscalls[getppid]") >= 5000
    procs = re.findall(r"^@processes\[sysload, (\d+)\]: (\d+)$", out, re.M)
    assert len(procs) == 1 and int(procs[0][1]) >= 5000, out


def test_syscount_without_by_process_has_no_process_table(pytrace, host_workloads):
    t = start(pytrace, "syscount", command=f"{host_workloads['sysload']} getppid 100")
    out = ran(t)
    assert count_of(out, "@syscalls[getppid]") >= 100
    assert "@processes" not in out


# ---- funccount: a wildcard uprobe on a binary the test builds (never on the system's libc) ---------

FUNCS_C = """
#include <stdlib.h>
__attribute__((noinline)) int handle_get(int x) { return x + 1; }
__attribute__((noinline)) int handle_put(int x) { return x * 2; }
__attribute__((noinline)) int other(int x) { return x - 1; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), s = 0;
    for (int i = 0; i < n; i++) { s += handle_get(i); if (i % 2) s += handle_put(i); s += other(i); }
    return s == 12345;
}
"""


def test_funccount_counts_the_functions_matching_a_wildcard(pytrace, tmp_path):
    (tmp_path / "funcs.c").write_text(FUNCS_C)
    binary = tmp_path / "funcs"
    subprocess.run(["gcc", "-O0", "-o", str(binary), str(tmp_path / "funcs.c")], check=True)
    t = start(pytrace, "funccount", f"binary={binary}", "pattern=handle_*", command=f"{binary} 100")
    out = ran(t)
    assert count_of(out, f"@[uprobe:{binary}:handle_get]") == 100
    assert count_of(out, f"@[uprobe:{binary}:handle_put]") == 50
    assert "other" not in out


def test_funccount_needs_its_binary(pytrace):
    t = pytrace("--program", "funccount")
    assert t.finish() == 2
    assert "program funccount needs --param binary=VALUE" in t.stderr


# ---- histograms: block I/O and the run queue --------------------------------------------------------------

def test_biolatency_histogram_of_direct_writes(pytrace):
    if not os.path.isdir("/sys/kernel/tracing/events/block/block_rq_issue"):
        pytest.skip("no block tracepoints in this kernel")
    target = Path("/var/tmp") / f"pytrace-bio-{os.getpid()}"
    try:
        t = start(pytrace, "biolatency",
                  command=f"dd if=/dev/zero of={target} bs=64k count=64 oflag=direct,sync status=none")
        out = ran(t)
    finally:
        target.unlink(missing_ok=True)
    counts = [int(n) for n in re.findall(r"^\[\S+, \S+\)\s+(\d+) \|", out.split("@usecs:\n", 1)[1], re.M)]
    assert sum(counts) >= 64, out  # each synchronous direct write is at least one request


def test_runqlat_histogram(pytrace, host_workloads):
    t = start(pytrace, "runqlat", command=f"sh -c 'for i in 1 2 3 4 5 6 7 8; do {sys.executable} -c pass & done; wait'")
    out = ran(t)
    counts = [int(n) for n in re.findall(r"^\[\S+, \S+\)\s+(\d+) \|", out.split("@usecs:\n", 1)[1], re.M)]
    assert sum(counts) > 10, out


# ---- readline: a uretprobe on bash --------------------------------------------------------------------

def test_readline_prints_the_commands_typed_into_bash(pytrace):
    import pty

    t = start(pytrace, "readline")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
    try:
        for line in (b"echo pytrace-readline-42\n", b"exit\n"):
            time.sleep(0.3)
            os.write(fd, line)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            try:
                os.read(fd, 4096)
            except OSError:
                break
    finally:
        os.close(fd)
    out = stopped(t)
    assert re.search(rf"^{pid}\s+echo pytrace-readline-42$", out, re.M), out
    assert re.search(rf"^{pid}\s+exit$", out, re.M), out
