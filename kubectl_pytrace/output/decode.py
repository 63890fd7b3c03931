"""Raw bytes from the kernel -> the Python values of tracer/values.py, driven by the compiler's layouts.

A decoder is built once per record layout (an event kind, a map key) and then applied to every
record: struct.unpack_from for the fixed part, then small converters only for the fields that need
one (strings, symbols, stacks).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Callable, List, Optional, Sequence, Tuple

from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang.layout import Record, field_count
from kubectl_pytrace.lang.types import (
    BufT, InetT, IntT, KsymT, ProbeT, PtrT, StackT, StrT, TupleT, Type, UsymT,
)
from kubectl_pytrace.host.symbols import UserSymbols
from kubectl_pytrace.output.values import Buffer, Pointer, Stack, from_bytes

Converter = Callable[[Sequence[Any]], Any]  # the struct items of one value -> the value


class Symbols:
    """Resolves kernel and user addresses, stack ids and probe ids to text (lazily, cached)."""

    def __init__(self, probe_names: Sequence[str] = (), stack_map=None, proc_root: str = "/proc"):
        self.probe_names = list(probe_names)
        self.stack_map = stack_map  # a bpfsys.RawMap of the program's stack traces
        self.user = UserSymbols(proc_root)
        self._kallsyms = None

    @property
    def kallsyms(self):
        if self._kallsyms is None:
            self._kallsyms = tracefs.kallsyms()
        return self._kallsyms

    def ksym(self, addr: int) -> str:
        return self.kallsyms.ksym(addr)

    def usym(self, addr: int, pid: int, offset: bool = False) -> str:
        return self.user.usym(pid, addr, offset)

    def probe(self, probe_id: int) -> str:
        return self.probe_names[probe_id] if probe_id < len(self.probe_names) else f"probe#{probe_id}"

    def stack(self, stack_id: int, pid: int, t: StackT) -> Stack:
        if self.stack_map is None or stack_id < 0:
            return Stack((), t.mode == "perf")
        raw = self.stack_map.lookup(struct.pack("<I", stack_id))
        if raw is None:
            return Stack((), t.mode == "perf")
        frames: List[str] = []
        for (addr,) in struct.iter_unpack("<Q", raw):
            if addr == 0 or len(frames) >= t.limit:
                break
            if t.kernel:
                sym = self.kallsyms.ksym_offset(addr)
            else:
                sym = self.usym(addr, pid, offset=True)
            if t.mode == "raw":
                frames.append(f"{addr:x}")
            elif t.mode == "perf":
                where = "[kernel.kallsyms]" if t.kernel else "[unknown]"
                frames.append(f"{addr:x} {sym} ({where})")
            else:
                frames.append(sym)
        return Stack(tuple(frames), t.mode == "perf")


def _cstr(b: bytes) -> str:
    return from_bytes(b.split(b"\0", 1)[0])


def converter(t: Type, sym: Symbols) -> Optional[Converter]:
    """How to turn the struct items of a value of type t into the value (None: the single item)."""
    if isinstance(t, IntT):
        return None
    if isinstance(t, PtrT):  # printed 0x.. as a map key, in decimal elsewhere
        return lambda items: Pointer(items[0] & 0xFFFFFFFFFFFFFFFF)
    if isinstance(t, StrT):
        return lambda items: _cstr(items[0])
    if isinstance(t, KsymT):
        return lambda items: sym.ksym(items[0])
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
    if isinstance(t, TupleT):
        parts = [(field_count(e), converter(e, sym)) for e in t.elems]

        def tup(items):
            out, i = [], 0
            for n, conv in parts:
                chunk = items[i:i + n]
                out.append(conv(chunk) if conv else chunk[0])
                i += n
            return tuple(out)
        return tup
    raise TypeError(f"cannot decode {t}")


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
        # strings are the common case in printf: convert them without a closure call
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
