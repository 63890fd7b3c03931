"""bpftrace's own tools (/usr/sbin/*.bt from Debian's bpftrace package) compile, attach and work.

Compiled with the real HostEnvironment of this machine (tracefs, BTF, headers, ELF symbols, kallsyms)
and then through BCC; a tool may only fail to compile for a fact of this kernel that bpftrace 0.17
trips over too, and that fact is checked here. Then each tool runs while a workload of its kind
runs (WORKLOADS), and prints "Attached N probes" and the output that workload must cause. Only
the tools that see events through kprobes alone may, on a kernel without kprobes, attach nothing
of their own: they must say why (an error, or each kprobe skipped with that reason).
"""

from __future__ import annotations

import glob
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from kubectl_pytrace.lang import CodegenOptions, CompileError, compile_program

TOOLS = sorted(glob.glob("/usr/sbin/*.bt"))
REPO = Path(__file__).resolve().parent.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
WORKLOAD_DIR = REPO / "tests" / "runtime" / "workloads"
TIME = r"\d\d:\d\d:\d\d"
HIST = r"(?:[\[(][^\])]*[\])]\s+\d+ \|@*\s*\|\n)+"  # hist()/lhist() buckets, as bpftrace prints them

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not TOOLS, reason="bpftrace's tools are not installed (apt-get install bpftrace)")]


def _kallsyms_has(name: str) -> bool:
    with open("/proc/kallsyms", "rb") as f:
        return re.search(rb"^[0-9a-f]+ \S " + re.escape(name.encode()) + rb"(\t|$)", f.read(), re.M) is not None


def _btf_member(struct: str, member: str) -> bool:
    from kubectl_pytrace.kernel.btf import BTF, BTFError, find_member

    s = BTF.load().struct(struct)
    try:
        return s is not None and find_member(s, member) is not None
    except BTFError:
        return False


# Failures bpftrace 0.17 reports too, each with the kernel fact that explains it.
KERNEL_FACTS = {
    "loads.bt": (r'kaddr\("avenrun"\): no kernel symbol named', lambda: not _kallsyms_has("avenrun")),
    "runqlen.bt": (r"struct cfs_rq has no member 'nr_running'", lambda: not _btf_member("struct cfs_rq", "nr_running")),
}


def _environment():
    from kubectl_pytrace.host.env import HostEnvironment

    return HostEnvironment()


def _compile(path: str):
    env = _environment()
    options = CodegenOptions(kprobe_mode="kprobe" if env.kprobes_available else "fentry")
    return compile_program(Path(path).read_text(), path, env, options)


@pytest.mark.parametrize("path", TOOLS, ids=os.path.basename)
def test_stock_tool_compiles(path):
    name = os.path.basename(path)
    try:
        compiled = _compile(path)
    except CompileError as e:
        fact = KERNEL_FACTS.get(name)
        assert fact is not None and re.search(fact[0], str(e)) and fact[1](), str(e)
        return
    from kubectl_pytrace.bpf import objects as bpfobj
    from kubectl_pytrace.tracer.engine import setup_headers

    found = setup_headers(open(os.devnull, "w"))
    functions = sorted({a.fn_name for a in compiled.c.attachments})
    obj = bpfobj.compile_bpf(compiled.c.text, functions, f"{found.path}:{found.release}")
    assert set(functions) <= set(obj.progs)


# ---- workloads: what each tool must see, and what it must print then ---------------------------

def run(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, timeout=60, **kw)


def bash_readline(tmp: Path) -> None:
    """An interactive bash on a terminal reads one command line with readline."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv("/bin/bash", ["bash", "--norc", "--noprofile", "-i"])
    os.write(fd, b"echo pytrace-readline\nexit\n")
    deadline = time.monotonic() + 20
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        try:
            os.read(fd, 4096)  # its terminal output, or EIO once it is gone
        except OSError:
            time.sleep(0.05)
    os.close(fd)


def direct_writes(tmp: Path) -> None:
    run("dd", "if=/dev/zero", f"of={tmp / 'direct'}", "bs=64k", "count=16", "oflag=direct")


def spin_cpus(tmp: Path) -> None:
    run(sys.executable, WORKLOAD_DIR / "spin_cpus.py", "1")


def nanosleep(tmp: Path) -> None:
    """nanosleep(2) itself (sleep(1) and Python use clock_nanosleep)."""
    run(sys.executable, "-c", "import ctypes; ctypes.CDLL(None).syscall(35, (ctypes.c_long * 2)(0, 300000000), None)")


def forks(tmp: Path) -> None:
    run("sh", "-c", "for i in 1 2 3 4 5; do /bin/true; done")
    time.sleep(1.2)  # the next interval:s:1 prints the count


def tls(tmp: Path) -> None:
    run(sys.executable, WORKLOAD_DIR / "tls_handshake.py", tmp)


def tcp_drop(tmp: Path) -> None:
    """A SYN dropped by netfilter on its way out (the skb still has its socket), in a network
    namespace of its own: nothing on the host's rules or network changes."""
    script = ("ip link set lo up && iptables -A OUTPUT -p tcp --dport 9 -j DROP && "
              f"{sys.executable} -c \"import socket; socket.socket().connect_ex(('127.0.0.1', 9))\" &"
              " sleep 0.5; kill $!")
    run("unshare", "--net", "sh", "-c", script)


