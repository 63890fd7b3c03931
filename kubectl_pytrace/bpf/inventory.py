"""Every BPF program loaded on this host, as the kernel describes it (what bpftool prog/link/perf
show), read with the bpf(2) syscall:

    programs()                  -> [ProgInfo]   BPF_PROG_GET_NEXT_ID + BPF_OBJ_GET_INFO_BY_FD
    links()                     -> [LinkInfo]   BPF_LINK_GET_NEXT_ID + BPF_OBJ_GET_INFO_BY_FD (a
                                                uprobe_multi link's path and offsets too)
    task_fd_query(pid, fd)      -> FdAttach     what a perf event fd of a process attaches a program
                                                to (tracepoint, kprobe, uprobe: BPF_TASK_FD_QUERY)

Reading other processes' objects needs CAP_SYS_ADMIN. Programs and links can vanish between the
listing and the query: they are skipped.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass, field
from typing import Iterator, List, Optional

from kubectl_pytrace.bpf.syscalls import BPFError
from kubectl_pytrace.bpf.syscalls import _bpf as bpf_call

BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_TASK_FD_QUERY = 20
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31

PROG_TYPES = {0: "unspec", 1: "socket_filter", 2: "kprobe", 3: "sched_cls", 4: "sched_act", 5: "tracepoint",
              6: "xdp", 7: "perf_event", 8: "cgroup_skb", 9: "cgroup_sock", 10: "lwt_in", 11: "lwt_out",
              12: "lwt_xmit", 13: "sock_ops", 14: "sk_skb", 15: "cgroup_device", 16: "sk_msg",
              17: "raw_tracepoint", 18: "cgroup_sock_addr", 19: "lwt_seg6local", 20: "lirc_mode2",
              21: "sk_reuseport", 22: "flow_dissector", 23: "cgroup_sysctl", 24: "raw_tracepoint_writable",
              25: "cgroup_sockopt", 26: "tracing", 27: "struct_ops", 28: "ext", 29: "lsm", 30: "sk_lookup",
              31: "syscall", 32: "netfilter"}
LINK_TYPES = {1: "raw_tracepoint", 2: "tracing", 3: "cgroup", 4: "iter", 5: "netns", 6: "xdp", 7: "perf_event",
              8: "kprobe_multi", 9: "struct_ops", 10: "netfilter", 11: "tcx", 12: "uprobe_multi", 13: "netkit"}
FD_TYPES = {0: "raw_tracepoint", 1: "tracepoint", 2: "kprobe", 3: "kretprobe", 4: "uprobe", 5: "uretprobe"}


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _TaskFdQueryAttr(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("fd", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("buf_len", ctypes.c_uint32), ("buf", ctypes.c_uint64), ("prog_id", ctypes.c_uint32),
                ("fd_type", ctypes.c_uint32), ("probe_offset", ctypes.c_uint64), ("probe_addr", ctypes.c_uint64)]


@dataclass
class ProgInfo:
    id: int
    type: str
    name: str
    tag: str
    loaded_at: float  # seconds since boot
    uid: int
    map_ids: List[int] = field(default_factory=list)
    run_count: int = 0  # only counted while statistics are on (kernel.bpf_stats_enabled)
    run_time_ns: int = 0
    btf_id: int = 0


@dataclass
class LinkInfo:
    id: int
    type: str
    prog_id: int
    target: str  # what it attaches to, when the kernel says: "sched_switch", "ifindex 3", ...
    # a uprobe_multi link's uprobes: "uprobe:PATH+0xOFFSET" each (as a perf event's), or one
    # "uprobe:PATH (N offsets)" for a link of more than UPROBES_SHOWN
    uprobes: List[str] = field(default_factory=list)

    def attached(self) -> List[str]:
        if self.uprobes:
            return self.uprobes
        return [f"{self.type}:{self.target}"] if self.target else []


UPROBES_SHOWN = 4


@dataclass
class FdAttach:
    prog_id: int
    kind: str  # tracepoint, kprobe, kretprobe, uprobe, uretprobe, raw_tracepoint
    name: str  # the tracepoint or function, or the binary of a uprobe
    offset: int
    addr: int

    def target(self) -> str:
        if self.kind in ("uprobe", "uretprobe"):
            return f"{self.kind}:{self.name}+0x{self.offset:x}"
        if self.kind in ("kprobe", "kretprobe") and not self.name:
            return f"{self.kind}:0x{self.addr:x}"
        return f"{self.kind}:{self.name}" + (f"+0x{self.offset:x}" if self.offset else "")


def _ids(cmd: int) -> Iterator[int]:
    attr = _IdAttr()
    while True:
        try:
            bpf_call(cmd, attr)
        except BPFError as e:
            if e.errno == 2:  # ENOENT: no more
                return
            raise
        yield attr.next_id
        attr.id = attr.next_id


def _fd_by_id(cmd: int, obj_id: int) -> Optional[int]:
    try:
        return bpf_call(cmd, _IdAttr(id=obj_id))
    except BPFError as e:
        if e.errno == 2:  # gone since it was listed
            return None
        raise


def _info(fd: int, buf: ctypes.Array) -> None:
    bpf_call(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=fd, info_len=len(buf), info=ctypes.addressof(buf)))


# struct bpf_prog_info (include/uapi/linux/bpf.h): offsets of the fields read here
_PROG_INFO_SIZE = 232
_PROG = struct.Struct("<II8sII")  # type, id, tag, jited_prog_len, xlated_prog_len


def _prog(fd: int) -> ProgInfo:
    buf = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    _info(fd, buf)
    nr_maps = struct.unpack_from("<I", buf, 52)[0]
    map_ids: List[int] = []
    if nr_maps:
        ids = (ctypes.c_uint32 * nr_maps)()
        buf = ctypes.create_string_buffer(_PROG_INFO_SIZE)
        struct.pack_into("<IQ", buf, 52, nr_maps, ctypes.addressof(ids))
        _info(fd, buf)
        map_ids = list(ids)[:struct.unpack_from("<I", buf, 52)[0]]
    ptype, pid, tag, _, _ = _PROG.unpack_from(buf, 0)
    load_time, uid = struct.unpack_from("<QI", buf, 40)
    name = buf.raw[64:80].split(b"\0", 1)[0].decode("utf-8", "replace")
    btf_id = struct.unpack_from("<I", buf, 128)[0]
    run_time, run_cnt = struct.unpack_from("<QQ", buf, 192)
    return ProgInfo(pid, PROG_TYPES.get(ptype, str(ptype)), name, tag.hex(), load_time / 1e9, uid, map_ids,
                    run_cnt, run_time, btf_id)


def programs() -> List[ProgInfo]:
    out = []
    for pid in list(_ids(BPF_PROG_GET_NEXT_ID)):
        fd = _fd_by_id(BPF_PROG_GET_FD_BY_ID, pid)
        if fd is None:
            continue
        try:
            out.append(_prog(fd))
        finally:
            os.close(fd)
    return out


# struct bpf_link_info: type, id, prog_id, then a union per link type
_LINK_INFO_SIZE = 96


def _link(fd: int) -> LinkInfo:
    buf = ctypes.create_string_buffer(_LINK_INFO_SIZE)
    _info(fd, buf)  # first the type: the union's pointers mean different things per type
    ltype, lid, prog_id = struct.unpack_from("<III", buf, 0)
    kind = LINK_TYPES.get(ltype, str(ltype))
    target = ""
    if kind == "raw_tracepoint":  # {__u64 tp_name; __u32 tp_name_len}: ask for the name
        name = ctypes.create_string_buffer(256)
        buf = ctypes.create_string_buffer(_LINK_INFO_SIZE)
        struct.pack_into("<QI", buf, 16, ctypes.addressof(name), len(name))
        _info(fd, buf)
        target = name.value.decode("utf-8", "replace")
    elif kind == "tracing":
        target = f"btf id {struct.unpack_from('<III', buf, 16)[2]}"
    elif kind in ("xdp", "tcx", "netkit"):
        target = f"ifindex {struct.unpack_from('<I', buf, 16)[0]}"
    elif kind == "uprobe_multi":
        return LinkInfo(lid, kind, prog_id, target, _uprobe_multi(fd))
    return LinkInfo(lid, kind, prog_id, target)


# the uprobe_multi member of bpf_link_info's union (Linux 6.8): path, offsets, ref_ctr_offsets,
# cookies (pointers), path_size, count (in/out), flags, pid
_UPROBE_MULTI = struct.Struct("<QQQQIIII")
UPROBE_MULTI_RETURN = 1


def _uprobe_multi(fd: int) -> List[str]:
    """The uprobes of a uprobe_multi link: its path and count first, then its offsets."""
    path = ctypes.create_string_buffer(4096)
    buf = ctypes.create_string_buffer(_LINK_INFO_SIZE)
    _UPROBE_MULTI.pack_into(buf, 16, ctypes.addressof(path), 0, 0, 0, len(path), 0, 0, 0)
    try:
        _info(fd, buf)
    except BPFError:  # a kernel without uprobe_multi link info (before 6.8)
        return []
    count, flags = _UPROBE_MULTI.unpack_from(buf, 16)[5:7]
    kind = "uretprobe" if flags & UPROBE_MULTI_RETURN else "uprobe"
    name = path.value.decode("utf-8", "replace")
    if count > UPROBES_SHOWN:
        return [f"{kind}:{name} ({count} offsets)"]
    offsets = (ctypes.c_uint64 * max(count, 1))()
    buf = ctypes.create_string_buffer(_LINK_INFO_SIZE)
    _UPROBE_MULTI.pack_into(buf, 16, ctypes.addressof(path), ctypes.addressof(offsets), 0, 0, len(path), count, 0, 0)
    try:
        _info(fd, buf)
    except BPFError:  # more offsets since the first call: no, a link's are fixed; gone
        return [f"{kind}:{name} ({count} offsets)"]
    return [f"{kind}:{name}+0x{off:x}" for off in list(offsets)[:count]]


def links() -> List[LinkInfo]:
    out = []
    for lid in list(_ids(BPF_LINK_GET_NEXT_ID)):
        fd = _fd_by_id(BPF_LINK_GET_FD_BY_ID, lid)
        if fd is None:
            continue
        try:
            out.append(_link(fd))
        finally:
            os.close(fd)
    return out


def task_fd_query(pid: int, fd: int) -> Optional[FdAttach]:
    """What a process's perf event fd attaches a program to; None when it attaches none."""
    buf = ctypes.create_string_buffer(4096)
    attr = _TaskFdQueryAttr(pid=pid, fd=fd, buf_len=len(buf), buf=ctypes.addressof(buf))
    try:
        bpf_call(BPF_TASK_FD_QUERY, attr)
    except BPFError:
        return None
    return FdAttach(attr.prog_id, FD_TYPES.get(attr.fd_type, str(attr.fd_type)),
                    buf.value.decode("utf-8", "replace"), attr.probe_offset, attr.probe_addr)


def boot_time() -> float:
    """The wall-clock time of boot (a program's load time is counted from it)."""
    import time

    with open("/proc/uptime") as f:
        return time.time() - float(f.read().split()[0])


def enable_stats() -> int:
    """Counts every program's runs and run time while the returned fd is open (BPF_ENABLE_STATS)."""
    class _StatsAttr(ctypes.Structure):
        _fields_ = [("type", ctypes.c_uint32)]

    return bpf_call(32, _StatsAttr(type=0))  # BPF_ENABLE_STATS, BPF_STATS_RUN_TIME
