"""Kernel constants named as identifiers (TASK_RUNNING, AF_INET), kaddr() and bswap().

The compiler asks the environment (FakeEnv here); the host's answers come from header #defines
(kernel/cheaders.py, read from a header tree made in a temporary directory) and BTF enums."""

from __future__ import annotations

import os

import pytest

from kubectl_pytrace.lang import CompileError, compile_program
from kubectl_pytrace.lang.env import LookupFailed
from kubectl_pytrace.lang.types import INT64, UINT64, IntT
from kubectl_pytrace.kernel import cheaders
from kubectl_pytrace.host.env import HostEnvironment

from .fakeenv import FakeEnv


def compiled(src):
    return compile_program(src, env=FakeEnv())


def errors(src):
    with pytest.raises(CompileError) as info:
        compiled(src)
    return info.value.diagnostics.errors


# ---- constants -----------------------------------------------------------------------------------

def test_header_constants_need_their_include():
    src = '#include <linux/sched.h>\n#include <sys/socket.h>\n' \
          'BEGIN { printf("%d %d %d %d\\n", TASK_RUNNING, TASK_INTERRUPTIBLE, AF_INET6, TCP_ESTABLISHED); }'
    fn = compiled(src).analysis.functions[0]
    assert sorted(fn.constants.values()) == [0, 1, 1, 10]
    [e] = errors('BEGIN { printf("%d\\n", TASK_RUNNING); }')
    assert e.message == "unknown builtin 'TASK_RUNNING'" and e.hint is None


def test_enum_values_are_known_without_includes():
    fn = compiled('BEGIN { @ = TCP_CLOSE; @big = BIG; }').analysis
    assert fn.maps["@"].value == INT64 and fn.maps["@big"].value == UINT64
    assert sorted(fn.functions[0].constants.values()) == [7, 1 << 63]


def test_constants_reach_the_c():
    text = compiled('#include <sys/socket.h>\nBEGIN { @ = AF_INET6 + 1; @b = BIG; }').c.text
    assert "((s64)10LL)" in text and "((u64)9223372036854775808ULL)" in text


def test_missing_header_is_a_hint():
    [e] = errors('#include <nosuch.h>\nBEGIN { @ = NOPE; }')
    assert e.message == "unknown builtin 'NOPE'"
    assert e.hint == "not found in the kernel's BTF nor in the headers found; not found: <nosuch.h>"


def test_program_macros_may_name_kernel_constants():
    fn = compiled('#include <sys/socket.h>\n#define FAMILY AF_INET\nBEGIN { @ = FAMILY; }').analysis.functions[0]
    assert list(fn.constants.values()) == [2]


def test_includes_in_skipped_branches_do_not_count():
    src = '#ifndef BPFTRACE_HAVE_BTF\n#include <sys/socket.h>\n#endif\nBEGIN { @ = AF_INET; }'
    assert [e.message for e in errors(src)] == ["unknown builtin 'AF_INET'"]


# ---- kaddr ---------------------------------------------------------------------------------------

def test_kaddr_is_resolved_at_compile_time():
    c = compiled('BEGIN { @ = kaddr("avenrun"); $p = kaddr("do_sys_openat2"); @x = *$p; }')
    assert c.analysis.maps["@"].value == UINT64
    assert f"((u64){0xFFFFFFFF82A0B1C0}ULL)" in c.c.text


@pytest.mark.parametrize("src, message", [
    ('BEGIN { @ = kaddr("nosuch"); }', 'kaddr("nosuch"): no kernel symbol named \'nosuch\' in /proc/kallsyms'),
    ('BEGIN { @ = kaddr(comm); }', "kaddr() needs a string literal: the name of a kernel symbol"),
    ('BEGIN { @ = kaddr(); }', "kaddr() requires one argument (0 provided)"),
])
def test_kaddr_errors(src, message):
    assert [e.message for e in errors(src)] == [message]


def test_kaddr_far_from_the_node():
    with pytest.raises(CompileError) as info:
        compile_program('BEGIN { @ = kaddr("avenrun"); }')
    assert "kaddr(\"avenrun\"): the kernel's symbols are only known on the node" in str(info.value)


# ---- bswap ---------------------------------------------------------------------------------------

