"""The in-kernel container scope: C for "which of the targets does the current task belong to?".

Every probe (but BEGIN/END) starts with `u64 pytrace_src = pytrace_in_scope(); if (!pytrace_src)
return 0;`: pytrace_src is 1 + the index of the target (container) the task belongs to, and every
event the probe sends carries it in the upper half of its id, so a tracer that watches several
containers on one node (the replicas of a workload) knows which one each event came from. The
values the predicate compares with (cgroup id, pid namespace, mount namespace inode, tgid) live in
the array `pytrace_scope_cfg`, one entry per target, written by the tracer and rewritten when a
container restarts, so the program follows it. Which comparison is compiled in is the filter's
kind, chosen per host by the tracer (containers/resolve.py): none of them reads a kernel struct
through the headers; the mount namespace one reads through offsets from BTF. A node trace whose
tracer is not in the machine's PID namespace (a kind node) is scoped by kind `pidtree`: the tasks
that namespace numbers, read through the same offsets as `pid` there (PidView).

Helper calls cost ~20 ns each on the machines measured, so the verdict is cached per CPU for the
running task (docs/containers.md): a raw sched_switch probe forgets it when another task is
switched in, and a cgroup_attach_task probe bumps a generation when any task changes cgroup. The
mount namespace verdict is not cached (setns/unshare would need more invalidation).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

KINDS = ("cgroup", "pidns", "mntns", "tgid", "pidtree")


@dataclass(frozen=True)
class PidView:
    """`pid` and `tid` as the tracer's own pid namespace numbers them, when that is not the initial
    namespace (a tracer in a kind node: the node's PIDs, which its /proc shows). The program reads
    task->thread_pid->numbers[i].nr for the level i whose namespace is that one (by inode number;
    levels 1 to MAX_LEVEL are looked at); a task the namespace cannot see gets 0. Offsets come
    from the running kernel's BTF."""

    MAX_LEVEL = 7

    inum: int  # its inode number (stat /proc/self/ns/pid)
    group_leader: int  # offsetof(struct task_struct, group_leader)
    thread_pid: int  # offsetof(struct task_struct, thread_pid)
    pid_level: int  # offsetof(struct pid, level)
    numbers: int  # offsetof(struct pid, numbers)
    upid_size: int  # sizeof(struct upid)
    upid_nr: int  # offsetof(struct upid, nr)
    upid_ns: int  # offsetof(struct upid, ns)
    ns_inum: int  # offsetof(struct pid_namespace, ns.inum)

    def find_level(self, task: str, names: Tuple[str, str, str, str, str], on_match: List[str]) -> List[str]:
        """C statements that read task's struct pid and run on_match when one of its levels 1 to
        MAX_LEVEL belongs to this namespace; names: the variables (pid, level, ns, inum, i), i the
        level found."""
        pid, level, ns, inum, i = names
        return [f"u64 {pid} = 0, {ns} = 0; u32 {level} = 0, {inum} = 0;",
                f"bpf_probe_read_kernel(&{pid}, 8, (void *)({task} + {self.thread_pid}));",
                f"if ({pid}) bpf_probe_read_kernel(&{level}, 4, (void *)({pid} + {self.pid_level}));",
                "#pragma unroll",
                f"for (int {i} = 1; {i} <= {self.MAX_LEVEL}; {i}++) {{",
                f"    if ({i} > {level}) break;",
                f"    bpf_probe_read_kernel(&{ns}, 8, (void *)({pid} + {self.numbers} + {i} * {self.upid_size} + "
                f"{self.upid_ns}));",
                f"    if ({ns}) bpf_probe_read_kernel(&{inum}, 4, (void *)({ns} + {self.ns_inum}));",
                f"    if ({ns} && {inum} == {self.inum}U) {{",
                *(f"        {line}" for line in on_match),
                "    }",
                "}"]


@dataclass(frozen=True)
class ScopeFilter:
    kind: str  # one of KINDS
    mntns_offsets: Optional[Tuple[int, int, int]] = None  # task_struct.nsproxy, nsproxy.mnt_ns, mnt_namespace.ns.inum
    targets: int = 1  # how many containers (entries of CFG_MAP); every one is of this kind
    # "pidtree": the tasks the tracer's own pid namespace can see (it and the ones nested in it): a
    # node/ trace where the node is a container (kind). The namespace and the offsets: pid_view.
    pid_view: Optional[PidView] = None

    @property
    def cached(self) -> bool:
        return self.kind in ("cgroup", "pidns", "pidtree")  # (a task's pid namespace never changes)


CFG_MAP = "pytrace_scope_cfg"  # the target's ids (one entry): written by the tracer
GEN_MAP = "pytrace_scope_gen"  # the cache generation: 0 until the invalidating probes run
SLOT_MAP = "pytrace_scope_slot"  # per-CPU cached verdict

CFG_STRUCT = ("struct pytrace_scope_cfg { u64 cgroup_id; s64 cgroup_level; u64 pidns_dev; u64 pidns_ino; "
              "u64 mntns_ino; u64 tgid; };")
CFG_FORMAT = "<QqQQQQ"  # the same fields, for the tracer


def pack_config(cgroup_id: int = 0, cgroup_level: int = -1, pidns_dev: int = 0, pidns_ino: int = 0,
                mntns_ino: int = 0, tgid: int = 0) -> bytes:
    """The value of the CFG_MAP entry (what the predicate compares with)."""
    return struct.pack(CFG_FORMAT, cgroup_id, cgroup_level, pidns_dev, pidns_ino, mntns_ino, tgid)

SWITCH_FN = "pytrace_scope_switch"
ATTACH_FN = "pytrace_scope_attach"


def _predicate(f: ScopeFilter, found: str) -> List[str]:
    """Statements that run `found` when the current task is the target of entry c."""
    if f.kind == "cgroup":
        return ["if (c->cgroup_level >= 0) {",
                f"    if (bpf_get_current_ancestor_cgroup_id(c->cgroup_level) == c->cgroup_id) {found}",
                f"}} else if (bpf_get_current_cgroup_id() == c->cgroup_id) {found}"]
    if f.kind == "pidns":
        return ["struct bpf_pidns_info info = {};",
                f"if (bpf_get_ns_current_pid_tgid(c->pidns_dev, c->pidns_ino, &info, sizeof(info)) == 0) {found}"]
    if f.kind == "tgid":
        return [f"if ((bpf_get_current_pid_tgid() >> 32) == c->tgid) {found}"]
    if f.kind == "pidtree":
        if f.pid_view is None:
            raise ValueError("a pid namespace tree filter needs the tracer's PidView")
        return _visible(f.pid_view, found)
    if f.kind == "mntns":
        if f.mntns_offsets is None:
            raise ValueError("a mount namespace filter needs the BTF offsets")
        nsproxy, mnt_ns, inum = f.mntns_offsets
        return ["u64 p = 0; u32 ino = 0;",
                "u64 task = (u64)bpf_get_current_task();",
                f"bpf_probe_read_kernel(&p, 8, (void *)(task + {nsproxy}));",
                f"if (p) bpf_probe_read_kernel(&p, 8, (void *)(p + {mnt_ns}));",
                f"if (p) bpf_probe_read_kernel(&ino, 4, (void *)(p + {inum}));",
                f"if (p && ino == c->mntns_ino) {found}"]
    raise ValueError(f"unknown scope kind {f.kind!r}")


def _visible(v: PidView, found: str) -> List[str]:
    """Whether the current task has a number in pid namespace v.inum: the namespace at one of its
    pid's levels 1..MAX_LEVEL is that one (the initial namespace, level 0, sees every task)."""
    return v.find_level("(u64)bpf_get_current_task()", ("pid", "level", "ns", "inum", "i"), [found])


def _check(f: ScopeFilter) -> List[str]:
    """pytrace_scope_check(): 1 + the index of the first target the task belongs to, else 0."""
    lines = ["static __always_inline u64 pytrace_scope_check(void)", "{"]
    for i in range(f.targets):
        lines += ["    {", f"        int k = {i};",
                  f"        struct pytrace_scope_cfg *c = {CFG_MAP}.lookup(&k);",
                  "        if (c) {"]
        lines += ["            " + line for line in _predicate(f, f"return {i + 1};")]
        lines += ["        }", "    }"]
    return lines + ["    return 0;", "}", ""]


def prelude(f: ScopeFilter) -> str:
    """Maps and functions to put before the probe functions."""
    if f.targets < 1:
        raise ValueError("a scope needs at least one target")
    lines = [CFG_STRUCT, f"BPF_ARRAY({CFG_MAP}, struct pytrace_scope_cfg, {f.targets});", ""]
    lines += _check(f)
    if not f.cached:
        lines += ["static __always_inline u64 pytrace_in_scope(void) { return pytrace_scope_check(); }", ""]
        return "\n".join(lines)
    lines += [
        "struct pytrace_scope_slot { u64 gen; u64 next; u64 verdict; };",
        f"BPF_PERCPU_ARRAY({SLOT_MAP}, struct pytrace_scope_slot, 1);",
        f"BPF_ARRAY({GEN_MAP}, u64, 1); /* 0: no caching yet */",
        "",
        "static __always_inline u64 pytrace_in_scope(void)",
        "{",
        "    int zero = 0;",
        f"    struct pytrace_scope_slot *s = {SLOT_MAP}.lookup(&zero);",
        f"    u64 *g = {GEN_MAP}.lookup(&zero);",
        "    if (!s || !g) return pytrace_scope_check();",
        "    u64 gen = *(volatile u64 *)g;",
        "    if (gen != 0 && s->gen == gen) return s->verdict;",
        "    u64 v = pytrace_scope_check();",
        "    /* only the task sched_switch announced may store a verdict: an event between the",
        "       switch tracepoint and the switch itself still runs as the previous task */",
        "    if (gen != 0 && (s->next == 0 || s->next == (u64)bpf_get_current_task())) {",
        "        s->verdict = v;",
        "        s->gen = gen;",
        "    }",
        "    return v;",
        "}",
        "",
        f"int {SWITCH_FN}(u64 *ctx)  /* raw tracepoint sched_switch: next is args[2], never read */",
        "{",
        "    int zero = 0;",
        f"    struct pytrace_scope_slot *s = {SLOT_MAP}.lookup(&zero);",
        "    if (s) { s->gen = 0; s->next = ctx[2]; }",
        "    return 0;",
        "}",
        "",
        f"int {ATTACH_FN}(void *ctx)  /* tracepoint cgroup:cgroup_attach_task */",
        "{",
        "    int zero = 0;",
        f"    u64 *g = {GEN_MAP}.lookup(&zero);",
        "    if (g) __sync_fetch_and_add(g, 1);",
        "    return 0;",
        "}",
        "",
    ]
    return "\n".join(lines)
