#!/usr/bin/env python3
"""Per-event cost of the in-kernel container filter on a tracepoint probe (run as root).

    sudo .venv/bin/python benchmarks/scope_filter.py [--calls N] [--rounds R] [--cpu C] [--json]

A syscall-heavy workload (N getppid() calls timed inside the process, pinned to one CPU) runs in a
stand-in container: a pid namespace and a cgroup v2 group of its own, made here (no Docker needed).
The probe on syscalls:sys_enter_getppid counts into a per-CPU array (bpftrace's `@ = count()`), either
unscoped or behind the predicate the engine emits for each filter kind (TaskFilter.c_condition(), with
its values as constants, or read from a one-entry array map as a program following container
restarts does). Variants are interleaved round by round; each is reported by its best run (the
least disturbed by other tasks on the CPU: on a shared machine the median is mostly noise), with
the spread (max - min) beside it.

    probe cost  = ns per call with the probe - ns per call with no probe attached
    extra       = (scoped probe cost - unscoped probe cost) / unscoped probe cost

"outside" rows run the workload on the host, out of the container: the events the filter rejects
(what neighbours pay).
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubectl_pytrace.containers import cgroups
from kubectl_pytrace.kernel import procfs  # noqa: E402
from kubectl_pytrace.containers.resolve import TaskFilter  # noqa: E402

WORKLOAD_C = r"""
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

# One function per variant; IN_SCOPE_* are the predicates with constants (-D from c_condition()).
PROGRAM = r"""
BPF_PERCPU_ARRAY(counts, u64, 1);
struct pytrace_scope { u64 cgroup_id; u64 pidns_dev; u64 pidns_ino; u32 cgroup_level; };
BPF_ARRAY(pytrace_scope, struct pytrace_scope, 1);

static __always_inline int count(void) {
    int zero = 0;
    u64 *v = counts.lookup(&zero);
    if (v) *v += 1;
    return 0;
}

int unscoped(void *ctx) { return count(); }

int cgroup_const(void *ctx) {
    if (!(IN_SCOPE_CGROUP)) return 0;
    return count();
}

int pidns_const(void *ctx) {
    if (!(IN_SCOPE_PIDNS)) return 0;
    return count();
}

int cgroup_map(void *ctx) {
    int zero = 0;
    struct pytrace_scope *s = pytrace_scope.lookup(&zero);
    if (!s || bpf_get_current_ancestor_cgroup_id(s->cgroup_level) != s->cgroup_id) return 0;
    return count();
}

/* The cached form: a per-CPU verdict for the task running on this CPU.
 * sched_switch marks the slot stale and records the next task; the first scoped event after it
 * computes the verdict with the helper and keeps it only when it runs as that task (an event
 * between the switch tracepoint and the switch itself runs as the previous task), or when no
 * switch has been seen on this CPU since attach (next == 0). A global generation, bumped when a
 * running task changes its cgroup (cgroup:cgroup_attach_task) and by user space when the scope
 * values change, invalidates every slot. A task never changes its pid namespace; a mount namespace
 * filter would also need setns/unshare, whose syscall tracepoints put every syscall of every task
 * on the slow path: it is not cached. The invalidating probes are attached before the scoped ones. */
struct pytrace_scope_slot { u64 gen; u64 next; u64 verdict; };
BPF_PERCPU_ARRAY(pytrace_scope_slot, struct pytrace_scope_slot, 1);
BPF_ARRAY(pytrace_scope_gen, u64, 1);

static __always_inline int predicate(int kind) {
    return kind == 0 ? (IN_SCOPE_CGROUP) : (IN_SCOPE_PIDNS);
}

static __always_inline int in_scope_cached(int kind) {
    int zero = 0;
    struct pytrace_scope_slot *s = pytrace_scope_slot.lookup(&zero);
    u64 *g = pytrace_scope_gen.lookup(&zero);
    if (!s || !g)
        return predicate(kind);
    u64 gen = *(volatile u64 *)g;          /* 0: caching off (until user space enables it) */
    if (gen != 0 && s->gen == gen)
        return s->verdict;
    int v = predicate(kind);
    if (gen != 0 && (s->next == 0 || s->next == (u64)bpf_get_current_task())) {
        s->verdict = v;
        s->gen = gen;
    }
    return v;
}
#define in_scope_cgroup_cached() in_scope_cached(0)
#define in_scope_pidns_cached() in_scope_cached(1)

int cgroup_cached(void *ctx) {
    if (!in_scope_cgroup_cached()) return 0;
    return count();
}

int pidns_cached(void *ctx) {
    if (!in_scope_pidns_cached()) return 0;
    return count();
}

/* sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...): the raw
 * tracepoint (no perf record to build) and only the pointer of next, never dereferenced. */
RAW_TRACEPOINT_PROBE(sched_switch) {
    int zero = 0;
    struct pytrace_scope_slot *s = pytrace_scope_slot.lookup(&zero);
    if (s) {
        s->gen = 0;
        s->next = ctx->args[2];
    }
    return 0;
}

static __always_inline int bump(void) {
    int zero = 0;
    u64 *g = pytrace_scope_gen.lookup(&zero);
    if (g) __sync_fetch_and_add(g, 1);
    return 0;
}
TRACEPOINT_PROBE(cgroup, cgroup_attach_task) { return bump(); }

int pidns_map(void *ctx) {
    int zero = 0;
    struct pytrace_scope *s = pytrace_scope.lookup(&zero);
    struct bpf_pidns_info ns = {};
    if (!s || bpf_get_ns_current_pid_tgid(s->pidns_dev, s->pidns_ino, &ns, sizeof(ns)) != 0) return 0;
    return count();
}
"""

