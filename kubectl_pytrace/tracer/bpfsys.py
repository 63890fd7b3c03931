"""The few bpf(2) commands the runtime issues itself: raw map access and BPF_PROG_TEST_RUN.

BCC's table classes decode keys and values into ctypes objects; the runtime decodes raw bytes with
the compiler's layouts instead, so it reads maps through the syscall directly.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from typing import Iterator, Tuple

_libc = ctypes.CDLL(None, use_errno=True)
_NR_BPF = 321  # x86_64

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_TEST_RUN = 10


class BPFError(OSError):
    pass


class _MapElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _TestRunAttr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
                ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    r = _libc.syscall(_NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0:
        err = ctypes.get_errno()
        raise BPFError(err, os.strerror(err))
    return r


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """Number of possible CPUs: the size of every per-CPU map value array."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class RawMap:
    """A BPF map by fd with fixed key and value sizes (value_size is one CPU's slot)."""

    def __init__(self, fd: int, key_size: int, value_size: int, per_cpu: bool = False):
        self.fd, self.key_size, self.value_size, self.per_cpu = fd, key_size, value_size, per_cpu
        slot = (value_size + 7) & ~7
        self.slot = slot if per_cpu else value_size
        self.total_value = slot * possible_cpus() if per_cpu else value_size

    def keys(self) -> Iterator[bytes]:
        key = ctypes.create_string_buffer(self.key_size)
        nxt = ctypes.create_string_buffer(self.key_size)
        attr = _MapElemAttr(map_fd=self.fd, key=0, value=ctypes.addressof(nxt))
        first = True
        while True:
            attr.key = 0 if first else ctypes.addressof(key)
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except BPFError as e:
                if e.errno == 2:  # ENOENT: no more keys
                    return
                raise
            first = False
            ctypes.memmove(key, nxt, self.key_size)
            yield nxt.raw

    def lookup(self, key: bytes):
        kbuf = ctypes.create_string_buffer(key, self.key_size)
        vbuf = ctypes.create_string_buffer(self.total_value)
        attr = _MapElemAttr(map_fd=self.fd, key=ctypes.addressof(kbuf), value=ctypes.addressof(vbuf))
        try:
            _bpf(BPF_MAP_LOOKUP_ELEM, attr)
        except BPFError as e:
            if e.errno == 2:
                return None
            raise
        return vbuf.raw

    def items(self) -> Iterator[Tuple[bytes, bytes]]:
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def cpu_slots(self, value: bytes) -> Iterator[bytes]:
        for i in range(0, len(value), self.slot):
            yield value[i:i + self.value_size]

    def delete(self, key: bytes) -> None:
        kbuf = ctypes.create_string_buffer(key, self.key_size)
        attr = _MapElemAttr(map_fd=self.fd, key=ctypes.addressof(kbuf))
        try:
            _bpf(BPF_MAP_DELETE_ELEM, attr)
        except BPFError as e:
            if e.errno != 2:
                raise

    def update(self, key: bytes, value: bytes) -> None:
        kbuf = ctypes.create_string_buffer(key, self.key_size)
        vbuf = ctypes.create_string_buffer(value, self.total_value)
        attr = _MapElemAttr(map_fd=self.fd, key=ctypes.addressof(kbuf), value=ctypes.addressof(vbuf))
        _bpf(BPF_MAP_UPDATE_ELEM, attr)

    def clear(self) -> None:
        for k in list(self.keys()):
            self.delete(k)

    def zero(self) -> None:
        for k in list(self.keys()):
            self.update(k, bytes(self.total_value))


def test_run(prog_fd: int) -> int:
    """Runs a program once, synchronously, on this CPU (BEGIN and END are raw tracepoint programs)."""
    attr = _TestRunAttr(prog_fd=prog_fd)
    _bpf(BPF_PROG_TEST_RUN, attr)
    return attr.retval
