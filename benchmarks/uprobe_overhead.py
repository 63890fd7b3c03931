#!/usr/bin/env python3
"""kubectl-pytrace next to bpftrace on the same machine, as ratios (run as root):

    sudo .venv/bin/python benchmarks/uprobe_overhead.py [--rounds 5] [--calls 300000]

1. Overhead on the traced program: benchmarks/loop.c calls a noinline function N times and prints
   its mean ns per call. Modes: no probe; an empty uprobe (the uprobe floor: an int3 trap);
   `@c = count()`; `printf("%d %d\\n", pid, arg0)` streamed to a file. Reported as the ratio to the
   same tool's empty-probe cost, plus lost events. Rounds are interleaved (tool by tool, mode by
   mode) and the median is kept: machines are noisy, ratios in one run are what compare.
2. Start-up: from exec until all probes are attached (the output of a BEGIN probe, which both tools
   run after attaching), warm (compiled program cached) and cold (empty cache: BCC compiles).
3. Peak RSS (VmHWM) of the tracer process while tracing; for kubectl-pytrace also the one-off BCC
   compiler process of a cold start.
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
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
BPFTRACE = os.environ.get("BPFTRACE") or shutil.which("bpftrace") or "bpftrace"

MODES = {
    "empty": "uprobe:{loop}:target {{ }}",
    "count": "uprobe:{loop}:target {{ @c = count(); }}",
    "printf": 'uprobe:{loop}:target {{ printf("%d %d\\n", pid, arg0); }}',
}
NUMBER = re.compile(r"^(\d+\.\d+)$", re.M)


def build_loop(dest: Path) -> Path:
    exe = dest / "loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "loop.c")], check=True)
    return exe


def tool_argv(tool: str, program: str, command: str) -> list:
    if tool == "bpftrace":
        return [BPFTRACE, "-e", program, "-c", command]
    return [PYTRACE, "run", "--local", "-e", program, "-c", command]


def run_traced(tool: str, mode: str, loop: Path, calls: int, workdir: Path) -> dict:
    out = workdir / f"{tool}-{mode}.out"
    if mode == "none":
        p = subprocess.run([str(loop), str(calls)], capture_output=True, text=True, check=True)
        return {"ns": float(p.stdout), "lost": 0, "lines": 0}
    program = MODES[mode].format(loop=loop)
    with open(out, "w") as f:
        p = subprocess.run(tool_argv(tool, program, f"{loop} {calls}"), stdout=f, stderr=subprocess.PIPE,
                           text=True, timeout=600)
    text = out.read_text()
    m = NUMBER.search(text)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"{tool} {mode} failed ({p.returncode}): {p.stderr[-2000:]}")
    lost = sum(int(x) for x in re.findall(r"Lost (\d+) events", p.stderr + text))
    lines = sum(1 for line in text.splitlines() if line.count(" ") == 1 and line.split()[0].isdigit())
    return {"ns": float(m.group(1)), "lost": lost, "lines": lines}


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def startup(tool: str, loop: Path, env: dict) -> dict:
    """Seconds from exec until every probe is attached, and the tracer's peak RSS (KiB).

    Both tools run BEGIN once all probes are attached; its printf is the signal (bpftrace's own
    "Attaching N probes..." comes before it attaches, so it would flatter bpftrace)."""
    program = MODES["count"].format(loop=loop) + ' BEGIN { printf("ready\\n"); }'
    argv = ([BPFTRACE, "-e", program] if tool == "bpftrace" else [PYTRACE, "run", "--local", "-e", program])
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    while True:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"{tool} ended before attaching: {p.stderr.read()[-2000:]!r}")
        if b"ready" in line:
            break
    elapsed = time.monotonic() - t0
    subprocess.run([str(loop), "100000"], capture_output=True)  # some events, as in real use
    time.sleep(0.3)
    rss = _vm_hwm(p.pid)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    return {"seconds": elapsed, "rss_kib": rss}


def compiler_rss(env: dict) -> int:
    """Peak RSS (KiB) of the BCC compiler process of a cold start (wait4's maxrss of the children)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([PYTRACE, "run", "--local", "--deadline", "0.1s", "-e", "BEGIN { @x = 1; }"],
                   capture_output=True, env=env)
    return max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = Path(tempfile.mkdtemp(prefix="pytrace-bench-"))
    loop = build_loop(work)
    tools = ("bpftrace", "kubectl-pytrace")
    results = {(t, m): [] for t in tools for m in ("none", *MODES)}
    for t in tools:  # warm the compiled-object cache and the page cache
        for m in MODES:
            run_traced(t, m, loop, 1000, work)
    for r in range(args.rounds):
        for m in ("none", *MODES):
            for t in tools:
                results[(t, m)].append(run_traced(t, m, loop, args.calls, work))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    def med(t, m, key="ns"):
        return statistics.median(x[key] for x in results[(t, m)])

    print(f"\n## Overhead on the traced program ({args.calls} calls, median of {args.rounds} rounds)\n")
    print("| mode | bpftrace ns/call | ratio to its empty probe | kubectl-pytrace ns/call | ratio to its empty probe | lost (pytrace) |")
    print("|---|---|---|---|---|---|")
    for m in ("none", *MODES):
        b, p = med("bpftrace", m), med("kubectl-pytrace", m)
        bf, pf = med("bpftrace", "empty"), med("kubectl-pytrace", "empty")
        lost = max(x["lost"] for x in results[("kubectl-pytrace", m)])
        print(f"| {m} | {b:.1f} | {b / bf:.2f} | {p:.1f} | {p / pf:.2f} | {lost} |")
    lines = [x["lines"] for x in results[("kubectl-pytrace", "printf")]]
    print(f"\nprintf lines written by kubectl-pytrace per round: {lines} (expected {args.calls})")

    cold_dir = Path(tempfile.mkdtemp(prefix="pytrace-cache-"))
    warm_env = dict(os.environ)
    st = {"bpftrace": [], "warm": [], "cold": []}
    for r in range(args.rounds):
        st["bpftrace"].append(startup("bpftrace", loop, warm_env))
        st["warm"].append(startup("kubectl-pytrace", loop, warm_env))
        shutil.rmtree(cold_dir, ignore_errors=True)
        cold_env = dict(os.environ, PYTRACE_CACHE_DIR=str(cold_dir))
        st["cold"].append(startup("kubectl-pytrace", loop, cold_env))
    b = statistics.median(x["seconds"] for x in st["bpftrace"])
    print("\n## Start-up to attached, and peak RSS of the tracer process\n")
    print("| tool | seconds (median) | ratio to bpftrace | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, rows in st.items():
        s = statistics.median(x["seconds"] for x in rows)
        rss = max(x["rss_kib"] for x in rows) / 1024
        label = {"bpftrace": "bpftrace", "warm": "kubectl-pytrace (cached program)",
                 "cold": "kubectl-pytrace (cold: BCC compiles)"}[name]
        print(f"| {label} | {s:.3f} | {s / b:.2f} | {rss:.0f} |")
    shutil.rmtree(cold_dir, ignore_errors=True)
    crss = compiler_rss(dict(os.environ, PYTRACE_CACHE_DIR=str(cold_dir)))
    print(f"\nBCC compiler process of a cold start (separate, exits before tracing): peak RSS {crss / 1024:.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(cold_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
