"""Attach points: parsing (aliases, quoted C++ symbols, addresses, USDT providers, rates) and the
expansion of wildcards into concrete probes."""

from __future__ import annotations

import pytest

from kubectl_pytrace.lang import CompileError, check_program, compile_program
from kubectl_pytrace.lang.diagnostics import Diagnostics, Source
from kubectl_pytrace.lang.env import Environment
from kubectl_pytrace.lang.expand import expand
from kubectl_pytrace.lang.parser import parse
from kubectl_pytrace.lang.probes import AttachPointError, ProbeSpec, parse_attach_point, split_attach_point

from .fakeenv import FakeEnv


@pytest.mark.parametrize("raw, spec", [
    ("BEGIN", ProbeSpec("BEGIN")),
    ("END", ProbeSpec("END")),
    ("tracepoint:syscalls:sys_enter_openat", ProbeSpec("tracepoint", "syscalls", "sys_enter_openat")),
    ("t:sched:sched_switch", ProbeSpec("tracepoint", "sched", "sched_switch")),
    ("t:syscalls:sys_enter_*", ProbeSpec("tracepoint", "syscalls", "sys_enter_*")),
    ("uprobe:/bin/bash:readline", ProbeSpec("uprobe", "/bin/bash", "readline")),
    ("u:/bin/bash:readline", ProbeSpec("uprobe", "/bin/bash", "readline")),
    ("u:libc:malloc", ProbeSpec("uprobe", "libc", "malloc")),
    ("ur:/bin/bash:readline", ProbeSpec("uretprobe", "/bin/bash", "readline")),
    ("uretprobe:/bin/bash:readline", ProbeSpec("uretprobe", "/bin/bash", "readline")),
    ('uprobe:/bin/x:"ns::f"', ProbeSpec("uprobe", "/bin/x", "ns::f", literal=True)),
    ('uprobe:/bin/x:"std::vector<int>::push_back(int const&)"',
     ProbeSpec("uprobe", "/bin/x", "std::vector<int>::push_back(int const&)", literal=True)),
    ('uprobe:"/opt/my app/bin":f', ProbeSpec("uprobe", "/opt/my app/bin", "f")),
    ("uprobe:/bin/x:0x1234", ProbeSpec("uprobe", "/bin/x", address=0x1234)),
    ("ur:/bin/x:0XABCdef", ProbeSpec("uretprobe", "/bin/x", address=0xABCDEF)),
    ("usdt:/bin/x:probe", ProbeSpec("usdt", "/bin/x", "probe")),
    ("usdt:/bin/x:prov:probe", ProbeSpec("usdt", "/bin/x", "probe", ns="prov")),
    ("U:/bin/x:prov:probe", ProbeSpec("usdt", "/bin/x", "probe", ns="prov")),
    ("U:/bin/x:*", ProbeSpec("usdt", "/bin/x", "*")),
    ("kprobe:do_nanosleep", ProbeSpec("kprobe", func="do_nanosleep")),
    ("k:do_nanosleep", ProbeSpec("kprobe", func="do_nanosleep")),
    ("kprobe:ext4:ext4_sync_fs", ProbeSpec("kprobe", "ext4", "ext4_sync_fs")),
    ("kr:vfs_*", ProbeSpec("kretprobe", func="vfs_*")),
    ("kretprobe:vfs_read", ProbeSpec("kretprobe", func="vfs_read")),
    ("f:vfs_read", ProbeSpec("kfunc", func="vfs_read")),
    ("kfunc:vfs_read", ProbeSpec("kfunc", func="vfs_read")),
    ("fentry:vfs_read", ProbeSpec("kfunc", func="vfs_read")),
    ("fr:vfs_read", ProbeSpec("kretfunc", func="vfs_read")),
    ("fexit:vfs_read", ProbeSpec("kretfunc", func="vfs_read")),
    ("profile:hz:99", ProbeSpec("profile", unit="hz", rate=99)),
    ("p:hz:99", ProbeSpec("profile", unit="hz", rate=99)),
    ("profile:s:1", ProbeSpec("profile", unit="s", rate=1)),
    ("profile:ms:10", ProbeSpec("profile", unit="ms", rate=10)),
    ("profile:us:100", ProbeSpec("profile", unit="us", rate=100)),
    ("interval:s:1", ProbeSpec("interval", unit="s", rate=1)),
    ("i:ms:100", ProbeSpec("interval", unit="ms", rate=100)),
    ("i:us:500", ProbeSpec("interval", unit="us", rate=500)),
    ("interval:hz:2", ProbeSpec("interval", unit="hz", rate=2)),
    ("interval:ms:0x10", ProbeSpec("interval", unit="ms", rate=16)),  # bpftrace accepts it too
])
def test_parse_attach_point(raw, spec):
    assert parse_attach_point(raw) == spec


