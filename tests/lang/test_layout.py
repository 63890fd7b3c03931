"""One layout spec, two consumers: the C declarations the code generator writes and the struct
formats the runtime decodes with must describe the same bytes."""

from __future__ import annotations

import ctypes
import re
import shutil
import struct
import subprocess

import pytest

from kubectl_pytrace.lang import compile_program
from kubectl_pytrace.lang.codegen import TupleTypes, ctype, decl
from kubectl_pytrace.lang.layout import (
    Record, agg_value_ctype, agg_value_format, field_count, pad8, sizeof, struct_format,
)
from kubectl_pytrace.lang.types import (
    INT64, UINT64, AggT, InetT, IntT, KsymT, ProbeT, PtrT, StackT, StrT, TupleT, UsymT,
)

from .fakeenv import FakeEnv

TYPES = [
    INT64, UINT64, IntT(8, True), IntT(32, False), PtrT(IntT(8, True)), KsymT(), ProbeT(),
    StrT(1), StrT(2), StrT(7), StrT(8), StrT(9), StrT(16), StrT(17), StrT(64),
    StackT(True), StackT(False, 5, "perf"), UsymT(), InetT(),
    TupleT((INT64, StrT(3))),
    TupleT((StrT(5), TupleT((UINT64, StrT(13))), InetT())),
    TupleT((TupleT((TupleT((StrT(1),)),)), KsymT(), StackT(True), UsymT())),
]


# ---- a tiny reader of the generated declarations, laid out by ctypes (C's own rules) --------------

_SCALARS = {"s64": ctypes.c_int64, "u64": ctypes.c_uint64, "u32": ctypes.c_uint32, "s32": ctypes.c_int32,
            "u16": ctypes.c_uint16, "u8": ctypes.c_uint8, "char": ctypes.c_char}


def c_structs(c_text: str) -> dict:
    """name -> ctypes.Structure for every one-line `struct NAME { ... };` in the C text."""
    out: dict = {}
    for name, body in re.findall(r"^struct (\w+) \{ (.*) \};$", c_text, re.M):
        fields = []
        for member in filter(None, (m.strip() for m in body.split(";"))):
            m = re.fullmatch(r"(struct \w+|\w+) (\w+)(?:\[(\d+)\])?", member)
            assert m, member
            base, fname, n = m.groups()
            t = out[base[7:]] if base.startswith("struct ") else _SCALARS[base]
            fields.append((fname, t * int(n) if n else t))
        out[name] = type(name, (ctypes.Structure,), {"_fields_": fields})
    return out


def c_size(c_text: str, name: str) -> int:
    return ctypes.sizeof(c_structs(c_text)[name])


def c_type_size(t, tuples: TupleTypes) -> int:
    member = decl(t, "x", tuples)  # defines the tuple structs it needs first
    text = "\n".join(tuples.defs) + "\n" + f"struct probe {{ {member}; }};"
    return c_size(_PRELUDE + text, "probe")


_PRELUDE = compile_program("BEGIN { }").c.text


# ---- the spec itself ---------------------------------------------------------------------------------

@pytest.mark.parametrize("t", TYPES, ids=str)
def test_sizes_are_multiples_of_8_and_match_the_struct_format(t):
    size = sizeof(t)
    assert size % 8 == 0 and size > 0
    fmt = "<" + struct_format(t)
    assert struct.calcsize(fmt) == size
    assert len(struct.unpack(fmt, bytes(size))) == field_count(t)


@pytest.mark.parametrize("t", TYPES, ids=str)
def test_c_declaration_has_the_layout_size(t):
    tuples = TupleTypes()
    assert c_type_size(t, tuples) == sizeof(t)


def test_strings_pad_to_8_bytes():
    assert [sizeof(StrT(n)) for n in (1, 8, 9, 16, 17, 64, 65)] == [8, 8, 16, 16, 24, 64, 72]
    assert [pad8(n) for n in (0, 1, 7, 8, 9)] == [0, 8, 8, 8, 16]


def test_tuples_nest_without_padding():
    inner = TupleT((UINT64, StrT(13)))
    outer = TupleT((StrT(5), inner, InetT()))
    assert sizeof(outer) == 8 + (8 + 16) + 24
    assert struct_format(outer) == "8sQ16sQ16s"
    tuples = TupleTypes()
    assert ctype(outer, tuples) == "struct tup_1"
    assert tuples.defs == ["struct tup_0 { u64 e0; char e1[16]; };",
                           "struct tup_1 { char e0[8]; struct tup_0 e1; struct pytrace_inet e2; };"]
    # one C struct per distinct tuple type
    assert ctype(TupleT((UINT64, StrT(13))), tuples) == "struct tup_0"


