"""Reading the program's BPF maps into MapDumps (per-CPU slots reduced as bpftrace 0.27 does)."""

from __future__ import annotations

import struct
from typing import Dict, List, Tuple

from kubectl_pytrace.lang.program import MapSpec
from kubectl_pytrace.lang.layout import Record, agg_value_format, sizeof
from kubectl_pytrace.lang.types import AggT, BoolT, EnumT, IntT, StrT, Type
from kubectl_pytrace.bpf.syscalls import RawMap
from kubectl_pytrace.output.decode import RecordDecoder, Symbols
from kubectl_pytrace.output.values import MapDump

_M64 = (1 << 64) - 1


def _value_type_name(t: Type) -> str:
    if isinstance(t, IntT) and not isinstance(t, BoolT):
        return "int"
    return "other"


def _key_kind(t: Type) -> Tuple[str, int]:
    """How bpftrace 0.27 sorts by a key component: ints signed in their size, strings bytewise."""
    if isinstance(t, IntT) and not isinstance(t, BoolT):
        return ("int", 8)
    if isinstance(t, StrT):
        return ("str", t.size)
    return ("other", sizeof(t))


class MapReader:
    """Knows how to read and reset one map of the program."""

    def __init__(self, spec: MapSpec, fd: int, sym: Symbols):
        self.spec = spec
        vt = spec.value_type
        key_size = spec.key.size if spec.key else 8
        if isinstance(vt, AggT):
            self.value_struct = struct.Struct(agg_value_format(vt))
            value_size = self.value_struct.size
        else:
            value_size = sizeof(vt)
            self.value_decoder = RecordDecoder(Record.of([("v", vt)]), sym)
        self.raw = RawMap(fd, key_size, value_size, per_cpu=isinstance(vt, AggT))
        self.key_kinds: Tuple[Tuple[str, int], ...] = ()
        if spec.key is not None:
            user_fields = spec.key.fields[:-1] if spec.bucketed else spec.key.fields
            self.key_decoder = RecordDecoder(Record(tuple(user_fields)), sym) if user_fields else None
            self.key_kinds = tuple(_key_kind(f.type) for f in user_fields)
            self.bucket_struct = struct.Struct("<Q")
            self.bucket_offset = spec.key.fields[-1].offset if spec.bucketed else 0
        else:
            self.key_decoder = None

    def key_of(self, raw_key: bytes) -> Tuple:
        return tuple(self.key_decoder(raw_key)) if self.key_decoder else ()

    def _dump(self, kind: str, entries, **kw) -> MapDump:
        vt = self.spec.value_type
        return MapDump(self.spec.name, kind, entries, key_kinds=self.key_kinds,
                       scalar=self.spec.key is None or (self.spec.bucketed and len(self.spec.key.fields) == 1),
                       signed=getattr(vt, "signed", True), **kw)

    def dump(self) -> MapDump:
        vt = self.spec.value_type
        if not isinstance(vt, AggT):
            entries = [(self.key_of(k), self.value_decoder(v)[0]) for k, v in self.raw.items()]
            return self._dump("value", entries, value_type=_value_type_name(vt))
        if vt.kind in ("hist", "lhist"):
            buckets: Dict[bytes, Dict[int, int]] = {}
            for k, v in self.raw.items():
                user = k[:self.bucket_offset]
                bucket = self.bucket_struct.unpack_from(k, self.bucket_offset)[0]
                total = sum(self.value_struct.unpack(slot)[0] for slot in self.raw.cpu_slots(v)) & _M64
                per_key = buckets.setdefault(user, {})  # zero() keeps the keys, with no counts
                per_key[bucket] = per_key.get(bucket, 0) + total
            entries = [(self.key_of(k), b) for k, b in buckets.items()]
            return self._dump(vt.kind, entries, lhist=vt.lhist, hist_bits=vt.bits)
        entries: List = []
        for k, v in self.raw.items():
            slots = [self.value_struct.unpack(s) for s in self.raw.cpu_slots(v)]
            if vt.kind in ("count", "sum"):
                value = sum(s[0] for s in slots)
                if vt.kind == "count" or not vt.signed:
                    value &= _M64
                else:
                    value = ((value + (1 << 63)) & _M64) - (1 << 63)
            elif vt.kind in ("min", "max"):
                values = [s[0] for s in slots if s[1]]
                if not values:
                    value = 0
                else:
                    value = max(values) if vt.kind == "max" else min(values)
            else:  # avg, stats: (count, total)
                value = (sum(s[1] for s in slots), sum(s[0] for s in slots))
            entries.append((self.key_of(k), value))
        return self._dump(vt.kind, entries)

    def clear(self) -> None:
        self.raw.clear()

    def zero(self) -> None:
        self.raw.zero()