@pytest.mark.parametrize("raw, name", [
    ("t:sched:sched_switch", "tracepoint:sched:sched_switch"),
    ("u:/bin/x:f", "uprobe:/bin/x:f"),
    ("ur:/bin/x:0x10", "uretprobe:/bin/x:0x10"),
    ('uprobe:/bin/x:"ns::f"', "uprobe:/bin/x:ns::f"),
    ("U:/bin/x:prov:p", "usdt:/bin/x:prov:p"),
    ("U:/bin/x:p", "usdt:/bin/x:p"),
    ("k:f", "kprobe:f"),
    ("kprobe:mod:f", "kprobe:mod:f"),
    ("fr:f", "kretfunc:f"),
    ("p:hz:99", "profile:hz:99"),
    ("i:s:1", "interval:s:1"),
    ("BEGIN", "begin"),
    ("begin", "begin"),
    ("END", "end"),
])
def test_full_probe_names(raw, name):
    """What the `probe` builtin prints: aliases expanded, quotes removed."""
    assert parse_attach_point(raw).name() == name


def test_return_and_wildcard_properties():
    assert parse_attach_point("ur:/bin/x:f").is_return and parse_attach_point("kr:f").is_return
    assert parse_attach_point("fr:f").is_return and not parse_attach_point("u:/bin/x:f").is_return
    assert parse_attach_point("t:syscalls:sys_enter_*").is_wildcard
    assert parse_attach_point("u:/bin/x:foo?").is_wildcard
    assert parse_attach_point("U:/bin/x:p*:x").is_wildcard
    assert not parse_attach_point("u:/bin/x:foo").is_wildcard


def test_split_keeps_colons_inside_quotes():
    assert split_attach_point('uprobe:/bin/x:"a::b":c') == ["uprobe", "/bin/x", "a::b", "c"]
    assert split_attach_point("a") == ["a"]
    assert split_attach_point("a::b") == ["a", "", "b"]


@pytest.mark.parametrize("raw, message", [
    ("foo:bar", "unknown probe type 'foo'"),
    ("kprobe", "incomplete attach point 'kprobe'"),
    ("kprobe:", "incomplete attach point 'kprobe:'"),
    ("uprobe::f", "incomplete attach point 'uprobe::f'"),
    ("uprobe:/bin/x:ns::f", "incomplete attach point 'uprobe:/bin/x:ns::f'"),
    ("BEGIN:x", "BEGIN takes no arguments"),
    ("END:", "END takes no arguments"),
    ("tracepoint:a", "tracepoint probes are written tracepoint:CATEGORY:NAME"),
    ("t:a:b:c", "tracepoint probes are written tracepoint:CATEGORY:NAME"),
    ("uprobe:/bin/x", "uprobe probes are written uprobe:PATH:FUNCTION or uprobe:PATH:0xADDRESS"),
    ("ur:/bin/x", "uretprobe probes are written uretprobe:PATH:FUNCTION or uretprobe:PATH:0xADDRESS"),
    ("uprobe:/bin/x:0xzz", "invalid address '0xzz'"),
    ("usdt:/bin/x", "usdt probes are written usdt:PATH:[PROVIDER:]NAME"),
    ("usdt:/bin/x:a:b:c", "usdt probes are written usdt:PATH:[PROVIDER:]NAME"),
    ("kprobe:a:b:c", "kprobe probes are written kprobe:FUNCTION"),
    ("profile:s", "profile probe takes a unit and a rate: profile:s:1, profile:ms:100 or profile:hz:99"),
    ("interval:99", "Invalid rate of interval probe. Minimum is 1000 or 1us. Found: 99 nanoseconds"),
    ("interval:s:1:2", "interval probe takes a unit and a rate: interval:s:1, interval:ms:100 or interval:hz:99"),
    ("profile:hz:99:1", "profile probe takes a unit and a rate: profile:s:1, profile:ms:100 or profile:hz:99"),
    ("profile:ns:100", "invalid profile unit 'ns': use one of s, ms, us, hz"),
    ("interval:m:1", "invalid interval unit 'm': use one of s, ms, us, hz"),
    ("profile:hz:0", "invalid profile rate '0': must be positive"),
    ("interval:s:-1", "invalid interval rate '-1': must be positive"),
    ("interval:s:x", "invalid interval rate 'x': not an integer"),
    ("interval:s:1.5", "invalid interval rate '1.5': not an integer"),
    ("interval:s:18446744074", "invalid interval rate '18446744074': too large"),
    ("profile:hz:18446744073709551616", "invalid profile rate '18446744073709551616': too large"),
])
def test_attach_point_errors(raw, message):
    with pytest.raises(AttachPointError) as info:
        parse_attach_point(raw)
    assert str(info.value) == message