def test_bswap_keeps_the_width_of_its_argument():
    a = compiled("tracepoint:sched:sched_switch { $p = (uint16)args.prev_pid; @a = bswap($p); "
                 "@b = bswap((uint32)1); @c = bswap(1); @d = bswap((int8)1); }")
    fn = a.analysis.functions[0]
    assert {slot.name: slot.type for slot in fn.slots.values()}["$p"] == IntT(16, False)
    calls = [t for t in fn.types.values() if isinstance(t, IntT) and not t.signed and t.bits < 64]
    assert IntT(16, False) in calls and IntT(32, False) in calls and IntT(8, False) in calls
    assert "__builtin_bswap16" in a.c.text and "__builtin_bswap32" in a.c.text and "__builtin_bswap64" in a.c.text


def test_bswap_errors():
    assert [e.message for e in errors('BEGIN { @ = bswap(comm); }')] == [
        "bswap() argument must be an integer, not string[16]"]


# ---- the host's answers ----------------------------------------------------------------------------

def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path)
    write(root, "sys/socket.h", "#ifndef _SYS_SOCKET_H\n#define _SYS_SOCKET_H 1\n#include <bits/socket.h>\n"
                                "#include \"local.h\"\n#endif\n")
    write(root, "bits/socket.h", "/* families */\n#define PF_INET\t\t2\t/* IP protocol family.  */\n"
                                 "#define PF_INET6 10\n#define AF_INET PF_INET\n#define AF_INET6 PF_INET6\n"
                                 "#define SOCK_FLAGS (SOCK_A | \\\n  SOCK_B)\n#define SOCK_A 0x1\n#define SOCK_B 0x4u\n"
                                 "#define MAX(a, b) ((a) > (b) ? (a) : (b))\n#define CAST ((__force int)1)\n"
                                 "#define TEXT \"x\"\n#define SELF SELF\n")
    write(root, "sys/local.h", "#define LOCAL_ONLY (1 << 12)\n")
    write(root, "deep/a.h", "#include <deep/b.h>\n")
    for i, nxt in (("b", "c"), ("c", "d"), ("d", "e"), ("e", "f")):
        write(root, f"deep/{i}.h", f"#include <deep/{nxt}.h>\n")
    write(root, "deep/f.h", "#define TOO_DEEP 1\n")
    return root


def host(tree):
    return HostEnvironment(btf_path="/nonexistent/btf", include_dirs=[tree])


@pytest.mark.parametrize("name, value", [
    ("AF_INET", 2), ("AF_INET6", 10), ("SOCK_FLAGS", 5), ("LOCAL_ONLY", 4096), ("MAX", None),
    ("CAST", None), ("TEXT", None), ("SELF", None), ("_SYS_SOCKET_H", 1), ("NOPE", None),
])
def test_host_reads_the_included_headers(tree, name, value):
    assert host(tree).constant(name, ["sys/socket.h"]) == value


def test_host_follows_includes_a_few_levels_only(tree):
    env = host(tree)
    assert env.constant("TOO_DEEP", ["deep/b.h"]) == 1
    assert env.constant("TOO_DEEP", ["deep/a.h"]) is None  # 5 levels below the program's include


def test_host_reads_only_what_it_needs_and_records_it(tree):
    env = host(tree)
    assert env.constant("_SYS_SOCKET_H", ["sys/socket.h"]) == 1
    assert env.deps == {os.path.join(tree, "sys/socket.h")}
    assert env.constant("AF_INET", ["sys/socket.h"]) == 2
    assert os.path.join(tree, "bits/socket.h") in env.deps


def test_host_names_missing_headers(tree):
    with pytest.raises(LookupFailed, match=r"not found: <nosuch\.h>"):
        host(tree).constant("AF_INET", ["nosuch.h"])
    assert host(tree).constant("AF_INET", ["nosuch.h", "sys/socket.h"]) == 2


def test_search_path_order(tmp_path):
    kernel = tmp_path / "linux"
    for rel in ("include", "include/uapi", "arch/x86/include", "arch/x86/include/generated"):
        (kernel / rel).mkdir(parents=True)
    (tmp_path / "usr" / "include").mkdir(parents=True)
    dirs = cheaders.search_path(str(kernel), root=str(tmp_path))
    if os.uname().machine == "x86_64":
        assert [os.path.relpath(d, tmp_path) for d in dirs] == [
            "linux/arch/x86/include", "linux/arch/x86/include/generated", "linux/include", "linux/include/uapi",
            "usr/include"]


@pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"), reason="this kernel has no BTF")
def test_host_enum_values_from_btf():
    env = HostEnvironment(include_dirs=[])
    assert env.constant("TCP_ESTABLISHED") == 1
    assert env.constant("BPF_MAP_TYPE_HASH") == 1
    assert env.constant("NO_SUCH_ENUMERATOR_ANYWHERE") is None
