"""Wide probes: time from start to tracing, and from Ctrl-C to the end of the process, for
kubectl-pytrace before and after (a git ref, and this tree), bpftrace 0.17 and the current
bpftrace, in one run (issue 10's table).

    sudo .venv/bin/python benchmarks/scale.py [--before main] [--rounds 3] [--timeout 60]

Programs: `uprobe:LIBC:str* { @ = count(); }`, `tracepoint:syscalls:sys_enter_* { @[probe] =
count(); }`, `uprobe:LIBC:* { @[probe] = count(); }`, each with `BEGIN { printf("go\\n"); }`:
"attach" is the time from the start of the process to that line and to the tool's "Attached N
probes" (bpftrace 0.17 prints "Attaching" before, and runs BEGIN after, attaching), whichever
comes later, with the compiled program cached (one untimed run first; bpftrace has no
cache). "exit" is from SIGINT, one second later, to the end of the process, the maps printed; in
parentheses the tracer process's peak RSS (VmHWM, just before SIGINT).

LIBC is a private copy of this host's libc (its debug symbols are found by build id, as the
system's), mapped by --holders sleeping processes (how many map the system's libc here, by
default): a uprobe is registered in every process that maps the file, and uprobes on every
function of the libc every process uses would slow the whole machine, and break it with tools
that probe instructions x86 uprobes emulate wrongly (bpf/uprobes.py: bpftrace attaches them).

The current bpftrace runs from a Debian sid chroot (ENV.md), --bpftrace-root, default
/var/cache/kubectl-pytrace/bpftrace-sid-scale/root (made with `debootstrap --variant=minbase
--include=bpftrace sid DIR` if missing); the cell says "n/a" when there is none.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
SYSTEM_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
SID_ROOT = "/var/cache/kubectl-pytrace/bpftrace-sid-scale/root"
PROGRAMS = {
    "uprobe:libc:str* { @ = count(); }": "uprobe:{libc}:str* {{ @ = count(); }}",
    "tracepoint:syscalls:sys_enter_* { @[probe] = count(); }": "tracepoint:syscalls:sys_enter_* {{ @[probe] = count(); }}",
    "uprobe:libc:* { @[probe] = count(); }": "uprobe:{libc}:* {{ @[probe] = count(); }}",
}
BEGIN = ' BEGIN { printf("go\\n"); }'


@dataclass
class Run:
    attach: Optional[float] = None  # seconds from start to BEGIN's line
    exit: Optional[float] = None  # seconds from SIGINT to the end of the process
    points: Optional[int] = None
    note: str = ""
    rss: Optional[float] = None  # MiB: the process's peak resident set while tracing (VmHWM)


@dataclass
class Tool:
    name: str
    argv: List[str]  # the command before `-e PROGRAM`
    env: Dict[str, str] = field(default_factory=dict)
    cached: bool = True  # has a compile cache worth warming
    cwd: Optional[str] = None  # `python -m` imports from the working directory first
    # a line printed once every probe is attached: kubectl-pytrace (since the 0.27 language) and
    # bpftrace 0.27 run BEGIN before the others are attached; bpftrace 0.17 runs it after them
    attached: Optional[str] = r"^Attached \d+ probes?"


class Process:
    """A tool's process with its stdout and stderr read by threads, lines timestamped."""

    def __init__(self, argv: List[str], env: Dict[str, str], cwd: Optional[str]):
        self.start = time.monotonic()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, **env), start_new_session=True, cwd=cwd)
        self.lines: List[tuple] = []
        self.readers = [threading.Thread(target=self._read, args=(s,), daemon=True) for s in (self.p.stdout, self.p.stderr)]
        for r in self.readers:
            r.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line))

    def first(self, pattern: str, timeout: float) -> Optional[float]:
        deadline = self.start + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if re.search(pattern, line):
                    return t
            if self.p.poll() is not None:
                time.sleep(0.1)  # the last lines
                return next((t for t, line in self.lines if re.search(pattern, line)), None)
            time.sleep(0.005)
        return None

    def text(self) -> str:
        return "".join(line for _, line in self.lines)

    def stop(self, timeout: float) -> Optional[float]:
        """SIGINT; seconds until the process ended (None: SIGKILLed after `timeout`)."""
        sent = time.monotonic()
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)  # its session (start_new_session): a compiler with it
            self.p.wait()
            return None
        for r in self.readers:
            r.join(5)
        return time.monotonic() - sent