def writeback(tmp: Path) -> None:
    run("dd", "if=/dev/zero", f"of={tmp / 'dirty'}", "bs=64k", "count=16")
    run("sync")


@dataclass
class Workload:
    act: Optional[Callable[[Path], None]]  # run once the tool is attached
    expect: List[str]  # regexes (multi-line) its stdout must match after Ctrl-C
    needs: List[str] = field(default_factory=list)  # commands it runs
    stderr: List[str] = field(default_factory=list)  # regexes its stderr must match


WORKLOADS: Dict[str, Workload] = {
    "bashreadline.bt": Workload(bash_readline, [rf"^{TIME}  \d+\s+echo pytrace-readline$"]),
    "bitesize.bt": Workload(direct_writes, [r"^@\[dd\]: *\n\[64K, 128K\)\s+\d+ \|@+\|$"], ["dd"]),
    "cpuwalk.bt": Workload(spin_cpus, [rf"^@cpu: *\n{HIST}"]),
    "execsnoop.bt": Workload(lambda tmp: run("/bin/echo", "pytrace-exec", "a b"),
                             [r"^\d+\s+\d+\s+/bin/echo pytrace-exec a b$"]),
    "gethostlatency.bt": Workload(lambda tmp: run("getent", "ahosts", "localhost"),
                                  [rf"^{TIME}  \d+\s+getent\s+\d+ localhost$"], ["getent"]),
    "killsnoop.bt": Workload(lambda tmp: run("/bin/kill", "-0", "1"), [rf"^{TIME}  \d+\s+kill\s+0\s+1\s+0$"]),
    "naptime.bt": Workload(nanosleep, [rf"^{TIME} {os.getpid()}\s+\S+\s+\d+\s+python\S*\s+0\.300$"]),
    "opensnoop.bt": Workload(lambda tmp: run("cat", "/nonexistent/pytrace-open"),
                             [r"^\d+\s+cat\s+-1\s+2 /nonexistent/pytrace-open$"]),
    "pidpersec.bt": Workload(forks, [rf"^{TIME} PIDs/sec: @: [1-9]\d*$"]),
    "runqlat.bt": Workload(lambda tmp: run("sleep", "0.2"), [rf"^@usecs: *\n{HIST}"]),
    "setuids.bt": Workload(lambda tmp: run("setpriv", "--reuid=65534", "true"),
                           [rf"^{TIME} \d+\s+setpriv\s+0\s+setresuid ruid=65534 euid=65534 suid=65534 \(0\)$"],
                           ["setpriv"]),
    "sslsnoop.bt": Workload(tls, [rf"^\d+\s+\d+\s+openssl\s+\d+\s+{ret} {func}$" for ret, func in
                                  (("1", "SSL_do_handshake"), ("8", "SSL_write"), ("8", "SSL_read"))], ["openssl"]),
    "ssllatency.bt": Workload(tls, [rf"^@hist\[SSL_do_handshake\]: *\n{HIST}", r"^@stat\[SSL_write\]: \{ \.count = [1-9]\d*, ",
                                    r"^@stat\[SSL_read\]: \{ \.count = [1-9]\d*, "], ["openssl"]),
    "statsnoop.bt": Workload(lambda tmp: run("stat", "/nonexistent/pytrace-stat"),
                             [r"^\d+\s+stat\s+2 /nonexistent/pytrace-stat$"]),
    "syncsnoop.bt": Workload(lambda tmp: run("sync"), [rf"^{TIME}  \d+\s+sync\s+tracepoint:syscalls:sys_enter_sync$"]),
    "syscount.bt": Workload(None, [r"^Top 10 syscalls IDs:\n(@syscall\[\d+\]: \d+\n)+",
                                   r"^Top 10 processes:\n(@process\[.+\]: \d+\n)+"]),
    "tcpdrop.bt": Workload(tcp_drop, [rf"^{TIME} \d+\s+python\S*\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:9\s+SYN_SENT\s*$",
                                      r"^\s+tcp_v4_connect\+\d+$"], ["unshare", "iptables", "ip"]),
    # glibc 2.34 moved pthread_create to libc: bpftrace 0.17 attaches BEGIN alone too
    "threadsnoop.bt": Workload(None, [r"^TIME\(ms\)\s+PID\s+COMM\s+FUNC$"], stderr=[
        r"uprobe:libpthread:pthread_create: no function named 'pthread_create' in libpthread \(\S+libc\.so\.6, "
        r"which it loads, defines it\): skipped"]),
    "writeback.bt": Workload(writeback, [rf"^{TIME}  \S+\s+\d+\s+\S+\s+\d+\.\d\d\d$"], ["dd", "sync"]),
}