def test_largest_rates():
    assert parse_attach_point("interval:s:18446744073").rate == 18446744073
    assert parse_attach_point("profile:hz:18446744073709551615").rate == 2 ** 64 - 1


def test_attach_point_errors_are_diagnostics_at_the_attach_point():
    with pytest.raises(CompileError) as info:
        compile_program("BEGIN { }\nkprobe:f, profile:ns:1, interval:s:1 { }")
    assert str(info.value) == "\n".join([
        "stdin:2:11-22: ERROR: profile:ns:1: invalid profile unit 'ns': use one of s, ms, us, hz",
        "kprobe:f, profile:ns:1, interval:s:1 { }",
        "          ~~~~~~~~~~~~",
    ])


def test_attach_points_as_the_lexer_reads_them():
    prog = parse('uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:malloc,ur:"/a b/c":"x::y" /pid/{ }')
    assert [a.raw for a in prog.probes[0].attach_points] == [
        "uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:malloc", 'ur:"/a b/c":"x::y"']
    assert prog.probes[0].predicate is not None


# ---- expansion ---------------------------------------------------------------------------------------

def expand_groups(src, env=None):
    env = env or FakeEnv()
    diags = Diagnostics(Source(src))
    groups = expand(parse(src), env, diags)
    assert not diags.has_errors(), diags.render()
    return groups


def expanded(src, env=None):
    env = env or FakeEnv()
    diags = Diagnostics(Source(src))
    groups = expand(parse(src), env, diags)
    assert not diags.has_errors(), diags.render()
    return [[s.name() for s in g.specs] for g in groups]


def test_wildcards_expand_with_the_environment():
    assert expanded("t:syscalls:sys_enter_* { @ = count(); }") == [
        ["tracepoint:syscalls:sys_enter_openat", "tracepoint:syscalls:sys_enter_read"]]
    assert expanded("u:/bin/x:foo* { @ = count(); }") == [["uprobe:/bin/x:foo", "uprobe:/bin/x:foo_bar"]]
    assert expanded("kfunc:vfs_* { @ = count(); }") == [["kfunc:vfs_read"]]


def test_bodies_that_depend_on_the_probe_get_one_function_per_probe():
    assert expanded("t:syscalls:sys_enter_* { @[probe] = count(); }") == [
        ["tracepoint:syscalls:sys_enter_openat"], ["tracepoint:syscalls:sys_enter_read"]]
    assert expanded("t:syscalls:sys_*_read { @[args.__syscall_nr] = count(); }") == [
        ["tracepoint:syscalls:sys_enter_read"], ["tracepoint:syscalls:sys_exit_read"]]
    # USDT argument readers are compiled into each function
    assert expanded("U:/bin/x:prov:* { @ = count(); }") == [["usdt:/bin/x:prov:start"], ["usdt:/bin/x:prov:stop"]]
    assert expanded("U:/bin/x:*:start { @ = count(); }") == [["usdt:/bin/x:other:start"], ["usdt:/bin/x:prov:start"]]


def test_without_an_environment_attach_points_stay_as_written():
    assert expanded("t:syscalls:sys_enter_*, u:/bin/x:f*, U:/bin/x:p { @ = count(); }", env=Environment()) == [
        ["tracepoint:syscalls:sys_enter_*"], ["uprobe:/bin/x:f*"], ["usdt:/bin/x:p"]]


def test_addresses_are_not_looked_up():
    assert expanded("uprobe:/bin/x:0x1234 { }") == [["uprobe:/bin/x:0x1234"]]