def points(text: str) -> Optional[int]:
    m = re.search(r"^Attach(?:ed|ing) (\d+) probes?", text, re.M)
    return int(m.group(1)) if m else None


def measure(tool: Tool, program: str, timeout: float, exit_timeout: float) -> Run:
    proc = Process(tool.argv + ["-e", program + BEGIN], tool.env, tool.cwd)
    go = proc.first(r"^go$", timeout)
    if go is not None and tool.attached is not None:
        attached = proc.first(tool.attached, timeout)
        go = max(go, attached) if attached is not None else None
    if go is None:
        if proc.p.poll() is None:
            proc.stop(exit_timeout)
            return Run(note=f"not tracing after {timeout:.0f} s", points=points(proc.text()))
        errors = [line for line in proc.text().splitlines() if "ERROR" in line or "error:" in line]
        return Run(note="refused: " + (errors[0] if errors else f"exit {proc.p.returncode}").strip())
    time.sleep(1.0)
    rss = peak_rss(proc.p.pid)
    took = proc.stop(exit_timeout)
    run = Run(attach=go - proc.start, exit=took, points=points(proc.text()), rss=rss)
    if took is None:
        run.note = f"still exiting after {exit_timeout:.0f} s (SIGKILLed)"
    elif "@" not in proc.text():
        run.note = "no maps printed"
    return run


def peak_rss(pid: int) -> Optional[float]:
    """VmHWM of a process in MiB (the bpftrace chroot's launchers exec it: same pid)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    return kb / 1024


def measure_cell(tool: Tool, label: str, program: str, args) -> Run:
    if tool.name.startswith("bpftrace v0.17") and label.startswith("uprobe:libc:*") and not args.all:
        return Run(note="not measured (7,264 perf events: ~13 min to close; --all)")
    if tool.cached:  # the compiled program cached, as the issue measured
        warm = measure(tool, program, args.timeout, args.exit_timeout)
        if warm.attach is None:
            return warm
    runs = [measure(tool, program, args.timeout, args.exit_timeout)]
    while len(runs) < args.rounds and runs[0].attach is not None:
        runs.append(measure(tool, program, args.timeout, args.exit_timeout))
    return median(runs)


def median(runs: List[Run]) -> Run:
    done = [r for r in runs if r.attach is not None and r.exit is not None]
    if not done:
        return runs[0]
    rss = [r.rss for r in done if r.rss is not None]
    return Run(statistics.median(r.attach for r in done), statistics.median(r.exit for r in done),  # type: ignore
               done[0].points, runs[0].note, max(rss) if rss else None)


def cell(r: Run) -> str:
    if r.attach is None:
        return r.note
    exit_ = f"{r.exit:.2f} s" if r.exit is not None else r.note
    rss = f" ({r.rss:.0f} MiB)" if r.rss is not None else ""
    return f"{r.attach:.2f} s / {exit_}{rss}"


# ---- the tools --------------------------------------------------------------------------------

def pytrace(name: str, tree: Path, cache: Path) -> Tool:
    return Tool(name, [sys.executable, "-m", "kubectl_pytrace", "run", "--local"],
                {"PYTHONPATH": str(tree), "PYTRACE_CACHE_DIR": str(cache)}, cwd=str(tree))


def checkout(ref: str, into: Path) -> Path:
    """The tree of a git ref (git archive), to run the version before."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], capture_output=True,
                             check=True).stdout
    tar = into / "tree.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into / "tree")
    return into / "tree"


def bpftrace_sid(root: str, binds: List[str]) -> Optional[Tool]:
    """The current bpftrace, chrooted in a mount namespace of its own with /proc, /sys, /dev and
    `binds` mounted at their own paths."""
    if not os.path.exists(os.path.join(root, "usr/bin/bpftrace")):
        return None
    script = ('root=$1; shift; for d in /proc /sys /dev ' + " ".join(binds) +
              '; do mkdir -p "$root$d"; mount --rbind "$d" "$root$d"; done; '
              'exec chroot "$root" /usr/bin/bpftrace "$@"')
    version = subprocess.run(["chroot", root, "/usr/bin/bpftrace", "--version"], capture_output=True,
                             text=True).stdout.strip() or "bpftrace (sid)"
    return Tool(version, ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", root],
                cached=False)


