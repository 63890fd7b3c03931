"""Raw bytes from the kernel -> the primitives of output/values.py, driven by the compiler's layouts.

A decoder is built once per record layout (an event kind, a map key) and then applied to every
record: struct.unpack_from for the fixed part, then small converters only for the fields that need
one (strings, symbols, stacks, pointers...).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.kernel import sysfs, tracefs
from kubectl_pytrace.lang.layout import Record, field_count
from kubectl_pytrace.lang.types import (
    ArrayT, BoolT, BufT, CgroupPathT, EnumT, InetT, IntT, KsymT, MacT, ProbeT, PtrT, RecordT, StackT, StrT,
    TimestampT, TupleT, Type, UsernameT, UsymT,
)
from kubectl_pytrace.host.symbols import UserSymbols
from kubectl_pytrace.output.timefmt import format_timestamp
from kubectl_pytrace.output.values import (
    Array, Buffer, Record as RecordValue, Symbolic, from_bytes, pointer, render_stack,
)

Converter = Callable[[Sequence[Any]], Any]  # the struct items of one value -> the value

_trailer = [".."]  # bpftrace's str_trunc_trailer: what ends a string that filled its buffer


def set_trunc_trailer(text: str) -> None:
    """The program's config (str_trunc_trailer), for every string decoded from now on."""
    _trailer[0] = text


class Symbols:
    """Resolves kernel and user addresses, stack ids and probe ids to text (lazily, cached)."""

    def __init__(self, probe_names: Sequence[str] = (), stack_map=None, proc_root: str = "/proc",
                 enums: Optional[dict] = None):
        self.probe_names = list(probe_names)
        self.stack_map = stack_map  # a bpfsys.RawMap of the program's stack traces
        self.user = UserSymbols(proc_root)
        self._kallsyms = None
        self._users: Optional[Dict[str, str]] = None
        self.enums = enums or {}  # enum name -> {value: name}

    @property
    def kallsyms(self):
        if self._kallsyms is None:
            self._kallsyms = tracefs.kallsyms()
        return self._kallsyms

    def ksym(self, addr: int) -> str:
        return self.kallsyms.ksym(addr)

    def usym(self, addr: int, pid: int, offset: bool = False) -> str:
        return self.user.usym(pid, addr, offset)

    def username(self, uid: int) -> str:
        """The uid's name in /etc/passwd (bpftrace 0.27 prints "" for an unknown uid)."""
        if self._users is None:
            self._users = {}
            try:
                with open("/etc/passwd", errors="replace") as f:
                    for line in f:
                        fields = line.split(":")
                        if len(fields) >= 3 and fields[2] not in self._users:
                            self._users[fields[2]] = fields[0]
            except OSError:
                pass
        return self._users.get(str(uid), "")

    def probe(self, probe_id: int) -> str:
        return self.probe_names[probe_id] if probe_id < len(self.probe_names) else f"probe#{probe_id}"

    def stack(self, stack_id: int, pid: int, t: StackT) -> str:
        if self.stack_map is None or stack_id < 0:
            return render_stack((), t.mode)
        raw = self.stack_map.lookup(struct.pack("<I", stack_id))
        if raw is None:
            return render_stack((), t.mode)
        frames: List[str] = []
        for (addr,) in struct.iter_unpack("<Q", raw):
            if addr == 0 or len(frames) >= t.limit:
                break
            if t.mode == "raw":
                frames.append(f"{addr:x}")
                continue
            if t.kernel:
                sym = self.kallsyms.ksym_offset(addr)
            else:
                sym = self.usym(addr, pid, offset=True)
            if t.mode == "perf":
                where = "([kernel.kallsyms])" if t.kernel else "([unknown])"
                frames.append(f"{addr:x} {sym} {where}")
            else:
                frames.append(sym)
        return render_stack(frames, t.mode)


def cstr(b: bytes, size: int) -> str:
    """A string buffer of `size` bytes: up to its NUL, with bpftrace's trailer when it has none."""
    end = b.find(b"\0", 0, size)
    if end < 0:
        return from_bytes(b[:size]) + _trailer[0]
    return from_bytes(b[:end])


