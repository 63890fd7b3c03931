#!/usr/bin/env python3
"""Cost of container scoping through kubectl-pytrace itself, on a syscall-heavy workload (as root):

    sudo .venv/bin/python benchmarks/scope_engine.py [--calls 1000000] [--rounds 7]

A static getppid() loop runs inside a Docker container (the engine from hack/docker.sh, the base
image from hack/base-image.sh) and times itself. Variants, interleaved round by round:
  none      no trace
  unscoped  run --local -e 'tracepoint:syscalls:sys_enter_getppid { @ = count(); }'
  scoped    the same with --container-id (the filter the engine chooses for this host)
probe cost = ns per call - ns per call of `none`; extra = scoped cost / unscoped cost - 1.
Best run of each variant is kept (the least disturbed on a shared machine). benchmarks/scope_filter.py
compares the filter kinds one by one with plain BCC.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTRACE = str(REPO / ".venv" / "bin" / "kubectl-pytrace")
DOCKER = "/usr/bin/docker"
PROGRAM = "tracepoint:syscalls:sys_enter_getppid { @ = count(); }"
LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec a, b;
    for (long i = 0; i < n / 10; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def measure(container: str, calls: int, trace_args) -> tuple:
    """(ns per call inside the container, events the trace counted or None)."""
    p = None
    if trace_args is not None:
        p = subprocess.Popen([PYTRACE, "run", "--local", *trace_args, "-e", PROGRAM], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        err = ""
        while "Attached" not in err:
            line = p.stderr.readline()
            if not line:
                sys.exit(f"the trace failed: {err}{p.stderr.read()}")
            err += line
    ns = float(sh(DOCKER, "exec", container, "/loop", str(calls)).stdout.split()[-1])
    counted = None
    if p is not None:
        p.send_signal(2)
        out, _ = p.communicate(timeout=60)
        m = re.search(r"^@: (\d+)$", out, re.M)
        counted = int(m.group(1)) if m else 0
    return ns, counted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    sh(str(REPO / "hack" / "docker.sh"), "up")
    image = sh(str(REPO / "hack" / "base-image.sh")).stdout.split()[-1]
    work = Path(tempfile.mkdtemp(prefix="pytrace-scope-"))
    (work / "loop.c").write_text(LOOP_C)
    sh("gcc", "-O2", "-static", "-o", str(work / "loop"), str(work / "loop.c"))
    name = f"pytrace-bench-{os.getpid()}"
    cid = sh(DOCKER, "run", "-d", "--name", name, image, "sleep", "3600").stdout.strip()
    try:
        sh(DOCKER, "cp", str(work / "loop"), f"{name}:/loop")
        variants = {"none": None, "unscoped": [], "scoped": ["--container-id", cid]}
        results = {k: [] for k in variants}
        counts = {}
        for r in range(args.rounds):
            for k, trace_args in variants.items():
                ns, counted = measure(name, args.calls, trace_args)
                results[k].append(ns)
                if counted is not None:
                    counts[k] = counted
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    finally:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)
    best = {k: min(v) for k, v in results.items()}
    cost = {k: best[k] - best["none"] for k in ("unscoped", "scoped")}
    print(f"\n| variant | ns per getppid() (best of {args.rounds}) | probe cost ns | events counted |")
    print("|---|---|---|---|")
    for k in variants:
        c = f"{cost[k]:.1f}" if k in cost else "-"
        print(f"| {k} | {best[k]:.1f} | {c} | {counts.get(k, '-')} |")
    print(f"\nscoped vs unscoped probe cost: {100 * (cost['scoped'] / cost['unscoped'] - 1):+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
