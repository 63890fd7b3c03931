"""cat() (a file's contents, printed by user space) and buf() (raw bytes, printed with %r)."""

from __future__ import annotations

import pytest

from kubectl_pytrace.lang import CompileError, compile_program
from kubectl_pytrace.lang.layout import sizeof, struct_format
from kubectl_pytrace.lang.types import BufT

from .fakeenv import FakeEnv


def compiled(src):
    return compile_program(src, env=FakeEnv())


def errors(src):
    with pytest.raises(CompileError) as info:
        compiled(src)
    return [d.message for d in info.value.diagnostics.errors]


def test_cat_is_an_event_with_a_formatted_name():
    [ev] = compiled('kprobe:f { cat("/proc/%d/status", pid); }').c.events.values()
    assert ev.kind == "cat" and len(ev.record.fields) == 1


@pytest.mark.parametrize("src, message", [
    ("BEGIN { cat(); }", "cat() needs a string literal as its first argument"),
    ('BEGIN { cat("/proc/%d/x"); }', "not enough arguments for format string (0 supplied, 1 expected)"),
    ('BEGIN { cat("/x", 1); }', "too many arguments for format string (1 supplied, 0 expected)"),
    ('BEGIN { cat("/%d", comm); }', "unsupported format specifier for type 'string[16]': d"),
])
def test_cat_checks_its_format_as_printf(src, message):
    assert errors(src) == [message]


def test_buf_types_and_layout():
    a = compiled("tracepoint:syscalls:sys_enter_read { @a = buf(args->buf, 5); @b = buf(args->buf, args->count); "
                 "@c = buf(args->buf, 1000); }")
    assert a.analysis.maps["@a"].value == BufT(5)
    assert a.analysis.maps["@b"].value == BufT(64)  # a length known only at run time: up to 64
    assert a.analysis.maps["@c"].value == BufT(64)
    assert "buf() length is too long and will be shortened to 64 bytes" in a.warnings
    assert sizeof(BufT(5)) == 16 and struct_format(BufT(5)) == "Q8s"
    assert "struct pytrace_buf_5 { u64 len; u8 data[8]; };" in a.c.text


def test_buf_of_an_array_takes_its_size():
    a = compiled("kprobe:f { $s = (struct sock *)arg0; @ = buf($s->sk_v6_daddr); @p = buf($s->skc_ports); }")
    assert a.analysis.maps["@"].value == BufT(16) and a.analysis.maps["@p"].value == BufT(4)


def test_buf_in_printf_is_a_buffer():
    compiled('tracepoint:syscalls:sys_enter_read { printf("%r %rx %rh\\n", buf(args->buf, 4), buf(args->buf, 2), '
             'buf(args->buf, 1)); }')
    assert errors('tracepoint:syscalls:sys_enter_read { printf("%d\\n", buf(args->buf, 4)); }') == [
        "unsupported format specifier for type 'buffer[4]': d"]


@pytest.mark.parametrize("src, message", [
    ("tracepoint:sched:sched_switch { @ = buf(args.prev_comm); }",
     "buf() expects a length argument for non-array type string"),
    ("kprobe:f { @ = buf(arg0); }", "buf() expects a length argument for non-array type uint64"),
    ("kprobe:f { @ = buf((1, 2), 4); }", "buf() reads from an address, not from a value of type (int64,int64)"),
    ("kprobe:f { @ = buf(arg0, -1); }", "buf() length must not be negative"),
])
def test_buf_errors(src, message):
    assert errors(src) == [message]