def converter(t: Type, sym: Symbols) -> Optional[Converter]:
    """How to turn the struct items of a value of type t into the value (None: the single item)."""
    if isinstance(t, BoolT):
        return lambda items: bool(items[0])
    if isinstance(t, EnumT):
        names = sym.enums.get(t.name) or dict(t.values)
        mask = (1 << t.bits) - 1

        def enum(items):
            v = items[0] & mask
            return Symbolic(names.get(v, str(v)), v)
        return enum
    if isinstance(t, IntT):
        return None
    if isinstance(t, PtrT):
        return lambda items: pointer(items[0])
    if isinstance(t, StrT):
        size = t.size
        return lambda items: cstr(items[0], size)
    if isinstance(t, KsymT):
        return lambda items: sym.ksym(items[0])
    if isinstance(t, CgroupPathT):
        pattern = t.filter
        return lambda items: sysfs.cgroup_paths(items[0], pattern)
    if isinstance(t, MacT):
        return lambda items: ":".join(f"{b:02X}" for b in items[0].to_bytes(8, "little")[:6])
    if isinstance(t, UsernameT):
        return lambda items: sym.username(items[0])
    if isinstance(t, ProbeT):
        return lambda items: sym.probe(items[0])
    if isinstance(t, UsymT):
        return lambda items: sym.usym(items[0], items[1])
    if isinstance(t, StackT):
        return lambda items: sym.stack(items[0], items[1], t)
    if isinstance(t, InetT):
        return lambda items: _inet(items[0], items[1])
    if isinstance(t, BufT):
        return lambda items: Buffer(items[1][:items[0]])
    if isinstance(t, TimestampT):
        fmt = t.fmt
        return lambda items: format_timestamp(items[0], items[1], fmt)
    if isinstance(t, RecordT):
        return lambda items: _c_record(items[0], 0, t)
    if isinstance(t, (TupleT, ArrayT)):
        elems = _elements(t)
        parts = [(field_count(e), converter(e, sym)) for _, e in elems]
        kind = type(t)

        def compound(items):
            out, i = [], 0
            for n, conv in parts:
                chunk = items[i:i + n]
                out.append(conv(chunk) if conv else chunk[0])
                i += n
            if kind is ArrayT:
                return Array(out)
            return tuple(out)
        return compound
    raise TypeError(f"cannot decode {t}")


def _elements(t: Type) -> List[Tuple[str, Type]]:
    if isinstance(t, TupleT):
        return [(str(i), e) for i, e in enumerate(t.elems)]
    assert isinstance(t, ArrayT)
    return [(str(i), t.elem) for i in range(t.length)]


def _c_value(raw: bytes, off: int, t: Type, bit: int = 0, width: int = 0) -> Any:
    """A member of a C struct, read from the struct's bytes as the compiler laid it out."""
    if isinstance(t, RecordT):
        return _c_record(raw, off, t)
    if isinstance(t, ArrayT):
        esize = _c_size(t.elem)
        if isinstance(t.elem, IntT) and t.elem.bits == 8 and not isinstance(t.elem, (BoolT, EnumT)):
            return cstr(raw[off:off + t.length], t.length)  # char[N], u8[N]: a string, as bpftrace
        return Array(_c_value(raw, off + i * esize, t.elem) for i in range(t.length))
    if isinstance(t, PtrT):
        return pointer(int.from_bytes(raw[off:off + 8], "little"))
    assert isinstance(t, IntT)
    size = max(1, t.bits // 8)
    if width:
        chunk = raw[off:off + 8].ljust(8, b"\0")
        v = (int.from_bytes(chunk, "little") >> bit) & ((1 << width) - 1)
    else:
        v = int.from_bytes(raw[off:off + size], "little", signed=t.signed and not isinstance(t, EnumT))
    if isinstance(t, BoolT):
        return bool(v)
    if isinstance(t, EnumT):
        names = dict(t.values)
        return Symbolic(names.get(v, str(v)), v)
    return v


def _c_size(t: Type) -> int:
    if isinstance(t, RecordT):
        return t.size
    if isinstance(t, ArrayT):
        return _c_size(t.elem) * t.length
    if isinstance(t, PtrT):
        return 8
    return max(1, t.bits // 8)  # type: ignore[attr-defined]


def _c_record(raw: bytes, off: int, t: RecordT) -> RecordValue:
    return RecordValue((name, _c_value(raw, off + moff, mt, bit, width))
                       for name, mt, moff, bit, width in t.members)


def _inet(af: int, raw: bytes) -> str:
    if af == 10:
        return str(ipaddress.IPv6Address(raw[:16]))
    return str(ipaddress.IPv4Address(raw[:4]))


class RecordDecoder:
    """Decodes one record layout (starting at `record.fields[0].offset`) into a list of values."""

    def __init__(self, record: Record, sym: Symbols):
        self.struct = struct.Struct(record.struct_format())
        self.offset = record.fields[0].offset if record.fields else 0
        plan: List[Tuple[int, int, Optional[Converter]]] = []
        i = 0
        for f in record.fields:
            n = field_count(f.type)
            plan.append((i, n, converter(f.type, sym)))
            i += n
        self.simple = all(conv is None for _, _, conv in plan)
        self.plan = plan

    def __call__(self, buf) -> List[Any]:
        items = self.struct.unpack_from(buf, self.offset)
        if self.simple:
            return list(items)
        out = []
        for i, n, conv in self.plan:
            if conv is None:
                out.append(items[i])
            else:
                out.append(conv(items[i:i + n]))
        return out