@pytest.mark.parametrize("src, message", [
    ("t:syscalls:nosuch { }", "t:syscalls:nosuch: no such tracepoint: 'syscalls:nosuch'"),
    ("t:nosuch:* { }", "t:nosuch:*: no tracepoints match 'nosuch:*'"),
    ("u:/bin/x:nosuch { }", "u:/bin/x:nosuch: no function named 'nosuch' in /bin/x"),
    ("u:/bin/x:zz* { }", "u:/bin/x:zz*: no functions match 'zz*' in /bin/x"),
    ("u:/bin/nosuch:f { }", "u:/bin/nosuch:f: cannot read symbols of /bin/nosuch: no such file"),
    ("U:/bin/x:nope { }", "U:/bin/x:nope: no USDT probe 'nope' in /bin/x"),
    ("U:/bin/x:p:start { }", "U:/bin/x:p:start: no USDT probe 'p:start' in /bin/x"),
    ("kfunc:zz* { }", "kfunc:zz*: no kernel functions match 'zz*'"),
    ("kfunc:nope { }", "kernel function 'nope' is not in the kernel's BTF"),
])
def test_expansion_errors(src, message):
    with pytest.raises(CompileError) as info:
        compile_program(src, env=FakeEnv())
    assert [d.message for d in info.value.diagnostics.errors] == [message]


def test_attachments_of_a_compiled_program():
    c = compile_program("BEGIN { } t:syscalls:sys_enter_* { @ = count(); } u:/bin/x:foo, ur:/bin/x:foo { } "
                        "END { }", env=FakeEnv()).c
    assert [(a.spec.name(), a.fn_name) for a in c.attachments] == [
        ("tracepoint:syscalls:sys_enter_openat", "probe_1"), ("tracepoint:syscalls:sys_enter_read", "probe_1"),
        ("uprobe:/bin/x:foo", "probe_2"), ("uretprobe:/bin/x:foo", "probe_3"),
        ("begin", "pytrace_begin"), ("end", "pytrace_end")]
    assert c.begin_fn == "pytrace_begin" and c.end_fn == "pytrace_end"


def test_several_begin_and_end_probes_run_in_order():
    c = compile_program("BEGIN { @a = 1; } end { @c = 3; } begin { @b = 2; } END { @d = 4; }", env=FakeEnv()).c
    assert [(a.spec.name(), a.fn_name) for a in c.attachments] == [("begin", "pytrace_begin"), ("end", "pytrace_end")]
    body = c.text[c.text.index("int pytrace_begin(void *ctx)"):]
    assert body.index("probe_0(ctx)") < body.index("probe_2(ctx)")
    body = c.text[c.text.index("int pytrace_end(void *ctx)"):]
    assert body.index("probe_1(ctx)") < body.index("probe_3(ctx)")


# ---- attach points that match nothing (bpftrace 0.17 leaves them out) -------------------------------

def test_missing_uprobe_functions_are_skipped_with_a_warning():
    c = compile_program("u:/bin/x:foo, u:/bin/x:nosuch, ur:/bin/x:gone* { @n = count(); }", env=FakeEnv())
    assert [a.spec.name() for a in c.c.attachments] == ["uprobe:/bin/x:foo"]
    assert c.warnings.split("\n")[0::3] == [
        "stdin:1:15-29: WARNING: u:/bin/x:nosuch: no function named 'nosuch' in /bin/x: skipped, as bpftrace "
        "0.17 does",
        "stdin:1:32-46: WARNING: ur:/bin/x:gone*: no functions match 'gone*' in /bin/x: skipped, as bpftrace "
        "0.17 does"]


def test_a_probe_without_attach_points_is_checked_but_not_generated():
    c = compile_program('BEGIN { exit(); } u:/bin/x:nosuch { @x = count(); @y[comm] = "s"; } '
                        'END { print(@y); }', env=FakeEnv())
    assert [a.spec.name() for a in c.c.attachments] == ["begin", "end"]
    assert set(c.c.maps) == {"@x", "@y"}  # printed at exit, as bpftrace prints them
    assert "probe_1" not in c.c.text
    with pytest.raises(CompileError, match="type mismatch for @y"):
        compile_program('BEGIN { @y[1] = 1; } u:/bin/x:nosuch { @y[1] = "s"; }', env=FakeEnv())


def test_nothing_to_attach_is_an_error_naming_each_attach_point():
    with pytest.raises(CompileError) as info:
        compile_program("u:/bin/x:nosuch, kprobe:zz* { }", env=FakeEnv())
    assert [d.message for d in info.value.diagnostics.errors] == [
        "u:/bin/x:nosuch: no function named 'nosuch' in /bin/x", "kprobe:zz*: no kernel functions match 'zz*'"]


