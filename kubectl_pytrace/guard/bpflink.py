"""BPF links and object info with plain bpf(2): what attaching XDP and tc programs needs beyond the
tracer's loader (bpf/syscalls.py).

    fd = link_create(prog_fd, ifindex, BPF_XDP)        # XDP on a device (kernel 5.9+)
    fd = link_create(prog_fd, ifindex, BPF_TCX_EGRESS)  # tc egress through tcx (kernel 6.6+)
    link_info(fd) -> LinkInfo(type, id, prog_id, ifindex)
    prog_info(prog_id) -> ProgInfo(id, name, type)
    detach_link(link_id)                                 # someone else's link (--force)

A link is a file descriptor: closing it detaches the program, and the kernel does the same when
the process dies, even by SIGKILL, so nothing is left attached after a crash. A device that goes
away (its network namespace deleted) leaves the link defunct: link_info() then says ifindex 0.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from typing import Iterator, Optional

from kubectl_pytrace.bpf.syscalls import BPFError
from kubectl_pytrace.bpf.syscalls import _bpf as bpf_call

BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_LINK_CREATE = 28
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_LINK_DETACH = 34

PROG_TYPE_SCHED_CLS = 3
PROG_TYPE_XDP = 6
BPF_XDP = 37
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
LINK_TYPE_XDP = 6
LINK_TYPE_TCX = 11


class _LinkCreateAttr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_ifindex", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("relative_fd", ctypes.c_uint32), ("pad0", ctypes.c_uint32),
                ("expected_revision", ctypes.c_uint64), ("pad", ctypes.c_uint8 * 32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _IdAttr(ctypes.Structure):  # BPF_*_GET_FD_BY_ID, BPF_LINK_GET_NEXT_ID, BPF_LINK_DETACH
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class _LinkInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("prog_id", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("ifindex", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 48)]


class _ProgInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16),
                ("rest", ctypes.c_uint8 * 128)]


@dataclass(frozen=True)
class LinkInfo:
    type: int
    id: int
    prog_id: int
    ifindex: int  # 0: the device is gone (the link is defunct)
    attach_type: int = 0


@dataclass(frozen=True)
class ProgInfo:
    id: int
    name: str
    type: int

    def describe(self) -> str:
        return f"id {self.id}, name {self.name or '(none)'}"


def link_create(prog_fd: int, ifindex: int, attach_type: int) -> int:
    """A link that attaches prog_fd to a device's hook (tcx: after the programs already there).
    BPFError EINVAL: this kernel has no such link (XDP links: 5.9, tcx: 6.6); EBUSY: XDP only,
    the device has a program attached another way."""
    attr = _LinkCreateAttr(prog_fd=prog_fd, target_ifindex=ifindex, attach_type=attach_type)
    return bpf_call(BPF_LINK_CREATE, attr)


def _info(fd: int, info: ctypes.Structure) -> None:
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf_call(BPF_OBJ_GET_INFO_BY_FD, attr)


def link_info(fd: int) -> LinkInfo:
    info = _LinkInfo()
    _info(fd, info)
    return LinkInfo(info.type, info.id, info.prog_id, info.ifindex, info.attach_type)


def prog_info_fd(fd: int) -> ProgInfo:
    info = _ProgInfo()
    _info(fd, info)
    return ProgInfo(info.id, info.name.decode(errors="replace"), info.type)


def prog_info(prog_id: int) -> Optional[ProgInfo]:
    """The program with this id, None when it is gone."""
    try:
        fd = bpf_call(BPF_PROG_GET_FD_BY_ID, _IdAttr(id=prog_id))
    except BPFError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    try:
        return prog_info_fd(fd)
    finally:
        os.close(fd)


def _link_ids() -> Iterator[int]:
    current = 0
    while True:
        attr = _IdAttr(id=current)
        try:
            bpf_call(BPF_LINK_GET_NEXT_ID, attr)
        except BPFError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        current = attr.next_id
        yield current


def find_link(link_type: int, prog_id: int) -> Optional[int]:
    """The id of the link of that type holding program prog_id (None: it is attached otherwise)."""
    for link_id in _link_ids():
        try:
            fd = bpf_call(BPF_LINK_GET_FD_BY_ID, _IdAttr(id=link_id))
        except BPFError:
            continue  # gone meanwhile
        try:
            info = link_info(fd)
        finally:
            os.close(fd)
        if info.type == link_type and info.prog_id == prog_id:
            return link_id
    return None


def detach_link(link_id: int) -> None:
    """Detaches another process's link (its fd stays open, defunct)."""
    fd = bpf_call(BPF_LINK_GET_FD_BY_ID, _IdAttr(id=link_id))
    try:
        bpf_call(BPF_LINK_DETACH, _IdAttr(id=fd))
    finally:
        os.close(fd)
