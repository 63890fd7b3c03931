"""Pointers kept in maps and tuples stay pointers: their address space decides how str() and field
reads of a saved pointer read memory (opensnoop.bt saves args->filename in one tracepoint and reads
it in another), and user space prints them as bpftrace does (0x.. as keys)."""

from __future__ import annotations

from kubectl_pytrace.lang import compile_program
from kubectl_pytrace.lang.types import IntT, PtrT, StructT, TupleT

from .fakeenv import FakeEnv

CHAR_USER_P = PtrT(IntT(8, True), "user")


def compiled(src):
    return compile_program(src, env=FakeEnv())


def test_a_saved_user_pointer_is_read_from_user_memory():
    c = compiled("tracepoint:syscalls:sys_enter_openat { @name[tid] = args->filename; }\n"
                 "tracepoint:syscalls:sys_exit_read /@name[tid]/ { printf(\"%s\\n\", str(@name[tid])); }")
    assert c.analysis.maps["@name"].value == CHAR_USER_P
    probe_1 = c.c.text[c.c.text.index("int probe_1"):]
    assert "bpf_probe_read_user_str" in probe_1 and "bpf_probe_read_kernel_str" not in probe_1


def test_pointer_keys_tuples_and_struct_pointers():
    c = compiled("kprobe:f { $s = (struct sock *)arg0; @birth[$s] = nsecs; @t = (1, $s); @sk[tid] = $s; }\n"
                 "kretprobe:f { $s = @sk[tid]; @fam = $s->sk_family; }")
    maps = c.analysis.maps
    sock_p = PtrT(StructT("struct sock"), "kernel")
    assert maps["@birth"].key == TupleT((sock_p,))
    assert maps["@t"].value == TupleT((IntT(64, True), sock_p))
    assert maps["@sk"].value == sock_p
    assert maps["@fam"].value == IntT(64, False)
