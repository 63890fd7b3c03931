"""Loading a BpfObject into the kernel and attaching its programs, with plain bpf(2)/perf_event_open(2).

Every attachment is a file descriptor (a perf event or a BPF link) owned by this process: closing
it detaches the probe, and the kernel does the same if the process dies, even by SIGKILL (uprobes
and kprobes go through the uprobe/kprobe PMUs, which leave nothing in tracefs). Closing one waits
for an RCU grace period (~0.1 s on a small VM): they are closed many at a time, so that the grace
periods overlap, and many attach points share one descriptor where the kernel allows it
(uprobe_multi links, the syscall dispatcher).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Mapping, Optional, Sequence

from kubectl_pytrace.bpf import dispatch, links as bpflinks, uprobes
from kubectl_pytrace.bpf import syscalls as bpfsys
from kubectl_pytrace.bpf.objects import BpfObject
from kubectl_pytrace.errors import TraceError


class AttachFailed(TraceError):
    """A probe that compiled and loaded cannot be attached (no such function, tracepoint...)."""


def _pmu_bit(pmu: str, name: str, default: int) -> int:
    """Bit position of a PMU format field ("retprobe: config:0")."""
    try:
        with open(f"/sys/bus/event_source/devices/{pmu}/format/{name}") as f:
            return int(f.read().split(":")[1].split("-")[0])
    except (OSError, ValueError, IndexError):
        return default


class Loader:
    def __init__(self, obj: BpfObject, tracefs_root: str):
        self.obj = obj
        self.tracefs = tracefs_root
        self.map_fds: Dict[str, int] = {}
        self.prog_fds: Dict[str, int] = {}
        self.links: List[int] = []
        self.tables: List[int] = []  # the syscall dispatchers' program arrays
        self._keep: List[object] = []  # buffers the kernel reads while opening events

    # ---- maps and programs ----------------------------------------------------------------------
    def create_maps(self) -> None:
        for m in self.obj.maps.values():
            self.map_fds[m.name] = bpfsys.map_create(m.type, m.key_size, m.value_size, m.max_entries,
                                                     m.flags, m.name)

    def load(self, fn: str, prog_type: int, expected_attach_type: int = 0, attach_btf_id: int = 0) -> int:
        key = f"{fn}/{expected_attach_type}" if expected_attach_type else fn
        if key in self.prog_fds:
            return self.prog_fds[key]
        prog = self.obj.progs[fn]
        insns = bytearray(prog.insns)
        for index, map_name in prog.relocs:
            struct.pack_into("<i", insns, index * 8 + 4, self.map_fds[map_name])
        if prog.subprogs:  # callbacks need BTF func_info
            from kubectl_pytrace.bpf.subprog_btf import subprog_btf

            blob, func_info = subprog_btf([0, *prog.subprogs])
            btf_fd = bpfsys.btf_load(blob)
            try:
                fd = bpfsys.prog_load(prog_type, bytes(insns), fn, expected_attach_type, attach_btf_id,
                                      btf_fd, func_info)
            finally:
                os.close(btf_fd)
        else:
            fd = bpfsys.prog_load(prog_type, bytes(insns), fn, expected_attach_type, attach_btf_id)
        self.prog_fds[key] = fd
        return fd

    # ---- attaching ------------------------------------------------------------------------------
    def _perf(self, attr: bpfsys.PerfEventAttr, prog_fd: int, cpu: int = 0, cookie: Optional[int] = None) -> None:
        """The program on a new perf event; with a cookie, through a BPF link that carries it."""
        fd = bpfsys.perf_event_open(attr, -1, cpu)
        try:
            if cookie is None:
                bpfsys.perf_attach(fd, prog_fd)
            else:
                self.links.append(bpflinks.perf_link(prog_fd, fd, cookie))
                bpflinks.perf_enable(fd)
        except Exception:
            os.close(fd)
            raise
        self.links.append(fd)

    def tracepoint(self, prog_fd: int, category: str, name: str) -> None:
        try:
            with open(os.path.join(self.tracefs, "events", category, name, "id")) as f:
                tp_id = int(f.read())
        except OSError as e:
            raise AttachFailed(f"cannot read the id of tracepoint {category}:{name}: {e.strerror}") from None
        attr = bpfsys.PerfEventAttr(type=bpfsys.PERF_TYPE_TRACEPOINT, config=tp_id, sample_period=1,
                                    wakeup_events=1)
        self._perf(attr, prog_fd)

    def uprobe(self, prog_fd: int, path: str, offset: int, retprobe: bool = False,
               ref_ctr_offset: int = 0, cookie: Optional[int] = None) -> None:
        why = uprobes.unsafe(uprobes.first_bytes(path, [offset])[0])
        if why is not None:
            raise AttachFailed(why)
        pmu = bpfsys.pmu_type("uprobe")
        cpath = ctypes.create_string_buffer(path.encode())
        self._keep.append(cpath)
        config = (1 << _pmu_bit("uprobe", "retprobe", 0)) if retprobe else 0
        if ref_ctr_offset:
            config |= ref_ctr_offset << _pmu_bit("uprobe", "ref_ctr_offset", 32)
        attr = bpfsys.PerfEventAttr(type=pmu, config=config, sample_period=1, wakeup_events=1,
                                    config1=ctypes.addressof(cpath), config2=offset)
        self._perf(attr, prog_fd, cookie=cookie)

    def kprobe(self, prog_fd: int, func: str, retprobe: bool = False, cookie: Optional[int] = None) -> None:
        pmu = bpfsys.pmu_type("kprobe")
        cfunc = ctypes.create_string_buffer(func.encode())
        self._keep.append(cfunc)
        config = (1 << _pmu_bit("kprobe", "retprobe", 0)) if retprobe else 0
        attr = bpfsys.PerfEventAttr(type=pmu, config=config, sample_period=1, wakeup_events=1,
                                    config1=ctypes.addressof(cfunc), config2=0)
        self._perf(attr, prog_fd, cookie=cookie)

    def cpu_clock(self, prog_fd: int, period_ns: int = 0, freq: int = 0, cpus: Optional[List[int]] = None) -> None:
        self.perf_event(prog_fd, bpfsys.PERF_TYPE_SOFTWARE, bpfsys.PERF_COUNT_SW_CPU_CLOCK, freq or period_ns,
                        freq=bool(freq), cpus=cpus)

    def perf_event(self, prog_fd: int, type_: int, config: int, period: int, freq: bool = False,
                   cpus: Optional[List[int]] = None) -> None:
        """The program on a perf event of every CPU (software:, hardware:, profile:, interval:)."""
        for cpu in cpus if cpus is not None else bpfsys.online_cpus():
            attr = bpfsys.PerfEventAttr(type=type_, config=config, sample_period=period,
                                        flags=bpfsys.FLAG_FREQ if freq else 0)
            self._perf(attr, prog_fd, cpu)

    def raw_tracepoint(self, prog_fd: int, name: str) -> None:
        self.links.append(bpfsys.raw_tracepoint_open(prog_fd, name))

    def link(self, fd: int) -> None:
        self.links.append(fd)

    def uprobe_multi(self, prog_fd: int, path: str, offsets: Sequence[int], cookies: Sequence[int],
                     retprobe: bool = False) -> Dict[int, OSError]:
        """Uprobes at many offsets of one file in as few uprobe_multi links as the kernel allows
        (the program loaded with links.ATTACH_UPROBE_MULTI); {index: error} of those it refused."""
        return uprobes.attach_many(prog_fd, path, offsets, cookies, retprobe, keep=self.links.append)

    def kprobe_multi(self, prog_fd: int, symbols: Sequence[str], cookies: Sequence[int],
                     retprobe: bool = False) -> None:
        """Kprobes on many kernel functions through one kprobe_multi link (the program loaded with
        links.ATTACH_KPROBE_MULTI); raises OSError when the kernel refuses the link."""
        self.links.append(bpflinks.kprobe_multi(prog_fd, symbols, cookies, retprobe))

    def syscall_dispatch(self, event: str, programs: Mapping[int, int], status_offset: int) -> None:
        """A dispatcher on raw_syscalls:`event` (sys_enter, sys_exit) that runs programs[nr] for
        system call nr (bpf/dispatch.py)."""
        table = bpflinks.prog_array(max(programs) + 1)
        self.tables.append(table)
        for nr, prog_fd in programs.items():
            bpfsys.RawMap(table, 4, 4).update(struct.pack("<I", nr), struct.pack("<I", prog_fd))
        insns = dispatch.syscall_dispatcher(table, status_offset)
        fd = bpfsys.prog_load(bpfsys.PROG_TYPES["tracepoint"], insns, "pytrace_" + event)
        self.prog_fds[f"pytrace_{event}/{table}"] = fd
        self.tracepoint(fd, "raw_syscalls", event)

    # ---- teardown -------------------------------------------------------------------------------
    def detach(self) -> None:
        """Closes every attachment, CLOSERS at a time: each close waits for its own grace period."""
        fds, self.links = self.links, []
        close_all(fds)
        self._keep.clear()

    def close(self) -> None:
        self.detach()
        close_all(self.tables)
        self.tables = []
        for fds in (self.prog_fds, self.map_fds):
            close_all(list(fds.values()))
            fds.clear()


CLOSERS = 64


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def close_all(fds: List[int]) -> None:
    """Closes descriptors, many at a time when there are many (os.close releases the GIL)."""
    if len(fds) < 4:
        for fd in fds:
            _close(fd)
        return
    with ThreadPoolExecutor(min(CLOSERS, len(fds))) as pool:
        list(pool.map(_close, fds))