def test_records_lay_fields_back_to_back():
    r = Record.of([("a", INT64), ("b", StrT(3)), ("c", TupleT((UINT64, StrT(9)))), ("d", StackT(True))], start=8)
    assert [(f.name, f.offset) for f in r.fields] == [("a", 8), ("b", 16), ("c", 24), ("d", 48)]
    assert r.size == 64
    assert r.struct_format() == "<q8sQ16sqQ"
    assert struct.calcsize(r.struct_format()) == r.size - 8
    assert Record.of([]).size == 0


@pytest.mark.parametrize("agg", [AggT("count"), AggT("sum", True), AggT("sum", False), AggT("min"), AggT("max"),
                                 AggT("avg", True), AggT("stats", False), AggT("hist"), AggT("lhist", True, (0, 10, 1))],
                         ids=lambda a: f"{a.kind}-{a.signed}")
def test_aggregation_slots(agg):
    c = _PRELUDE + f"\nstruct probe {{ {agg_value_ctype(agg)} x; }};"
    assert c_size(c, "probe") == struct.calcsize(agg_value_format(agg))


# ---- what a compiled program declares ------------------------------------------------------------------

PROGRAM = """
BEGIN {
    @a[1, "x", (2, "yy", (3, comm))] = (kstack, usym(0), ntop(0), ksym(0), probe);
    printf("%s %d %s %s\\n", "abc", 1, ntop(1), "a longer string literal, 33 bytes");
    print((1, (2, "z")));
    @h[comm] = hist(1); @l[1, 2] = lhist(3, 0, 10, 1); @s = stats(2); @v = avg(1); @m = min(1);
    @str["k"] = "value of 17 bytes";
    @t = (1, "two", (3, "four"));
}
tracepoint:sched:sched_switch { @c[args.prev_comm, args.next_pid] = count(); printf("%s\\n", args.next_comm); }
"""


@pytest.fixture(scope="module")
def compiled():
    return compile_program(PROGRAM, env=FakeEnv()).c


def test_event_structs_match_their_records(compiled):
    structs = c_structs(compiled.text)
    assert compiled.events
    for ev in compiled.events.values():
        cs = structs[f"ev_{ev.id}"]
        assert ctypes.sizeof(cs) == 8 + (ev.record.size - 8 if ev.record.fields else 0)
        for f in ev.record.fields:
            assert getattr(cs, f.name).offset == f.offset, (ev, f)
            assert getattr(cs, f.name).size == sizeof(f.type)
        assert struct.calcsize(ev.record.struct_format()) == ctypes.sizeof(cs) - 8


def test_map_keys_and_values_match_their_specs(compiled):
    structs = c_structs(compiled.text)
    assert len(compiled.maps) == 9
    for spec in compiled.maps.values():
        m = re.search(rf'^BPF_TABLE\("(?:lru_)?(?:percpu_)?hash", (.+?), (.+?), {spec.cname}, \d+\);$',
                      compiled.text, re.M)
        assert m, spec.cname
        ktype, vtype = m.groups()
        if spec.key is None:
            assert ktype == "u64"
        else:
            assert ktype == f"struct {spec.cname}_key"
            cs = structs[f"{spec.cname}_key"]
            assert ctypes.sizeof(cs) == spec.key.size == struct.calcsize(spec.key.struct_format())
            for f in spec.key.fields:
                assert getattr(cs, f.name).offset == f.offset
            assert (spec.key.fields[-1].name == "bucket") == spec.bucketed
        if isinstance(spec.value_type, AggT):
            assert vtype == agg_value_ctype(spec.value_type)
        elif isinstance(spec.value_type, StrT):
            assert vtype == f"{spec.cname}_value"
            assert f"typedef char {spec.cname}_value[{sizeof(spec.value_type)}];" in compiled.text
        else:
            size = ctypes.sizeof(structs[vtype[7:]]) if vtype.startswith("struct ") else 8
            assert size == sizeof(spec.value_type) == struct.calcsize("<" + struct_format(spec.value_type))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_a_c_compiler_agrees(compiled, tmp_path):
    """The sizes and offsets as a real C compiler sees them (static asserts, -fsyntax-only)."""
    lines = ["typedef signed long long s64; typedef unsigned long long u64; typedef unsigned int u32;",
             "typedef unsigned char u8; typedef unsigned short u16;",
             "#include <stddef.h>"]
    lines += [ln for ln in compiled.text.splitlines() if re.match(r"^(struct \w+ \{.*\};|typedef char )", ln)]
    for ev in compiled.events.values():
        lines.append(f"_Static_assert(sizeof(struct ev_{ev.id}) == {max(8, ev.record.size)}, \"ev_{ev.id}\");")
        for f in ev.record.fields:
            lines.append(f"_Static_assert(offsetof(struct ev_{ev.id}, {f.name}) == {f.offset}, \"{f.name}\");")
    for spec in compiled.maps.values():
        if spec.key is not None:
            lines.append(f"_Static_assert(sizeof(struct {spec.cname}_key) == {spec.key.size}, \"{spec.cname}\");")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    res = subprocess.run(["gcc", "-fsyntax-only", "-Wall", str(src)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