def tools(args, tmp: Path) -> List[Tool]:
    out = [pytrace(f"kubectl-pytrace {args.before}", checkout(args.before, tmp), tmp / "cache-before"),
           pytrace("kubectl-pytrace (this tree)", REPO, tmp / "cache-after")]
    sid = bpftrace_sid(args.bpftrace_root, [str(tmp)])
    if sid is not None:
        out.append(sid)
    if shutil.which("bpftrace"):
        version = subprocess.run(["bpftrace", "--version"], capture_output=True, text=True).stdout.strip()
        out.append(Tool(version, ["bpftrace"], cached=False, attached=None))
    return out


def private_libc(tmp: Path, holders: int) -> tuple:
    """A copy of the system's libc and `holders` sleeping processes that map it."""
    libdir = tmp / "libc"
    libdir.mkdir()
    shutil.copy2(SYSTEM_LIBC, libdir / "libc.so.6")
    procs = [subprocess.Popen(["sleep", "86400"], env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
             for _ in range(holders)]
    return libdir / "libc.so.6", procs


def default_holders() -> int:
    n = 0
    for d in Path("/proc").iterdir():
        try:
            n += d.name.isdigit() and "libc.so.6" in (d / "maps").read_text()
        except OSError:
            pass
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="main", help="git ref of the version before (default main)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per cell (median), 1 for a cell that times out")
    ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for tracing to start")
    ap.add_argument("--exit-timeout", type=float, default=120, help="seconds to wait for a process to end")
    ap.add_argument("--holders", type=int, default=None, help="processes that map the private libc")
    ap.add_argument("--bpftrace-root", default=SID_ROOT, help="the chroot of the current bpftrace")
    ap.add_argument("--all", action="store_true", help="also bpftrace 0.17 on uprobe:libc:*")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/scale.py: run as root", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="pytrace-scale-"))
    holders = args.holders if args.holders is not None else default_holders()
    libc, procs = private_libc(tmp, holders)
    try:
        return run_table(args, tmp, libc, holders)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run_table(args, tmp: Path, libc: Path, holders: int) -> int:
    all_tools = tools(args, tmp)
    print(f"# {os.uname().release}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; private libc mapped by "
          f"{holders} processes; median of {args.rounds} rounds", flush=True)
    results: Dict[str, Dict[str, Run]] = {}
    for label, template in PROGRAMS.items():
        program = template.format(libc=libc)
        results[label] = {}
        for tool in all_tools:
            results[label][tool.name] = measure_cell(tool, label, program, args)
            print(f"  {label} | {tool.name}: {cell(results[label][tool.name])} "
                  f"({results[label][tool.name].points} points)", file=sys.stderr, flush=True)
    print("\n| program (points) | " + " | ".join(f"{t.name} attach / exit" for t in all_tools) + " |")
    print("|---" * (len(all_tools) + 1) + "|")
    for label, row in results.items():
        pts = " / ".join(str(r.points) for r in row.values() if r.points is not None)
        print(f"| `{label}` ({pts}) | " + " | ".join(cell(row[t.name]) for t in all_tools) + " |")
    print_ratios(results, all_tools)
    return 0


def print_ratios(results: Dict[str, Dict[str, Run]], all_tools: List[Tool]) -> None:
    """This tree's times as ratios to each bpftrace's (below 1: faster)."""
    ours = next(t.name for t in all_tools if t.name.endswith("(this tree)"))
    others = [t.name for t in all_tools if t.name.startswith("bpftrace")]
    if not others:
        return
    print("\n| program | " + " | ".join(f"attach / exit, ratio to {o}" for o in others) + " |")
    print("|---" * (len(others) + 1) + "|")
    for label, row in results.items():
        cells = []
        for o in others:
            a, b = row[ours], row[o]
            if a.attach is None or b.attach is None or a.exit is None or b.exit is None:
                cells.append("-")
            else:
                cells.append(f"{a.attach / b.attach:.2f} / {a.exit / b.exit:.3f}")
        print(f"| `{label}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
