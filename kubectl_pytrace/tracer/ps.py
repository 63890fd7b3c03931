"""`ps`: the BPF programs loaded on this host, who holds them and where they are attached
(observe the observers).

    rows = snapshot(proc_root="/proc")    # one Program per loaded program

The kernel lists the programs (bpf/inventory.py); who holds them comes from every process's file
descriptors (/proc/PID/fd and fdinfo): a program fd names its `prog_id`, a link fd its `link_id`
and `prog_id`, and a perf event fd is asked with BPF_TASK_FD_QUERY what it attaches (tracepoint,
kprobe, uprobe). A holder's container comes from its cgroup (containers/cgroups.py). A program no
process holds is pinned in bpffs or kept by a link or an attachment the kernel owns (XDP, tc, a
cgroup).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from kubectl_pytrace.bpf import inventory
from kubectl_pytrace.containers import cgroups
from kubectl_pytrace.kernel import procfs


@dataclass
class Holder:
    pid: int
    comm: str
    container_id: str = ""  # the innermost container the process is in ("" on the host)
    ours: bool = False  # a kubectl-pytrace tracer


@dataclass
class Program:
    id: int
    type: str
    name: str
    loaded_at: float  # wall clock
    map_ids: List[int]
    run_count: int
    run_time_ns: int
    attached: List[str] = field(default_factory=list)
    holders: List[Holder] = field(default_factory=list)

    @property
    def ours(self) -> bool:
        return any(h.ours for h in self.holders)

    def to_json(self) -> dict:
        return {"id": self.id, "type": self.type, "name": self.name, "loaded_at": self.loaded_at,
                "map_ids": self.map_ids, "run_count": self.run_count, "run_time_ns": self.run_time_ns,
                "attached": self.attached, "ours": self.ours,
                "holders": [{"pid": h.pid, "comm": h.comm, "container_id": h.container_id, "ours": h.ours}
                            for h in self.holders]}


def _fd_info(path: str) -> Dict[str, str]:
    text = procfs.read_text(path) or ""
    return dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines()))


def _holdings(proc_root: str, pid: int) -> List[Tuple[str, int, Optional[inventory.FdAttach], Dict[str, str]]]:
    """(kind, fd, attachment, fdinfo) of the BPF-related fds of one process."""
    fd_dir = os.path.join(procfs.pid_dir(proc_root, pid), "fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return []
    out = []
    for name in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        fd = int(name)
        if target == "anon_inode:bpf-prog":
            out.append(("prog", fd, None, _fd_info(os.path.join(procfs.pid_dir(proc_root, pid), "fdinfo", name))))
        elif target == "anon_inode:bpf_link":
            out.append(("link", fd, None, _fd_info(os.path.join(procfs.pid_dir(proc_root, pid), "fdinfo", name))))
        elif target == "anon_inode:[perf_event]":
            found = inventory.task_fd_query(pid, fd)
            if found is not None:
                out.append(("perf", fd, found, {}))
    return out


def _holder(proc_root: str, pid: int) -> Holder:
    status = procfs.status_fields(proc_root, pid) or {}
    cmdline = procfs.read_text(os.path.join(procfs.pid_dir(proc_root, pid), "cmdline")) or ""
    refs = cgroups.containers_of(cgroups.parse_cgroup_file(
        procfs.read_text(os.path.join(procfs.pid_dir(proc_root, pid), "cgroup")) or ""))
    return Holder(pid, status.get("Name", "?"), refs[-1].id if refs else "", ours=_is_tracer(cmdline))


def _is_tracer(cmdline: str) -> bool:
    """kubectl-pytrace's own process: its script, or python -m kubectl_pytrace..."""
    argv = cmdline.split("\0")[:3]
    return any(os.path.basename(a) == "kubectl-pytrace" or a.startswith("kubectl_pytrace") for a in argv)


def snapshot(proc_root: str = "/proc") -> List[Program]:
    boot = inventory.boot_time()
    progs = {p.id: Program(p.id, p.type, p.name, boot + p.loaded_at, p.map_ids, p.run_count, p.run_time_ns)
             for p in inventory.programs()}
    links = {link.id: link for link in inventory.links()}
    for link in links.values():
        if link.prog_id in progs:
            progs[link.prog_id].attached.extend(link.attached())
    for pid in procfs.list_pids(proc_root):
        holdings = _holdings(proc_root, pid)
        if not holdings:
            continue
        holder = _holder(proc_root, pid)
        for kind, fd, attach, info in holdings:
            prog_id = attach.prog_id if attach else int(info.get("prog_id", "0") or 0)
            p = progs.get(prog_id)
            if p is None:
                continue
            if attach is not None:
                p.attached.append(attach.target())
            if all(h.pid != pid for h in p.holders):
                p.holders.append(holder)
    for p in progs.values():
        p.attached = sorted(set(p.attached))
    return sorted(progs.values(), key=lambda p: p.id)