# ---- running them -------------------------------------------------------------------------------

KPROBES_MISSING = r"this kernel has no kprobes \(CONFIG_KPROBES is not set\)"


def kprobe_tool(path: str) -> bool:
    """Every probe of the tool that sees events is a kprobe or kretprobe (BEGIN, END and
    interval probes only print)."""
    own = [a.spec.provider for a in _compile(path).c.attachments if not a.internal]
    return all(p in ("kprobe", "kretprobe", "BEGIN", "END", "interval") for p in own)


def skipped_probes(stderr: str) -> List[str]:
    return re.findall(r"^WARNING: could not attach probe (\S+), skipping\. \((.*)\)$", stderr, re.M)


def check_kprobe_tool(path: str, pytrace, kprobes: bool) -> None:
    """With kprobes: attached (what they print is not checked: no kernel here to check it on).
    Without: a clear error, or every kprobe skipped for that reason."""
    tool = pytrace("-f", path, "--deadline", "1s")
    rc = tool.finish()
    err = tool.stderr
    if kprobes:
        assert rc == 0 and re.search(r"^Attached \d+ probes?$", err, re.M), err
        return
    if rc != 0:
        assert re.search(rf"^error: cannot attach k(ret)?probe:\S+: {KPROBES_MISSING}", err, re.M), err
        return
    assert re.search(r"^Attached \d+ probes?$", err, re.M), err
    for probe, why in skipped_probes(err):
        assert re.match(r"k(ret)?probe:", probe) and re.search(KPROBES_MISSING, why), (probe, why)


def check_with_workload(path: str, pytrace, tmp: Path, w: Workload) -> None:
    missing = [c for c in w.needs if not shutil.which(c)]
    if missing:
        pytest.skip(f"the workload needs {', '.join(missing)}")
    tool = pytrace("-f", path)
    tool.wait_attached()
    try:
        if w.act:
            w.act(tmp)
        time.sleep(0.3)
    finally:
        rc = tool.interrupt()
    context = f"\n--- stdout\n{tool.stdout}\n--- stderr\n{tool.stderr}"
    assert rc == 0, context
    for rx in w.expect:
        assert re.search(rx, tool.stdout, re.M), f"stdout does not match {rx!r}{context}"
    for rx in w.stderr:
        assert re.search(rx, tool.stderr, re.M), f"stderr does not match {rx!r}{context}"
    for probe, why in skipped_probes(tool.stderr):
        assert re.match(r"k(ret)?probe:", probe) and re.search(KPROBES_MISSING, why), (probe, why)


@pytest.mark.bpf
@pytest.mark.parametrize("path", [t for t in TOOLS if os.path.basename(t) not in KERNEL_FACTS] or TOOLS[:1],
                         ids=os.path.basename)
def test_stock_tool_works(path, pytrace, tmp_path):
    """Attached, and the output its workload causes; a kprobe tool on a kernel without kprobes
    says so instead (an error, or every kprobe skipped with a warning)."""
    name = os.path.basename(path)
    if kprobe_tool(path):
        check_kprobe_tool(path, pytrace, _environment().kprobes_available)
        return
    assert name in WORKLOADS, f"{name}: no workload says what it must print (add one to WORKLOADS)"
    check_with_workload(path, pytrace, tmp_path, WORKLOADS[name])
