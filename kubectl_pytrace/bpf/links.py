"""BPF links made with BPF_LINK_CREATE, and the kernel features they need.

    fd = perf_link(prog_fd, perf_fd, cookie)                      # 5.15: a perf event, with a cookie
    fd = uprobe_multi(prog_fd, path, offsets, cookies, retprobe)  # 6.6: many uprobes in one link
    fd = kprobe_multi(prog_fd, symbols, cookies, retprobe)        # 5.18: many kprobes in one link

A program attached through a link reads its attachment's cookie with bpf_get_attach_cookie(): one
program can serve many attach points and still tell them apart. A uprobe_multi link registers all
its uprobes in one call and, when closed, unregisters them all behind a single RCU grace period;
closing one perf event per uprobe waits for a grace period each (~0.1 s on a small VM). A
kprobe_multi link does the same for kernel functions (through fprobe: it needs the function
tracer, CONFIG_FPROBE, not CONFIG_KPROBES).
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from typing import Sequence

from kubectl_pytrace.bpf import syscalls as bpfsys

BPF_LINK_CREATE = 28
ATTACH_PERF_EVENT = 41
ATTACH_KPROBE_MULTI = 42
ATTACH_UPROBE_MULTI = 48
UPROBE_MULTI_RETURN = 1  # BPF_F_UPROBE_MULTI_RETURN
KPROBE_MULTI_RETURN = 1  # BPF_F_KPROBE_MULTI_RETURN
MAP_TYPE_PROG_ARRAY = 3
HELPER_GET_ATTACH_COOKIE = 174


class _LinkCreateAttr(ctypes.Structure):
    # the common head, then the attach type's own fields (u64 slots: the union is 8-aligned)
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("u", ctypes.c_uint64 * 6)]


def _link_create(prog_fd: int, target_fd: int, attach_type: int, *words: int) -> int:
    attr = _LinkCreateAttr(prog_fd=prog_fd, target_fd=target_fd, attach_type=attach_type)
    for i, w in enumerate(words):
        attr.u[i] = w
    return bpfsys._bpf(BPF_LINK_CREATE, attr)


def perf_link(prog_fd: int, perf_fd: int, cookie: int) -> int:
    """Attaches a program to an opened perf event (tracepoint, kprobe, uprobe) with a cookie."""
    return _link_create(prog_fd, perf_fd, ATTACH_PERF_EVENT, cookie)


def perf_enable(perf_fd: int) -> None:
    if bpfsys._libc.ioctl(perf_fd, bpfsys.PERF_EVENT_IOC_ENABLE, 0) < 0:
        err = ctypes.get_errno()
        raise bpfsys.BPFError(err, os.strerror(err))


def uprobe_multi(prog_fd: int, path: str, offsets: Sequence[int], cookies: Sequence[int],
                 retprobe: bool = False) -> int:
    """One link for uprobes at `offsets` (file offsets) of `path`, each with its cookie. The
    program must be loaded with expected_attach_type ATTACH_UPROBE_MULTI. The kernel registers
    all or none: one offset it cannot probe fails the whole link."""
    n = len(offsets)
    cpath = ctypes.create_string_buffer(os.fsencode(path))
    offs = (ctypes.c_uint64 * n)(*offsets)
    cooks = (ctypes.c_uint64 * n)(*cookies)
    flags = UPROBE_MULTI_RETURN if retprobe else 0
    # path, offsets, ref_ctr_offsets, cookies, cnt | flags << 32
    return _link_create(prog_fd, 0, ATTACH_UPROBE_MULTI, ctypes.addressof(cpath), ctypes.addressof(offs), 0,
                        ctypes.addressof(cooks), n | flags << 32)


def kprobe_multi(prog_fd: int, symbols: Sequence[str], cookies: Sequence[int], retprobe: bool = False) -> int:
    """One link for kprobes (kretprobes) on kernel functions by name, each with its cookie (the
    kernel sorts the names with their cookies). The program must be loaded with
    expected_attach_type ATTACH_KPROBE_MULTI. All or none, as uprobe_multi."""
    n = len(symbols)
    syms = (ctypes.c_char_p * n)(*[s.encode() for s in symbols])
    cooks = (ctypes.c_uint64 * n)(*cookies)
    flags = KPROBE_MULTI_RETURN if retprobe else 0
    # flags | cnt << 32, syms, addrs, cookies
    return _link_create(prog_fd, 0, ATTACH_KPROBE_MULTI, flags | n << 32, ctypes.addressof(syms), 0,
                        ctypes.addressof(cooks))


def prog_array(max_entries: int) -> int:
    """A BPF_MAP_TYPE_PROG_ARRAY: the table bpf_tail_call() jumps through."""
    return bpfsys.map_create(MAP_TYPE_PROG_ARRAY, 4, 4, max_entries, name="pytrace_dispatch")


# ---- features -------------------------------------------------------------------------------------

_RET0 = bytes.fromhex("b700000000000000" "9500000000000000")  # r0 = 0; exit
_COOKIE = bytes.fromhex("85000000%02x000000" % HELPER_GET_ATTACH_COOKIE) + _RET0  # call 174; r0 = 0; exit


def _loads(insns: bytes, expected_attach_type: int = 0) -> int:
    """A program's fd if the kernel loads it, else -1."""
    try:
        return bpfsys.prog_load(bpfsys.PROG_TYPES["kprobe"], insns, "pytrace_probe", expected_attach_type)
    except OSError:
        return -1


@lru_cache(maxsize=None)
def has_attach_cookie() -> bool:
    """bpf_get_attach_cookie() in kprobe/uprobe programs (Linux 5.15)."""
    fd = _loads(_COOKIE)
    if fd >= 0:
        os.close(fd)
    return fd >= 0


@lru_cache(maxsize=None)
def has_uprobe_multi() -> bool:
    """uprobe_multi links (Linux 6.6): asked as libbpf asks, with a link on '/' that only a kernel
    that has them refuses with EBADF (not a regular file)."""
    fd = _loads(_RET0, ATTACH_UPROBE_MULTI)
    if fd < 0:
        return False
    try:
        os.close(uprobe_multi(fd, "/", [0], [0]))
        return True
    except OSError as e:
        return e.errno == 9  # EBADF
    finally:
        os.close(fd)