def test_other_lookup_failures_stay_errors():
    for src in ("BEGIN { } t:syscalls:nosuch { }", "BEGIN { } u:/bin/nosuch:f { }", "BEGIN { } U:/bin/x:nope { }",
                "BEGIN { } kfunc:nope { }"):
        with pytest.raises(CompileError):
            compile_program(src, env=FakeEnv())


def test_the_library_that_defines_a_missing_function_is_named():
    class Env(FakeEnv):
        def user_function_elsewhere(self, path, name):
            return "/lib/libc.so.6" if name == "nosuch" else None

    c = compile_program("BEGIN { } u:/bin/x:nosuch { }", env=Env())
    assert "no function named 'nosuch' in /bin/x (/lib/libc.so.6, which it loads, defines it): skipped" in c.warnings


def test_attachments_bpftrace_would_skip_when_they_fail_are_optional():
    c = compile_program("BEGIN { } kprobe:a, kprobe:b { } kprobe:single { } kfunc:vfs_* { } "
                        "u:/bin/x:foo { } t:syscalls:sys_enter_* { }", env=FakeEnv()).c
    assert {a.spec.name(): a.optional for a in c.attachments} == {
        "begin": False, "kprobe:a": True, "kprobe:b": True, "kprobe:single": False, "kfunc:vfs_read": True,
        "uprobe:/bin/x:foo": False, "tracepoint:syscalls:sys_enter_openat": True,
        "tracepoint:syscalls:sys_enter_read": True}


# ---- positional parameters in attach points (bpftrace: `usdt:$1:postgresql:query__start`) -------------

def test_positional_parameters_in_attach_points():
    assert split_attach_point("usdt:$1:postgresql:query__start", ["/usr/bin/pg"]) == [
        "usdt", "/usr/bin/pg", "postgresql", "query__start"]
    assert parse_attach_point("uprobe:$1:$2", ["/bin/x", "foo*"]) == ProbeSpec("uprobe", "/bin/x", "foo*")
    assert parse_attach_point("uprobe:$1:$2", ["/bin/x", "foo*"]).is_wildcard
    # a value is one piece of its part: a ':' in it does not split, and it joins what is around it
    assert split_attach_point("uprobe:$1:f", ["/a:b"]) == ["uprobe", "/a:b", "f"]
    assert split_attach_point("uprobe:/opt/$1/bin:f", ["v2"]) == ["uprobe", "/opt/v2/bin", "f"]
    # inside double quotes, $1 is the symbol's own text
    assert split_attach_point('uprobe:/bin/x:"a$1"', ["zz"]) == ["uprobe", "/bin/x", "a$1"]


@pytest.mark.parametrize("raw, params, message", [
    ("usdt:$1:p:start", [], "the attach point uses positional parameter $1, but none were given"),
    ("uprobe:$1:$2", ["/bin/x"], "the attach point uses positional parameter $2, but only 1 were given"),
    ("uprobe:$0:f", ["/bin/x"], "positional parameters start at $1"),
    ("uprobe:$1:f", [""], "positional parameter $1 is empty"),
])
def test_positional_parameter_errors_in_attach_points(raw, params, message):
    with pytest.raises(AttachPointError) as e:
        parse_attach_point(raw, params)
    assert str(e.value) == message


def test_positional_parameters_reach_the_probes_of_a_compiled_program():
    c = compile_program("usdt:$1:prov:start { @[arg0] = count(); } uprobe:$1:$2 { @n = count(); }", env=FakeEnv(),
                        params=["/bin/x", "foo*", "--named=1"]).c
    assert [a.spec.name() for a in c.attachments] == [
        "usdt:/bin/x:prov:start", "uprobe:/bin/x:foo", "uprobe:/bin/x:foo_bar"]
    assert all(a.optional for a in c.attachments[1:])  # a wildcard, as bpftrace treats it
    with pytest.raises(CompileError) as info:
        compile_program("uprobe:$1:foo { }", env=FakeEnv())
    assert [d.message for d in info.value.diagnostics.errors] == [
        "uprobe:$1:foo: the attach point uses positional parameter $1, but none were given"]


def test_positional_count_ignores_named_parameters():
    c = compile_program('BEGIN { printf("%d\\n", $#); }', env=FakeEnv(), params=["a", "--x=1"]).c
    assert "((s64)1)" in c.text


# ---- Go binaries: symbol names, the register ABI, uretprobes at RETs --------------------------------------

