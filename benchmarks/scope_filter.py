#!/usr/bin/env python3
"""Per-event cost of the engine's in-kernel container filter, kind by kind (run as root).

    sudo .venv/bin/python benchmarks/scope_filter.py [--calls N] [--rounds R] [--cpu C] [--json]

A static getppid() loop (N calls timed inside the process) runs pinned to one CPU in a Docker
container (the engine from hack/docker.sh, the image from hack/base-image.sh). The probe on
syscalls:sys_enter_getppid counts into a per-CPU array (bpftrace's `@ = count()`), either unscoped
or behind the engine's own predicate: lang/scope.py's prelude(ScopeFilter(kind)), its values
written into CFG_MAP with pack_config() from the filter containers/resolve.py chooses for that
kind, exactly as the engine does. Cacheable kinds run twice: with the cache off (GEN_MAP 0: the
check on every event) and on (the invalidating probes attached, then a generation written).
Variants are interleaved round by round; each is reported by its best run (the least disturbed
by other tasks on the CPU: on a shared machine the median is mostly noise), with the spread.

    probe cost  = ns per call with the probe - ns per call with no probe attached
    extra       = (scoped probe cost - unscoped probe cost) / unscoped probe cost

"outside" rows run the workload on the host, out of the container: the events the filter rejects
(what neighbours pay). benchmarks/scope_engine.py measures the whole tracer instead.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubectl_pytrace.containers import resolve  # noqa: E402
from kubectl_pytrace.lang import scope  # noqa: E402

DOCKER = "/usr/bin/docker"
TP = "syscalls:sys_enter_getppid"
KINDS = ("cgroup", "pidns", "mntns")

LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec a, b;
    for (long i = 0; i < n / 10; i++) syscall(SYS_getppid);      /* warm up */
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""

PINGPONG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int ab[2], ba[2];
    char c = 0;
    if (pipe(ab) || pipe(ba)) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n + n / 10; i++) {
            if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1) return 1;
        }
        return 0;
    }
    struct timespec a, b;
    for (long i = 0; i < n / 10; i++) { if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1) return 1; }
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) { if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1) return 1; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    waitpid(pid, NULL, 0);
    /* two context switches per round trip */
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n / 2);
    return 0;
}
"""

# After lang/scope.py's prelude: the probe, unscoped and scoped (the engine's first statement).
PROBES = r"""
BPF_PERCPU_ARRAY(counts, u64, 1);

static __always_inline int count(void) {
    int zero = 0;
    u64 *v = counts.lookup(&zero);
    if (v) *v += 1;
    return 0;
}

int unscoped(void *ctx) { return count(); }

int scoped(void *ctx) {
    if (!pytrace_in_scope()) return 0;
    return count();
}
"""


