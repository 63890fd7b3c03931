"""A plain BCC tracer that checks the engine's in-kernel container filter on its own.

    python scope_probe.py '{"filter": {...TaskFilter fields...}, "server": HOST_PATH, "lib": HOST_PATH}'

The predicate is the engine's own (lang/scope.py's prelude for the filter's kind, its values
written into its config map as the engine writes them). Attaches to handle() in the server
(uprobe), to the USDT probe pytracetest:work in the library and to the openat tracepoint (marker
files /tmp/pytrace-marker-TAG), each counting per workload tag with and without the predicate.
"cached": true also attaches the cache's invalidating probes and turns the per-CPU cache on, as
the engine does; without it the cache stays off (generation 0) and every event runs the check.
Prints "attached" when the probes are in; on a line on stdin (or its end) prints the counts as
JSON: {"uprobe": {tag: n}, "uprobe_all": ..., "usdt": ..., "usdt_all": ..., "openat": ...,
"openat_all": ...}.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from kubectl_pytrace.kernel.headers import find_headers  # noqa: E402
from kubectl_pytrace.containers.resolve import TaskFilter  # noqa: E402
from kubectl_pytrace.lang import scope  # noqa: E402

PROGRAM = r"""
#include <uapi/linux/ptrace.h>
#define SCOPED pytrace_in_scope()  /* lang/scope.py's prelude comes first */

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
    cached = bool(args.get("cached"))
    prelude = scope.prelude(scope.ScopeFilter(f.kind))
    b = BPF(text=prelude + PROGRAM, usdt_contexts=[u])
    cfg = b[scope.CFG_MAP]
    cfg[ctypes.c_int(0)] = cfg.Leaf.from_buffer_copy(scope.pack_config(
        f.cgroup_id, f.cgroup_level, f.pidns_dev, f.pidns_ino, f.mntns_ino, f.tgid))
    b.attach_uprobe(name=args["server"], sym="handle", fn_name="on_handle")
    if cached:
        b.attach_raw_tracepoint(tp="sched_switch", fn_name=scope.SWITCH_FN)
        b.attach_tracepoint(tp="cgroup:cgroup_attach_task", fn_name=scope.ATTACH_FN)
        # The invalidating probes are attached: caching may start.
        b[scope.GEN_MAP][ctypes.c_int(0)] = ctypes.c_uint64(1)
    print("attached", flush=True)
    sys.stdin.readline()
    out = {t: {str(k.value): v.value for k, v in b[t].items()}
           for t in ("uprobe", "uprobe_all", "usdt", "usdt_all", "openat", "openat_all")}
    print(json.dumps(out), flush=True)
    b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