TP = "syscalls:sys_enter_getppid"


def die(msg: str) -> None:
    print(f"scope_filter.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


class StandIn:
    """A pid namespace (held by a sleeping process) and a cgroup v2 group of its own."""

    def __init__(self) -> None:
        mount = procfs.find_cgroup2_mount()
        if mount is None or mount.root != "/":
            die("no cgroup2 hierarchy mounted (needed for the cgroup filter)")
        self.cgroup_dir = Path(mount.mount_point) / f"pytrace-bench-{os.getpid()}"
        self.cgroup_dir.mkdir()
        self.cgroup_path = "/" + str(self.cgroup_dir.relative_to(mount.mount_point))
        # The holder joins the cgroup, then unshare makes a pid namespace whose init sleeps.
        self.holder = subprocess.Popen(
            ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec unshare --pid --fork sleep 100000', "sh",
             str(self.cgroup_dir)])
        deadline = time.monotonic() + 10
        self.init_pid = None
        while time.monotonic() < deadline and self.init_pid is None:
            for pid in procfs.list_pids("/proc"):
                ns = procfs.ns_pids("/proc", pid)
                st = procfs.status_fields("/proc", pid) or {}
                if ns and len(ns) == 2 and ns[1] == 1 and st.get("PPid") == str(self.holder.pid):
                    self.init_pid = pid
            time.sleep(0.05)
        if self.init_pid is None:
            self.close()
            die("could not start the stand-in container (unshare --pid)")
        ns = procfs.ns_id("/proc", self.init_pid, "pid")
        cg_id = os.stat(self.cgroup_dir).st_ino
        level = cgroups.cgroup_level(self.cgroup_path)
        self.cgroup = TaskFilter(kind="cgroup", reason="bench", cgroup_id=cg_id, cgroup_level=level)
        self.pidns = TaskFilter(kind="pidns", reason="bench", pidns_dev=ns.kernel_dev, pidns_ino=ns.ino)

    def command(self, argv, inside: bool, cpu: int):
        pin = ["taskset", "-c", str(cpu)]
        if not inside:
            return pin + argv
        # The shell joins the cgroup, then nsenter --pid forks the workload into the namespace.
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cgroup_dir),
                *pin, "nsenter", "-t", str(self.init_pid), "--pid", *argv]

    def close(self) -> None:
        if self.holder.poll() is None:
            if self.init_pid:
                try:
                    os.kill(self.init_pid, 9)
                except ProcessLookupError:
                    pass
            self.holder.kill()
            self.holder.wait()
        for _ in range(50):
            try:
                self.cgroup_dir.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


def build(cache: Path, name: str, source: str) -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        die("gcc not found (apt-get install gcc)")
    src = cache / f"{name}.c"
    exe = cache / name
    src.write_text(source)
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return str(exe)


INVALIDATORS = [("cgroup:cgroup_attach_task", "tracepoint__cgroup__cgroup_attach_task")]