def die(msg: str) -> None:
    print(f"scope_filter.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def sh(*argv: str, timeout: float = 600) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        die(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def build(work: Path, name: str, source: str, static: bool = False) -> Path:
    cc = shutil.which("gcc") or die("gcc not found (apt-get install gcc)")
    (work / f"{name}.c").write_text(source)
    sh(cc, "-O2", *(["-static"] if static else []), "-o", str(work / name), str(work / f"{name}.c"))
    return work / name


class Container:
    """A Docker container pinned to one CPU that sleeps; the loop is run in it with docker exec."""

    def __init__(self, loop: Path, cpu: int):
        sh(str(REPO / "hack" / "docker.sh"), "up", timeout=1200)
        image = sh(str(REPO / "hack" / "base-image.sh"), timeout=1200).split()[-1]
        self.name = f"pytrace-bench-{os.getpid()}"
        self.id = sh(DOCKER, "run", "-d", "--name", self.name, "--cpuset-cpus", str(cpu), image,
                     "sleep", "3600").strip()
        sh(DOCKER, "cp", str(loop), f"{self.name}:/loop")

    def filter(self, kind: str) -> Optional[resolve.TaskFilter]:
        """The TaskFilter the engine would write for this kind, None when it cannot isolate it."""
        try:
            return resolve.choose_filter(resolve.resolve_container(self.id), (kind,))
        except resolve.NoUsableFilter as e:
            print(f"scope_filter.py: no {kind} filter here: {e}", file=sys.stderr)
            return None

    def remove(self) -> None:
        subprocess.run([DOCKER, "rm", "-f", self.name], capture_output=True, timeout=120)


def mntns_offsets():
    from kubectl_pytrace.host.env import HostEnvironment

    env = HostEnvironment()
    if not env.has_btf():
        return None
    return tuple(env.struct_field(s, m).offset for s, m in (  # type: ignore[union-attr]
        ("struct task_struct", "nsproxy"), ("struct nsproxy", "mnt_ns"), ("struct mnt_namespace", "ns.inum")))


class Scoped:
    """The engine's predicate of one kind, its config written as the engine writes it."""

    def __init__(self, kind: str, f: resolve.TaskFilter, offsets):
        from bcc import BPF

        self.kind = kind
        sf = scope.ScopeFilter(kind, offsets if kind == "mntns" else None)
        self.cacheable = sf.cached
        self.b = BPF(text=scope.prelude(sf) + PROBES)
        cfg = self.b[scope.CFG_MAP]
        cfg[ctypes.c_int(0)] = cfg.Leaf.from_buffer_copy(scope.pack_config(
            f.cgroup_id, f.cgroup_level, f.pidns_dev, f.pidns_ino, f.mntns_ino, f.tgid))
        self.generation = 0

    def cache(self, on: bool) -> None:
        """Attaches the invalidating probes then starts a generation (the engine's order), or
        stops caching (generation 0) and detaches them."""
        gen = self.b[scope.GEN_MAP]
        if on:
            self.b.attach_raw_tracepoint(tp="sched_switch", fn_name=scope.SWITCH_FN)
            self.b.attach_tracepoint(tp="cgroup:cgroup_attach_task", fn_name=scope.ATTACH_FN)
            self.generation += 1
            gen[ctypes.c_int(0)] = ctypes.c_uint64(self.generation)
        else:
            gen[ctypes.c_int(0)] = ctypes.c_uint64(0)
            self.b.detach_raw_tracepoint(tp="sched_switch")
            self.b.detach_tracepoint(tp="cgroup:cgroup_attach_task")

    def counted(self) -> int:
        return sum(self.b["counts"][ctypes.c_int(0)])


def variants(programs: Dict[str, Scoped]) -> List[tuple]:
    """(name, program or None, BPF function, cached?) for every measured probe."""
    first = next(iter(programs.values()))
    out = [("none", None, None, False), ("unscoped", first, "unscoped", False)]
    for kind, p in programs.items():
        out.append((kind, p, "scoped", False))
        if p.cacheable:
            out.append((f"{kind}-cached", p, "scoped", True))
    return out


def run_loop(container: Container, loop: Path, calls: int, inside: bool, cpu: int) -> float:
    if inside:
        return float(sh(DOCKER, "exec", container.name, "/loop", str(calls)).split()[-1])
    return float(sh("taskset", "-c", str(cpu), str(loop), str(calls)).split()[-1])


def measure(container: Container, loop: Path, variant: tuple, args, inside: bool) -> tuple:
    """(ns per call, events the probe counted or None)."""
    _, p, fn, cached = variant
    if p is None:
        return run_loop(container, loop, args.calls, inside, args.cpu), None
    if cached:
        p.cache(True)
    p.b.attach_tracepoint(tp=TP, fn_name=fn)
    before = p.counted()
    try:
        return run_loop(container, loop, args.calls, inside, args.cpu), p.counted() - before
    finally:
        p.b.detach_tracepoint(tp=TP)
        if cached:
            p.cache(False)


def context_switch(pingpong: Path, p: Optional[Scoped], args) -> float:
    """ns per context switch (pipe ping-pong), with the cache's invalidating probes when p."""
    if p is not None:
        p.cache(True)
    try:
        return float(sh("taskset", "-c", str(args.cpu), str(pingpong), str(args.calls // 4)).split()[-1])
    finally:
        if p is not None:
            p.cache(False)


def rows_for(samples: Dict[str, List[float]], counted: Dict[str, int], names: List[str], suffix: str) -> List[dict]:
    best = {k: min(v) for k, v in samples.items()}
    base = best["none" + suffix]
    unscoped = best["unscoped" + suffix] - base
    rows = []
    for key in (n + suffix for n in names if n != "none"):
        cost = best[key] - base
        rows.append({"variant": key, "ns_per_call": round(best[key], 1), "probe_ns": round(cost, 1),
                     "extra_pct": round(100 * (cost - unscoped) / unscoped, 1) if unscoped > 0 else None,
                     "events_last_run": counted.get(key), "spread_ns": round(max(samples[key]) - min(samples[key]), 1)})
    return rows


def report(result: dict) -> None:
    print(f"getppid() x {result['calls']}, {result['rounds']} rounds, CPU {result['cpu']}, "
          f"kernel {result['kernel']}, container {result['container']}")
    print(f"no probe: {result['baseline_ns_per_call']['inside']:.1f} ns/call inside the container, "
          f"{result['baseline_ns_per_call']['outside']:.1f} outside")
    print(f"{'variant':<22} {'ns/call':>8} {'probe ns':>9} {'vs unscoped':>12} {'events':>9} {'spread':>7}")
    for row in result["rows"]:
        extra = "" if row["extra_pct"] is None else f"{row['extra_pct']:+.1f}%"
        print(f"{row['variant']:<22} {row['ns_per_call']:>8.1f} {row['probe_ns']:>9.1f} {extra:>12} "
              f"{row['events_last_run'] or 0:>9} {row['spread_ns']:>7.1f}")
    print(f"context switch (pipe ping-pong): {result['context_switch_ns']:.1f} ns; the cache's invalidating "
          f"probes add {result['context_switch_invalidators_ns']:+.1f} ns per switch")


def benchmark(container: Container, loop: Path, pingpong: Path, programs: Dict[str, Scoped], args) -> dict:
    vs = variants(programs)
    names = [v[0] for v in vs]
    samples: Dict[str, List[float]] = {}
    counted: Dict[str, int] = {}
    cacheable = next((p for p in programs.values() if p.cacheable), None)
    for r in range(args.rounds):
        for inside, suffix in ((True, ""), (False, "/outside")):
            for v in vs:
                ns, n = measure(container, loop, v, args, inside)
                samples.setdefault(v[0] + suffix, []).append(ns)
                if n is not None:
                    counted[v[0] + suffix] = n
        samples.setdefault("switch", []).append(context_switch(pingpong, None, args))
        if cacheable is not None:
            samples.setdefault("switch+invalidators", []).append(context_switch(pingpong, cacheable, args))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    best = {k: min(v) for k, v in samples.items()}
    return {"calls": args.calls, "rounds": args.rounds, "cpu": args.cpu, "kernel": os.uname().release,
            "container": container.id[:12],
            "baseline_ns_per_call": {"inside": round(best["none"], 1), "outside": round(best["none/outside"], 1)},
            "rows": rows_for(samples, counted, names, "") + rows_for(samples, counted, names, "/outside"),
            "context_switch_ns": round(best["switch"], 1),
            "context_switch_invalidators_ns":
                round(best.get("switch+invalidators", best["switch"]) - best["switch"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000, help="getppid() calls per run")
    ap.add_argument("--rounds", type=int, default=7, help="runs per variant (the best is reported)")
    ap.add_argument("--cpu", type=int, default=min(1, os.cpu_count() - 1), help="CPU to pin the workload to")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("must run as root (loads BPF programs, starts a container)")
    from kubectl_pytrace.kernel.headers import find_headers

    os.environ.update(find_headers().env())
    work = Path(tempfile.mkdtemp(prefix="pytrace-bench-"))
    container = None
    try:
        loop = build(work, "loop", LOOP_C, static=True)  # static: runs in any image
        pingpong = build(work, "pingpong", PINGPONG_C)
        container = Container(loop, args.cpu)
        offsets = mntns_offsets()
        filters = {k: container.filter(k) for k in KINDS if k != "mntns" or offsets}
        programs = {k: Scoped(k, f, offsets) for k, f in filters.items() if f is not None}
        if not programs:
            die("no filter kind isolates the container on this host")
        result = benchmark(container, loop, pingpong, programs, args)
    finally:
        if container is not None:
            container.remove()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
