"""Reading the program's BPF maps into MapDumps (per-CPU slots reduced as bpftrace does)."""

from __future__ import annotations

import struct
from typing import Dict, List, Tuple

from kubectl_pytrace.lang.program import MapSpec
from kubectl_pytrace.lang.layout import Record, agg_value_format, sizeof
from kubectl_pytrace.lang.types import AggT, IntT, PtrT, StackT, Type
from kubectl_pytrace.bpf.syscalls import RawMap
from kubectl_pytrace.output.decode import RecordDecoder, Symbols
from kubectl_pytrace.output.values import MapDump


def _value_type_name(t: Type) -> str:
    if isinstance(t, IntT):
        return "int"
    if isinstance(t, PtrT):
        return "pointer"  # sorted by key, as bpftrace sorts every non-integer value
    if isinstance(t, StackT):
        return "kstack" if t.kernel else "ustack"
    return t.name()


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
        if spec.key is not None:
            user_fields = spec.key.fields[:-1] if spec.bucketed else spec.key.fields
            self.key_decoder = RecordDecoder(Record(tuple(user_fields)), sym) if user_fields else None
            self.bucket_struct = struct.Struct("<Q")
            self.bucket_offset = spec.key.fields[-1].offset if spec.bucketed else 0
        else:
            self.key_decoder = None

    def key_of(self, raw_key: bytes) -> Tuple:
        return tuple(self.key_decoder(raw_key)) if self.key_decoder else ()

    def dump(self) -> MapDump:
        spec, vt = self.spec, self.spec.value_type
        name = spec.name
        if not isinstance(vt, AggT):
            entries = [(self.key_of(k), self.value_decoder(v)[0]) for k, v in self.raw.items()]
            return MapDump(name, "value", entries, value_type=_value_type_name(vt),
                           key_sizes=self._key_sizes())
        if vt.kind in ("hist", "lhist"):
            buckets: Dict[bytes, Dict[int, int]] = {}
            for k, v in self.raw.items():
                user = k[:self.bucket_offset]
                bucket = self.bucket_struct.unpack_from(k, self.bucket_offset)[0]
                total = sum(self.value_struct.unpack(slot)[0] for slot in self.raw.cpu_slots(v))
                per_key = buckets.setdefault(user, {})  # zero() keeps the keys, with no counts
                if total:
                    per_key[bucket] = per_key.get(bucket, 0) + total
            entries = [(self.key_of(k), b) for k, b in buckets.items()]
            return MapDump(name, vt.kind, entries, lhist=vt.lhist, key_sizes=self._key_sizes())
        entries: List = []
        for k, v in self.raw.items():
            slots = [self.value_struct.unpack(s) for s in self.raw.cpu_slots(v)]
            if vt.kind in ("count", "sum"):
                value = sum(s[0] for s in slots)
                if vt.kind == "count" or not vt.signed:
                    value &= (1 << 64) - 1
            elif vt.kind == "max":
                value = max(s[0] for s in slots)
            elif vt.kind == "min":
                value = 0xFFFFFFFF - max(s[0] for s in slots)
            else:  # avg, stats: (count, total)
                value = (sum(s[1] for s in slots), sum(s[0] for s in slots))
            entries.append((self.key_of(k), value))
        if not entries and vt.kind == "count" and spec.key is None:
            entries = [((), 0)]  # bpftrace 0.17 prints a key-less count() map that never counted as 0
        return MapDump(name, vt.kind, entries, key_sizes=self._key_sizes())

    def _key_sizes(self):
        if self.spec.key is None:
            return None
        fields = self.spec.key.fields[:-1] if self.spec.bucketed else self.spec.key.fields
        return tuple(sizeof(f.type) for f in fields)

    def clear(self) -> None:
        self.raw.clear()

    def zero(self) -> None:
        self.raw.zero()
