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
   compiler process of a cold start, measured on its own (wait4's rusage of that one process).
4. Lost events: three back-to-back runs of N printf events in one trace (3 x 300,000 = 21.6 MB of
   records through kubectl-pytrace's 16 MiB ring), for both tools: lines written, lost reported.
"""

from __future__ import annotations

import argparse
import json
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
STARTUP = MODES["count"] + ' BEGIN {{ printf("ready\\n"); }}'
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
    return {"ns": float(m.group(1)), "lost": lost_count(p.stderr + text), "lines": event_lines(text)}


def lost_count(text: str) -> int:
    return sum(int(x) for x in re.findall(r"Lost (\d+) events", text))


def event_lines(text: str) -> int:
    """Lines of the printf mode ("PID ARG0")."""
    return sum(1 for line in text.splitlines() if line.count(" ") == 1 and line.split()[0].isdigit())


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
    program = STARTUP.format(loop=loop)
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


def compiler_rss(loop: Path) -> int:
    """Peak RSS (KiB) of the BCC compiler process alone, compiling the start-up program.

    It runs as a child of this process and is reaped with wait4, whose rusage covers that one
    process (RUSAGE_CHILDREN would take the maximum over every child this benchmark ran)."""
    from kubectl_pytrace.bpf.objects import CFLAGS
    from kubectl_pytrace.host.env import HostEnvironment
    from kubectl_pytrace.lang import CodegenOptions, compile_program
    from kubectl_pytrace.tracer.engine import setup_headers

    with open(os.devnull, "w") as quiet:
        setup_headers(quiet)  # BCC_KERNEL_SOURCE and the like, inherited by the compiler
    c = compile_program(STARTUP.format(loop=loop), "bench", HostEnvironment(), CodegenOptions(kprobe_mode="fentry")).c
    req = {"text": c.text, "functions": sorted({a.fn_name for a in c.attachments}), "usdt": [], "cflags": CFLAGS}
    with tempfile.TemporaryFile() as f:
        f.write(json.dumps(req).encode())
        f.seek(0)
        p = subprocess.Popen([sys.executable, "-m", "kubectl_pytrace.bpf.bcc_compile"], stdin=f,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError(f"the BCC compiler process failed (wait status {status})")
    return usage.ru_maxrss


def lost_runs(tool: str, loop: Path, calls: int, workdir: Path, runs: int = 3) -> dict:
    """One trace over `runs` back-to-back runs of the loop, each printing `calls` events."""
    program = MODES["printf"].format(loop=loop)
    script = workdir / "runs.sh"  # bpftrace -c wants one ELF binary: not `sh` (two on PATH), not a script
    script.write_text(f"{loop} {calls}\n" * runs)
    command = f"{os.path.realpath(shutil.which('sh'))} {script}"
    out = workdir / f"{tool}-lost.out"
    with open(out, "w") as f:
        p = subprocess.run(tool_argv(tool, program, command), stdout=f, stderr=subprocess.PIPE, text=True,
                           timeout=1800)
    text = out.read_text()
    if p.returncode != 0:
        raise RuntimeError(f"{tool} lost-events run failed ({p.returncode}): {p.stderr[-2000:]}")
    return {"lines": event_lines(text), "lost": lost_count(p.stderr + text), "expected": runs * calls}


def overhead(loop: Path, args, work: Path) -> None:
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

    def med(t, m):
        return statistics.median(x["ns"] for x in results[(t, m)])

    print(f"\n## Overhead on the traced program ({args.calls} calls, median of {args.rounds} rounds)\n")
    print("| mode | bpftrace ns/call | ratio to its empty probe | lost (bpftrace) "
          "| kubectl-pytrace ns/call | ratio to its empty probe | lost (pytrace) |")
    print("|---|---|---|---|---|---|---|")
    for m in ("none", *MODES):
        cells = []
        for t in tools:
            lost = max(x["lost"] for x in results[(t, m)])
            cells.append(f"{med(t, m):.1f} | {med(t, m) / med(t, 'empty'):.2f} | {lost}")
        print(f"| {m} | {' | '.join(cells)} |")
    for t in tools:
        lines = [x["lines"] for x in results[(t, "printf")]]
        print(f"\nprintf lines written by {t} per round: {lines} (expected {args.calls})")


def startups(loop: Path, rounds: int) -> None:
    cold_dir = Path(tempfile.mkdtemp(prefix="pytrace-cache-"))
    warm_env = dict(os.environ)
    startup("bpftrace", loop, warm_env)  # not measured: it fills the page cache, and the
    startup("kubectl-pytrace", loop, warm_env)  # compiled-program cache of the warm runs
    st = {"bpftrace": [], "warm": [], "cold": []}
    for r in range(rounds):
        st["bpftrace"].append(startup("bpftrace", loop, warm_env))
        st["warm"].append(startup("kubectl-pytrace", loop, warm_env))
        shutil.rmtree(cold_dir, ignore_errors=True)
        st["cold"].append(startup("kubectl-pytrace", loop, dict(os.environ, PYTRACE_CACHE_DIR=str(cold_dir))))
    shutil.rmtree(cold_dir, ignore_errors=True)
    b = statistics.median(x["seconds"] for x in st["bpftrace"])
    print(f"\n## Start-up to attached, and peak RSS of the tracer process (median of {rounds})\n")
    print("| tool | seconds (median) | ratio to bpftrace | peak RSS MiB |")
    print("|---|---|---|---|")
    labels = {"bpftrace": "bpftrace", "warm": "kubectl-pytrace (cached program)",
              "cold": "kubectl-pytrace (cold: BCC compiles)"}
    for name, rows in st.items():
        sec = statistics.median(x["seconds"] for x in rows)
        rss = max(x["rss_kib"] for x in rows) / 1024
        print(f"| {labels[name]} | {sec:.3f} | {sec / b:.2f} | {rss:.0f} |")
    print(f"\nBCC compiler process alone (a cold start's; it exits before tracing): "
          f"peak RSS {compiler_rss(loop) / 1024:.0f} MiB")


def lost_events(loop: Path, calls: int, work: Path) -> None:
    print(f"\n## Lost events: one trace over 3 back-to-back runs of {calls} printf events\n")
    print("| tool | lines written | lost (reported) | missing (not reported) |")
    print("|---|---|---|---|")
    for t in ("bpftrace", "kubectl-pytrace"):
        r = lost_runs(t, loop, calls, work)
        print(f"| {t} | {r['lines']} of {r['expected']} | {r['lost']} | {r['expected'] - r['lines'] - r['lost']} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = Path(tempfile.mkdtemp(prefix="pytrace-bench-"))
    try:
        loop = build_loop(work)
        overhead(loop, args, work)
        startups(loop, args.rounds)
        lost_events(loop, args.calls, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