def test_a_quoted_go_symbol_is_the_name_itself():
    spec = parse_attach_point('uprobe:/bin/go:"main.(*Server).Handle"')
    assert spec.func == "main.(*Server).Handle" and spec.literal and not spec.is_wildcard
    # as a pattern, (*Server) would also match (xServer): quoted, it does not
    assert expanded('uprobe:/bin/go:"main.(*Server).Handle" { @ = count(); }') == [
        ["uprobe:/bin/go:main.(*Server).Handle"]]
    assert expanded("uprobe:/bin/go:main.(*Server).Handle { @ = count(); }") == [
        ["uprobe:/bin/go:main.(*Server).Handle", "uprobe:/bin/go:main.(xServer).Handle"]]


def test_go_and_c_uprobes_of_one_probe_get_functions_of_their_own():
    assert expanded("uprobe:/bin/go:main.handle, uprobe:/bin/oldgo:main.handle, uprobe:/bin/x:foo, "
                    "uprobe:/bin/x:main { @ = count(); }") == [
        ["uprobe:/bin/go:main.handle"], ["uprobe:/bin/oldgo:main.handle"], ["uprobe:/bin/x:foo", "uprobe:/bin/x:main"]]


def test_go_arguments_follow_the_binarys_abi():
    fns = compile_program('uprobe:/bin/go:main.handle { @a = arg8; } uprobe:/bin/oldgo:main.handle { @b = arg9; } '
                          'uprobe:/bin/x:foo { @c = arg0; }', env=FakeEnv()).analysis.functions
    assert [f.convention for f in fns] == ["go-regabi", "go-stackabi", "c"]
    with pytest.raises(CompileError) as info:
        compile_program("uprobe:/bin/go:main.handle { @a = arg9; } uprobe:/bin/x:foo { @c = arg6; }", env=FakeEnv())
    assert [d.message for d in info.value.diagnostics.errors] == [
        "arg9: Go passes arg0..arg8 in registers on amd64", "arg6: only arg0..arg5 are passed in registers on x86_64"]


def test_a_uretprobe_on_a_go_function_is_a_uprobe_on_each_ret():
    [g] = expand_groups("uretprobe:/bin/go:main.handle { @ = retval; }")
    assert [(s.name(), s.ret_site, s.kernel_return) for s in g.specs] == [
        ("uretprobe:/bin/go:main.handle", 0x2a, False), ("uretprobe:/bin/go:main.handle", 0x51, False)]
    [g] = expand_groups("uretprobe:/bin/go:main.[hm]* { @ = retval; }")  # main.main never returns
    assert [(s.func, s.ret_site) for s in g.specs] == [("main.handle", 0x2a), ("main.handle", 0x51)]
    [g] = expand_groups("uretprobe:/bin/x:foo { @ = retval; }")  # C: the kernel's uretprobe
    assert [(s.ret_site, s.kernel_return) for s in g.specs] == [(None, True)]
    # the client knows nothing of the binary: the node decides
    assert check_program("uretprobe:/app/server:main.handle { @ = retval; }") == ""


@pytest.mark.parametrize("src, message", [
    ("uretprobe:/bin/go:0x1000", "uretprobe:/bin/go:0x1000: uretprobes on an address of a Go binary are refused"),
    ("uretprobe:/bin/oldgo:main.handle", "uretprobe:/bin/oldgo:main.handle: uretprobes are not supported on "
                                         "functions of Go's stack ABI"),
    ("uretprobe:/bin/go:main.main", "uretprobe:/bin/go:main.main: main.main has no RET instruction"),
])
def test_go_uretprobes_that_cannot_be_done_are_refused_with_the_way_out(src, message):
    with pytest.raises(CompileError) as info:
        compile_program(src + " { @ = retval; }", env=FakeEnv())
    [d] = info.value.diagnostics.errors
    assert d.message.startswith(message), d.message
    assert "0xADDRESS" in d.message or "RET instruction" in d.message


def test_gostr_takes_a_pointer_and_a_length():
    a = compile_program("uprobe:/bin/go:main.handle { @s = gostr(arg1, arg2); }", env=FakeEnv()).analysis
    assert a.maps["@s"].value.size == 64  # a string of bpftrace's default size
    for src, message in [("uprobe:/bin/go:main.handle { @ = gostr(arg1); }", "gostr() requires 2 arguments (1 provided)"),
                         ('uprobe:/bin/go:main.handle { @ = gostr("x", 1); }', "gostr() expects the string's pointer")]:
        with pytest.raises(CompileError) as info:
            compile_program(src, env=FakeEnv())
        assert info.value.diagnostics.errors[0].message.startswith(message), info.value.diagnostics.errors[0].message