def invalidators(b, on: bool) -> None:
    """Attach (then enable caching with a fresh generation) or detach (caching off) the probes that
    keep the cached verdicts right."""
    gen = b["pytrace_scope_gen"]
    if not on:
        gen[ctypes.c_int(0)] = ctypes.c_uint64(0)
    if on:
        b.attach_raw_tracepoint(tp="sched_switch", fn_name="raw_tracepoint__sched_switch")
    else:
        b.detach_raw_tracepoint(tp="sched_switch")
    for tp, fn in INVALIDATORS:
        if on:
            b.attach_tracepoint(tp=tp, fn_name=fn)
        else:
            b.detach_tracepoint(tp=tp)
    if on:
        invalidators.generation += 1
        gen[ctypes.c_int(0)] = ctypes.c_uint64(invalidators.generation)


invalidators.generation = 0


def prog_stats(fd: int):
    """(run_time_ns, run_cnt) the kernel counts for a loaded program (kernel.bpf_stats_enabled=1)."""
    prog_id = None
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("prog_id:"):
                prog_id = int(line.split()[1])
    bpftool = shutil.which("bpftool")
    if prog_id is None or bpftool is None:
        return None
    p = subprocess.run([bpftool, "prog", "show", "id", str(prog_id), "-j"], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    info = json.loads(p.stdout)
    return info.get("run_time_ns", 0), info.get("run_cnt", 0)


def run_once(cmd) -> float:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        die(f"workload failed: {' '.join(cmd)}\n{p.stderr}")
    return float(p.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000, help="getppid() calls per run")
    ap.add_argument("--rounds", type=int, default=7, help="runs per variant (the best is reported)")
    ap.add_argument("--cpu", type=int, default=min(1, os.cpu_count() - 1), help="CPU to pin the workload to")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--bpf-stats", action="store_true",
                    help="also report the in-program ns per event the kernel measures (bpftool, bpf_stats_enabled)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("must run as root (loads BPF programs, makes a cgroup and a pid namespace)")

    from kubectl_pytrace.kernel.headers import find_headers
    headers = find_headers()
    os.environ.update(headers.env())
    from bcc import BPF

    tmp = Path(tempfile.mkdtemp(prefix="pytrace-bench-"))
    standin = StandIn()
    try:
        exe = build(tmp, "getppid_loop", WORKLOAD_C)
        pingpong = build(tmp, "pingpong", PINGPONG_C)
        b = BPF(text=PROGRAM, cflags=[f"-DIN_SCOPE_CGROUP={standin.cgroup.c_condition()}",
                                      f"-DIN_SCOPE_PIDNS={standin.pidns.c_condition()}"])
        invalidators(b, False)           # TRACEPOINT_PROBEs attach on load; only the cached runs want them
        scope = b["pytrace_scope"]
        scope[ctypes.c_int(0)] = scope.Leaf(standin.cgroup.cgroup_id, standin.pidns.pidns_dev,
                                            standin.pidns.pidns_ino, standin.cgroup.cgroup_level)
        # (name, BPF function or None, workload inside the stand-in container?, cache invalidators?)
        variants = [("none", None, True, False), ("unscoped", "unscoped", True, False),
                    ("cgroup", "cgroup_const", True, False), ("pidns", "pidns_const", True, False),
                    ("cgroup-map", "cgroup_map", True, False), ("pidns-map", "pidns_map", True, False),
                    ("cgroup-cached", "cgroup_cached", True, True), ("pidns-cached", "pidns_cached", True, True),
                    ("none/outside", None, False, False), ("unscoped/outside", "unscoped", False, False),
                    ("cgroup/outside", "cgroup_const", False, False), ("pidns/outside", "pidns_const", False, False),
                    ("cgroup-cached/outside", "cgroup_cached", False, True),
                    ("pidns-cached/outside", "pidns_cached", False, True)]
        samples = {name: [] for name, _, _, _ in variants}
        samples["switch"] = []
        samples["switch+invalidators"] = []
        counted = {}
        argv = [exe, str(args.calls)]
        for r in range(args.rounds):
            for name, fn, inside, inval in variants:
                if inval:
                    invalidators(b, True)
                if fn:
                    b.attach_tracepoint(tp=TP, fn_name=fn)
                before = sum(b["counts"][ctypes.c_int(0)])
                samples[name].append(run_once(standin.command(argv, inside, args.cpu)))
                counted[name] = sum(b["counts"][ctypes.c_int(0)]) - before
                if fn:
                    b.detach_tracepoint(tp=TP)
                if inval:
                    invalidators(b, False)
            # What the cached form costs every context switch (of any task, on any CPU).
            pp = ["taskset", "-c", str(args.cpu), pingpong, str(args.calls // 4)]
            samples["switch"].append(run_once(pp))
            invalidators(b, True)
            samples["switch+invalidators"].append(run_once(pp))
            invalidators(b, False)
        # In-program time per event as the kernel measures it (its own clock reads add a constant).
        in_prog = {}
        if args.bpf_stats:
            old = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
            Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
            try:
                for name, fn, inside, inval in variants:
                    if not fn or name in in_prog:
                        continue
                    if inval:
                        invalidators(b, True)
                    b.attach_tracepoint(tp=TP, fn_name=fn)
                    before = prog_stats(b.load_func(fn, BPF.TRACEPOINT).fd)
                    run_once(standin.command(argv, inside, args.cpu))
                    after = prog_stats(b.load_func(fn, BPF.TRACEPOINT).fd)
                    b.detach_tracepoint(tp=TP)
                    if inval:
                        invalidators(b, False)
                    if before and after and after[1] > before[1]:
                        in_prog[name] = round((after[0] - before[0]) / (after[1] - before[1]), 1)
                fn = "raw_tracepoint__sched_switch"
                invalidators(b, True)
                before = prog_stats(b.load_func(fn, BPF.RAW_TRACEPOINT).fd)
                run_once(["taskset", "-c", str(args.cpu), pingpong, str(args.calls // 4)])
                after = prog_stats(b.load_func(fn, BPF.RAW_TRACEPOINT).fd)
                invalidators(b, False)
                if before and after and after[1] > before[1]:
                    in_prog["sched_switch probe"] = round((after[0] - before[0]) / (after[1] - before[1]), 1)
            finally:
                Path("/proc/sys/kernel/bpf_stats_enabled").write_text(old)
        b.cleanup()
    finally:
        standin.close()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: min(v) for k, v in samples.items()}
    rows = []
    for where, suffix in (("inside", ""), ("outside", "/outside")):
        base = med["none" + suffix]
        unscoped = med["unscoped" + suffix] - base
        for name in ("unscoped", "cgroup", "pidns", "cgroup-map", "pidns-map", "cgroup-cached", "pidns-cached"):
            key = name + suffix
            if key not in med:
                continue
            cost = med[key] - base
            rows.append({"variant": key, "ns_per_call": round(med[key], 1), "probe_ns": round(cost, 1),
                         "extra_pct": round(100 * (cost - unscoped) / unscoped, 1) if unscoped > 0 else None,
                         "events_last_run": counted.get(key), "spread_ns": round(max(samples[key]) - min(samples[key]), 1)})
    result = {"calls": args.calls, "rounds": args.rounds, "cpu": args.cpu,
              "baseline_ns_per_call": {"inside": round(med["none"], 1), "outside": round(med["none/outside"], 1)},
              "kernel": os.uname().release, "headers": headers.path, "rows": rows,
              "context_switch_ns": round(med["switch"], 1),
              "context_switch_invalidators_ns": round(med["switch+invalidators"] - med["switch"], 1),
              "in_program_ns": in_prog}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"getppid() x {args.calls}, {args.rounds} rounds, CPU {args.cpu}, kernel {result['kernel']}")
    print(f"no probe: {med['none']:.1f} ns/call inside the stand-in container, {med['none/outside']:.1f} outside")
    print(f"{'variant':<22} {'ns/call':>8} {'probe ns':>9} {'vs unscoped':>12} {'events':>9} {'spread':>7}")
    for row in rows:
        extra = "" if row["extra_pct"] is None else f"{row['extra_pct']:+.1f}%"
        print(f"{row['variant']:<22} {row['ns_per_call']:>8.1f} {row['probe_ns']:>9.1f} {extra:>12} "
              f"{row['events_last_run'] or 0:>9} {row['spread_ns']:>7.1f}")
    print(f"context switch (pipe ping-pong): {med['switch']:.1f} ns; the cached form's sched_switch probe "
          f"adds {med['switch+invalidators'] - med['switch']:+.1f} ns per switch")
    if in_prog:
        print("in-program ns per event (kernel.bpf_stats_enabled; includes its own clock reads): "
              + ", ".join(f"{k} {v}" for k, v in in_prog.items()))


if __name__ == "__main__":
    main()
