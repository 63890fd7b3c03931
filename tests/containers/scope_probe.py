"""A plain BCC tracer that checks the in-kernel container filter by itself, before the engine uses it.

    python scope_probe.py '{"filter": {...TaskFilter fields...}, "server": HOST_PATH, "lib": HOST_PATH}'

Attaches to handle() in the server (uprobe), to the USDT probe pytracetest:work in the library and
to the openat tracepoint (marker files /tmp/pytrace-marker-TAG), each counting per workload tag with
and without TaskFilter.c_condition() ("cached": true wraps it in the per-CPU cache). Prints "attached" when the probes are in; on a line on stdin
(or its end) prints the counts as JSON: {"uprobe": {tag: n}, "uprobe_all": ..., "usdt": ...,
"usdt_all": ..., "openat": ..., "openat_all": ...}.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from kubectl_pytrace.kernel.headers import find_headers  # noqa: E402
from kubectl_pytrace.tracer.containers import TaskFilter  # noqa: E402

PROGRAM = r"""
#include <uapi/linux/ptrace.h>
#if CACHED
/* The cached form (docs/containers.md): a per-CPU verdict, dropped at every context switch and
 * whenever a task changes cgroup. */
struct pytrace_scope_slot { u64 gen; u64 next; u64 verdict; };
BPF_PERCPU_ARRAY(pytrace_scope_slot, struct pytrace_scope_slot, 1);
BPF_ARRAY(pytrace_scope_gen, u64, 1);

static __always_inline int in_scope(void) {
    int zero = 0;
    struct pytrace_scope_slot *s = pytrace_scope_slot.lookup(&zero);
    u64 *g = pytrace_scope_gen.lookup(&zero);
    if (!s || !g)
        return (IN_SCOPE);
    u64 gen = *(volatile u64 *)g;          /* 0: caching off (until user space enables it) */
    if (gen != 0 && s->gen == gen)
        return s->verdict;
    int v = (IN_SCOPE);
    if (gen != 0 && (s->next == 0 || s->next == (u64)bpf_get_current_task())) {
        s->verdict = v;
        s->gen = gen;
    }
    return v;
}

RAW_TRACEPOINT_PROBE(sched_switch) {
    int zero = 0;
    struct pytrace_scope_slot *s = pytrace_scope_slot.lookup(&zero);
    if (s) {
        s->gen = 0;
        s->next = ctx->args[2];
    }
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_attach_task) {
    int zero = 0;
    u64 *g = pytrace_scope_gen.lookup(&zero);
    if (g)
        __sync_fetch_and_add(g, 1);
    return 0;
}
#define SCOPED in_scope()
#else
#define SCOPED (IN_SCOPE)
#endif

BPF_HASH(uprobe, u64, u64);
BPF_HASH(uprobe_all, u64, u64);
BPF_HASH(usdt, u64, u64);
BPF_HASH(usdt_all, u64, u64);
BPF_HASH(openat, u64, u64);
BPF_HASH(openat_all, u64, u64);

int on_handle(struct pt_regs *ctx) {
    u64 tag = PT_REGS_PARM1(ctx);
    uprobe_all.increment(tag);
    if (SCOPED)
        uprobe.increment(tag);
    return 0;
}

int on_work(struct pt_regs *ctx) {
    int tag = 0;
    bpf_usdt_readarg(1, ctx, &tag);
    u64 k = tag;
    usdt_all.increment(k);
    if (SCOPED)
        usdt.increment(k);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    char name[24] = {};
    bpf_probe_read_user_str(name, sizeof(name), args->filename);
    /* "/tmp/pytrace-marker-" then one digit */
    if (name[0] != '/' || name[4] != '/' || name[5] != 'p' || name[13] != 'm' || name[19] != '-')
        return 0;
    u64 tag = name[20] - '0';
    openat_all.increment(tag);
    if (SCOPED)
        openat.increment(tag);
    return 0;
}
"""


def main() -> int:
    args = json.loads(sys.argv[1])
    f = TaskFilter(**args["filter"])
    os.environ.update(find_headers().env())
    from bcc import BPF, USDT
    u = USDT(path=args["lib"])
    u.enable_probe(probe="pytracetest:work", fn_name="on_work")
    # The condition is built from integers only (TaskFilter.c_condition); passed as a macro.
    cached = int(bool(args.get("cached")))
    b = BPF(text=PROGRAM, usdt_contexts=[u], cflags=[f"-DIN_SCOPE={f.c_condition()}", f"-DCACHED={cached}"])
    b.attach_uprobe(name=args["server"], sym="handle", fn_name="on_handle")
    if cached:
        # The invalidating probes are attached (at load): caching may start.
        b["pytrace_scope_gen"][ctypes.c_int(0)] = ctypes.c_uint64(1)
    print("attached", flush=True)
    sys.stdin.readline()
    out = {t: {str(k.value): v.value for k, v in b[t].items()}
           for t in ("uprobe", "uprobe_all", "usdt", "usdt_all", "openat", "openat_all")}
    print(json.dumps(out), flush=True)
    b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
