"""The pieces of the wide attach paths that need no kernel: which functions the compiler makes for a
wildcard (one, reading its cookie, where the kernel has them), which tracepoints the dispatcher
takes, which instructions a uprobe must not be put on. The kernel side is in test_scale.py."""

from __future__ import annotations

import fnmatch
from typing import List, Optional

import pytest

from kubectl_pytrace.bpf.uprobes import UNSAFE, suspect, unsafe
from kubectl_pytrace.lang import compile_program
from kubectl_pytrace.lang.env import Environment
from kubectl_pytrace.lang.probes import ProbeSpec
from kubectl_pytrace.lang.program import FUNCS_MAP
from kubectl_pytrace.tracer.attach import syscall_event

FUNCTIONS = ["f_one", "f_two", "f_three", "g"]


class Env(Environment):
    def __init__(self, cookies: Optional[bool], kprobes: Optional[bool] = None):
        self.attach_cookies = cookies
        self.kprobes_available = kprobes

    def user_functions(self, path: str, pattern: str) -> Optional[List[str]]:
        return [f for f in FUNCTIONS if fnmatch.fnmatchcase(f, pattern)]

    def kernel_functions(self, pattern: str) -> Optional[List[str]]:
        return [f for f in ("vfs_read", "vfs_write", "vfs_open") if fnmatch.fnmatchcase(f, pattern)]

    def kernel_symbol(self, name: str) -> Optional[int]:
        return 0xFFFFFFFF81000000 + len(name)


def functions(program: str, cookies: Optional[bool]):
    c = compile_program(program, env=Env(cookies)).c
    return sorted({a.fn_name for a in c.attachments}), c


@pytest.mark.parametrize("body", ["@[probe] = count();", "@[func] = count();", 'printf("%s\\n", probe);'])
@pytest.mark.parametrize("provider", ["uprobe", "uretprobe"])
def test_a_wildcard_naming_probe_or_func_is_one_function_with_cookies(provider, body):
    names, c = functions(f"{provider}:/bin/x:f_* {{ {body} }}", cookies=True)
    assert len(names) == 1
    assert len(c.attachments) == 3 and all(a.by_cookie for a in c.attachments)
    assert "bpf_get_attach_cookie(ctx)" in c.text
    assert (FUNCS_MAP in c.text) == ("func" in body)


@pytest.mark.parametrize("provider", ["kprobe", "kretprobe"])
def test_a_kprobe_wildcard_naming_probe_or_func_is_one_function_with_cookies(provider):
    """`probe` from the cookie; `func` (a ksym) from the function's address at run time, not the
    first match's address from kallsyms."""
    names, c = functions(f"{provider}:vfs_* {{ @[probe, func] = count(); }}", cookies=True)
    assert len(names) == 1
    assert len(c.attachments) == 3 and all(a.by_cookie for a in c.attachments)
    assert "bpf_get_attach_cookie(ctx)" in c.text and "bpf_get_func_ip(ctx)" in c.text
    assert FUNCS_MAP not in c.text and "0xffffffff81000008" not in c.text.lower()


def test_a_single_kprobe_keeps_its_constant_func():
    names, c = functions("kprobe:vfs_read { @[func] = count(); }", cookies=True)
    assert not c.attachments[0].by_cookie and "bpf_get_func_ip" not in c.text


def test_kprobes_compiled_as_fentry_stay_one_function_each():
    c = compile_program("kprobe:vfs_* { @[probe] = count(); }", env=Env(True, kprobes=False)).c
    assert len({a.fn_name for a in c.attachments}) == 3 and not any(a.by_cookie for a in c.attachments)


def test_without_cookies_one_function_per_match():
    names, c = functions("uprobe:/bin/x:f_* { @[probe] = count(); }", cookies=False)
    assert len(names) == 3 and not any(a.by_cookie for a in c.attachments)
    assert "bpf_get_attach_cookie" not in c.text


def test_a_single_match_keeps_its_constant_probe_id():
    names, c = functions("uprobe:/bin/x:g { @[probe] = count(); }", cookies=True)
    assert len(names) == 1 and not c.attachments[0].by_cookie
    assert "bpf_get_attach_cookie" not in c.text


def test_a_body_without_probe_or_func_needs_no_cookie():
    names, c = functions("uprobe:/bin/x:f_* { @ = count(); }", cookies=True)
    assert len(names) == 1 and not any(a.by_cookie for a in c.attachments)


@pytest.mark.parametrize("spec, event", [
    (ProbeSpec("tracepoint", "syscalls", "sys_enter_openat"), ("sys_enter", 257)),
    (ProbeSpec("tracepoint", "syscalls", "sys_exit_newuname"), ("sys_exit", 63)),  # uapi name: uname
    (ProbeSpec("tracepoint", "syscalls", "sys_enter_no_such_call"), None),  # newer than the table
    (ProbeSpec("tracepoint", "sched", "sched_switch"), None),
    (ProbeSpec("uprobe", "/bin/x", "sys_enter_openat"), None),
])
def test_syscall_event(spec, event):
    assert syscall_event(spec) == event


@pytest.mark.parametrize("code, is_unsafe, is_suspect", [
    ("62e27d487ac6", True, True),     # vpbroadcastb %esi,%zmm16: EVEX, opcode 0x7a ("jp")
    ("c4e27d780e", True, True),       # vpbroadcastb (%rsi),%ymm1: VEX, 0x78 ("js")
    ("c5f877", True, True),           # vzeroupper: VEX, 0x77 ("ja")
    ("c5fc28da", False, True),        # vmovaps %ymm2,%ymm3: runs right under a uprobe
    ("62e1fe486f0e", False, True),    # vmovdqu64 (%rsi),%zmm17
    ("f00fbaaf08030000", False, True),  # lock btsl: the kernel refuses it
    ("4883ec08", False, False),       # sub $8,%rsp
    ("f30f1efa", False, False),       # endbr64
    ("64488b042528000000", False, False),  # mov %fs:0x28,%rax (FS is allowed)
])
def test_unsafe_and_suspect_instructions(code, is_unsafe, is_suspect):
    b = bytes.fromhex(code).ljust(16, b"\0")
    assert (unsafe(b) == UNSAFE) == is_unsafe
    assert suspect(b) == is_suspect
