"""join(): the strings of a NULL-terminated array, printed by user space as one line."""

from __future__ import annotations

import pytest

from kubectl_pytrace.lang import CompileError, compile_program
from kubectl_pytrace.lang.codegen import JOIN_ARG_SIZE, JOIN_MAX_ARGS
from kubectl_pytrace.lang.types import StrT

from kubectl_pytrace.lang.env import TracepointField
from kubectl_pytrace.lang.types import IntT, PtrT

from . import fakeenv

CHAR_P = PtrT(IntT(8, True), "user")
EXECVE = [TracepointField("__syscall_nr", IntT(32, True), 8, 4), TracepointField("filename", CHAR_P, 16, 8),
          TracepointField("argv", PtrT(CHAR_P, "user"), 24, 8), TracepointField("envp", PtrT(CHAR_P, "user"), 32, 8)]


class FakeEnv(fakeenv.FakeEnv):
    """FakeEnv with sys_enter_execve (not in the shared tables: wildcard tests count their matches)."""

    def tracepoints(self, category, name):
        if (category, name) == ("syscalls", "sys_enter_execve"):
            return [(category, name)]
        return super().tracepoints(category, name)

    def tracepoint_fields(self, category, name):
        if (category, name) == ("syscalls", "sys_enter_execve"):
            return EXECVE
        return super().tracepoint_fields(category, name)


def events(src):
    return list(compile_program(src, env=FakeEnv()).c.events.values())


def errors(src):
    with pytest.raises(CompileError) as info:
        compile_program(src, env=FakeEnv())
    return [d.message for d in info.value.diagnostics.errors]


def test_join_is_an_event_of_its_own():
    [ev] = events("tracepoint:syscalls:sys_enter_execve { join(args->argv); }")
    assert ev.kind == "join" and ev.fmt == " "
    assert [f.type for f in ev.record.fields] == [StrT(JOIN_ARG_SIZE)] * JOIN_MAX_ARGS == [StrT(1024)] * 16


def test_join_with_a_separator_and_order_with_printf():
    evs = events('tracepoint:syscalls:sys_enter_execve { printf("a\\n"); join(args->argv, ", "); printf("b\\n"); }')
    assert [e.kind for e in evs] == ["printf", "join", "printf"]
    assert evs[1].fmt == ", "


def test_join_reads_the_address_space_of_its_array():
    c = compile_program("tracepoint:syscalls:sys_enter_execve { join(args->argv); }", env=FakeEnv()).c.text
    assert "bpf_probe_read_user_str" in c and "bpf_probe_read_kernel" not in c
    c = compile_program("kprobe:f { join(arg1); }", env=FakeEnv()).c.text
    assert "bpf_probe_read_kernel_str" in c


@pytest.mark.parametrize("src, message", [
    ("BEGIN { join(comm); }", "join() expects an array of strings (char *[]), not string[16]"),
    ("tracepoint:syscalls:sys_enter_execve { join(args->argv, comm); }", "join() separator must be a string literal"),
    ("BEGIN { join(); }", "join() takes 1 to 2 arguments (0 provided)"),
    ('BEGIN { join(1, ",", 2); }', "join() takes 1 to 2 arguments (3 provided)"),
    ("tracepoint:syscalls:sys_enter_execve { @x = join(args->argv); }", "this expression has no value to store"),
])
def test_join_errors(src, message):
    assert errors(src) == [message]
