"""bpf(2) and perf_event_open(2) with ctypes: every call the tracer makes to load, attach, read
and run BPF programs (BCC only compiles, in a process of its own: bcc_compile.py).

Maps are read as raw bytes (RawMap) and decoded with the compiler's layouts (output/decode.py);
BEGIN and END run through BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Iterator, Sequence, Tuple

from kubectl_pytrace.kernel.sysfs import possible_cpus

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


# ---- creating maps and loading programs ---------------------------------------------------------

BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17

PROG_TYPES = {"kprobe": 2, "tracepoint": 5, "perf_event": 7, "raw_tracepoint": 17, "tracing": 26}
ATTACH_FENTRY, ATTACH_FEXIT = 24, 25


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * 16),
                ("pad", ctypes.c_uint8 * 64)]


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
                ("prog_btf_fd", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
                ("func_info", ctypes.c_uint64), ("func_info_cnt", ctypes.c_uint32),
                ("line_info_rec_size", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
                ("line_info_cnt", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
                ("attach_prog_fd", ctypes.c_uint32), ("pad", ctypes.c_uint8 * 64)]


class _RawTpOpenAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0,
               name: str = "") -> int:
    attr = _MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                          max_entries=max_entries, map_flags=flags, map_name=name.encode()[:15])
    return _bpf(BPF_MAP_CREATE, attr)


class VerifierError(BPFError):
    def __init__(self, errno_: int, log: str):
        super().__init__(errno_, os.strerror(errno_))
        self.log = log


def _kernel_version_code() -> int:
    parts = (os.uname().release.split("-")[0].split(".") + ["0", "0"])[:3]
    nums = [int("".join(c for c in p if c.isdigit()) or 0) for p in parts]
    return (nums[0] << 16) | (nums[1] << 8) | min(nums[2], 255)


class _BtfLoadAttr(ctypes.Structure):
    _fields_ = [("btf", ctypes.c_uint64), ("btf_log_buf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32),
                ("btf_log_size", ctypes.c_uint32), ("btf_log_level", ctypes.c_uint32), ("pad", ctypes.c_uint8 * 64)]


BPF_BTF_LOAD = 18


def btf_load(blob: bytes) -> int:
    buf = ctypes.create_string_buffer(blob, len(blob))
    return _bpf(BPF_BTF_LOAD, _BtfLoadAttr(btf=ctypes.addressof(buf), btf_size=len(blob)))


def prog_load(prog_type: int, insns: bytes, name: str, expected_attach_type: int = 0,
              attach_btf_id: int = 0, btf_fd: int = 0, func_info: Sequence[Tuple[int, int]] = ()) -> int:
    """Loads a program; on failure retries with the verifier log and raises VerifierError with it.
    func_info: (instruction index, BTF FUNC id) of each function, with btf_fd (subprograms)."""
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = _ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8, insns=ctypes.addressof(buf),
                         license=ctypes.addressof(lic), kern_version=_kernel_version_code(),
                         prog_name=name.encode()[:15], expected_attach_type=expected_attach_type,
                         attach_btf_id=attach_btf_id)
    if func_info:
        info = ctypes.create_string_buffer(b"".join(struct.pack("<II", *f) for f in func_info))
        attr.prog_btf_fd, attr.func_info_rec_size = btf_fd, 8
        attr.func_info, attr.func_info_cnt = ctypes.addressof(info), len(func_info)
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except BPFError as first:
        size = 1 << 22
        log = ctypes.create_string_buffer(size)
        attr.log_level, attr.log_size, attr.log_buf = 1, size, ctypes.addressof(log)
        try:
            return _bpf(BPF_PROG_LOAD, attr)
        except BPFError as e:
            raise VerifierError(e.errno, log.value.decode("utf-8", "replace")) from None
        except Exception:
            raise first


def raw_tracepoint_open(prog_fd: int, name: str = "") -> int:
    """Attaches a raw tracepoint program to `name`, or a fentry/fexit program (name "": its target
    came with the load)."""
    cname = ctypes.create_string_buffer(name.encode()) if name else None
    attr = _RawTpOpenAttr(name=ctypes.addressof(cname) if cname else 0, prog_fd=prog_fd)
    return _bpf(BPF_RAW_TRACEPOINT_OPEN, attr)


# ---- perf events ----------------------------------------------------------------------------------

_NR_PERF_EVENT_OPEN = 298
PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT = 0, 1, 2
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_FLAG_FD_CLOEXEC = 8


class PerfEventAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64),
                ("wakeup_events", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
                ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
                ("pad", ctypes.c_uint8 * 64)]


FLAG_FREQ = 1 << 10


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = 0) -> int:
    attr.size = 112  # PERF_ATTR_SIZE_VER5 is enough for everything we set
    fd = _libc.syscall(_NR_PERF_EVENT_OPEN, ctypes.byref(attr), pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise BPFError(err, os.strerror(err))
    return fd


def perf_attach(perf_fd: int, prog_fd: int) -> None:
    for req, arg in ((PERF_EVENT_IOC_SET_BPF, prog_fd), (PERF_EVENT_IOC_ENABLE, 0)):
        if _libc.ioctl(perf_fd, req, arg) < 0:
            err = ctypes.get_errno()
            raise BPFError(err, os.strerror(err))


def pmu_type(name: str) -> int:
    """The dynamic PMU number of 'uprobe' or 'kprobe' (/sys/bus/event_source/devices/NAME/type)."""
    try:
        with open(f"/sys/bus/event_source/devices/{name}/type") as f:
            return int(f.read())
    except OSError:
        raise BPFError(2, f"this kernel has no {name} PMU (/sys/bus/event_source/devices/{name})") from None


def online_cpus() -> list:
    with open("/sys/devices/system/cpu/online") as f:
        text = f.read().strip()
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus
