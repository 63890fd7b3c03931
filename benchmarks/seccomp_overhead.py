#!/usr/bin/env python3
"""What recording a seccomp profile costs the recorded program and everything else on the node.

    sudo .venv/bin/python benchmarks/seccomp_overhead.py [--calls 1000000] [--rounds 5]

`seccomp` is the trace `tracepoint:raw_syscalls:sys_enter { @syscalls[args->id] = count(); }`
scoped to the container in the kernel. Its program runs on every system call of every task on the
node: for tasks out of scope it stops at the scope check, for the recorded ones it also counts.
The workload (benchmarks/syscalls.c) makes getppid() calls, about the cheapest system call, so the
ratios are the worst case: a program whose calls do real work pays the same absolute amount.

Three ways, interleaved in rounds (median of the rounds), each round a fresh recording, as the
command records (guard/seccomp.PROGRAM through tracer/session with --pid):
  none      no recording
  others    a recording of another process (`sleep`): the workload is out of scope
  recorded  a recording of the workload itself
The recorded count of getppid calls is checked against what the workload made.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kubectl_pytrace.guard import seccomp  # noqa: E402
from kubectl_pytrace.output.wire import WireOutput, maps_of, parse_line  # noqa: E402
from kubectl_pytrace.tracer import session  # noqa: E402

GETPPID = 110  # x86_64


class Workload:
    def __init__(self, binary: str, calls: int):
        self.p = subprocess.Popen([binary, str(calls)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def round(self) -> float:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        return float(self.p.stdout.readline())

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait()


def recorded_round(work: Workload, pid: int) -> tuple:
    """(ns per call while `pid` is recorded, the recording's {nr: calls})"""
    got = []
    buf = io.StringIO()
    spec = session.TraceSpec(text=seccomp.PROGRAM, filename="seccomp.bt", deadline=0.1, pid=pid)
    session.run(spec, stderr=io.StringIO(), output=WireOutput(buf), announce=lambda n: got.append(work.round()))
    dumps = [d for line in buf.getvalue().splitlines() for d in maps_of(parse_line(line) or {})]
    return got[0], seccomp.syscall_counts(dumps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "syscalls")
        subprocess.run(["cc", "-O2", "-o", binary, str(HERE / "syscalls.c")], check=True)
        work = Workload(binary, args.calls)
        other = subprocess.Popen(["sleep", "3600"])
        times = {"none": [], "others": [], "recorded": []}
        try:
            for _ in range(args.rounds):
                times["none"].append(work.round())
                ns, counts = recorded_round(work, other.pid)
                times["others"].append(ns)
                ns, counts = recorded_round(work, work.p.pid)
                times["recorded"].append(ns)
                assert counts.get(GETPPID, 0) >= args.calls, (counts.get(GETPPID), args.calls)
        finally:
            other.kill()
            other.wait()
            work.close()
    floor = statistics.median(times["none"])
    print(f"{'':10} {'ns/call':>8} {'ratio':>6}   rounds (ns/call)")
    for mode, xs in times.items():
        med = statistics.median(xs)
        print(f"{mode:10} {med:>8.1f} {med / floor:>6.2f}   {' '.join(f'{x:.0f}' for x in xs)}")


if __name__ == "__main__":
    main()
