"""bpftrace 0.27's language additions: what compiles, and the diagnostic each misuse gets (exact
location and underline). Outputs are compared with bpftrace 0.27 itself in tests/compat."""

from __future__ import annotations

import pytest

from kubectl_pytrace.lang import CompileError, compile_program

from .fakeenv import FakeEnv


def compiled(src, **kw):
    return compile_program(src, env=FakeEnv(), **kw)


def diagnostics(src, **kw) -> str:
    with pytest.raises(CompileError) as e:
        compiled(src, **kw)
    return str(e.value)


def first_error(src, **kw) -> str:
    with pytest.raises(CompileError) as e:
        compiled(src, **kw)
    return e.value.diagnostics.errors[0].message


def lines(*ls):
    return "\n".join(ls)


# ---- delete() and has_key() -------------------------------------------------------------------------

def test_delete_and_has_key_forms_compile():
    c = compiled('BEGIN { @m[1] = 1; @t[1, "a"] = 2; @s = 3; $k = (1, "a"); $ok = delete(@m, 1); '
                 'if (delete(@t, $k)) { } delete(@s); delete(@m[1]); $h = has_key(@t, (1, "a")); '
                 '$g = has_key(@m[1]); }')
    assert ".delete(&" in c.c.text and ".lookup(&" in c.c.text


@pytest.mark.parametrize("src, message", [
    ("BEGIN { @m[1] = 1; delete(@m, 1, 2); }", "delete() takes a map and a key: delete(@map, key)"),
    ("BEGIN { delete(1); }", "delete() expects a map as its first argument"),
    ("BEGIN { @m[1] = 1; delete(@m[1], 2); }", "delete(@map, key): the map without [keys]"),
    ("BEGIN { @h[1] = hist(1); delete(@h, 1); }", "delete() of a key of a hist() map is not supported: clear() it"),
    ("BEGIN { @s = 1; $x = has_key(@s); }", "call to has_key() expects a map with explicit keys (non-scalar map)"),
    ('BEGIN { @t[1, "a"] = 1; delete(@t, 1); }',
     "argument mismatch for @t: trying to access with arguments: [int64] when map expects arguments: "
     "[int64, string[2]]"),
    ("BEGIN { delete(@nosuch, 1); }", "undefined map '@nosuch'"),
])
def test_delete_misuse(src, message):
    assert first_error(src) == message


def test_delete_error_location():
    assert diagnostics("BEGIN { @m[1] = 1;\n  delete(@m, 1, 2); }") == lines(
        "stdin:2:3-18: ERROR: delete() takes a map and a key: delete(@map, key)",
        "  delete(@m, 1, 2); }",
        "  ~~~~~~~~~~~~~~~~")


# ---- let, scopes -------------------------------------------------------------------------------------

def test_let_and_scopes_compile():
    c = compiled('BEGIN { let $a; let $b: uint16 = 7; $a = 1; if (1) { let $c = "x"; } if (1) { $c = 2; } '
                 'let $s: string[8] = "abc"; let $p: struct task_struct *; }')
    slots = {s.name: s for fn in c.analysis.functions for s in fn.slots.values()}
    assert str(slots["$b"].type) == "uint16" and str(slots["$s"].type) == "string[8]"
    assert len([s for fn in c.analysis.functions for s in fn.slots.values() if s.name == "$c"]) == 2


@pytest.mark.parametrize("src, message", [
    ("BEGIN { let $x = 1; if (1) { let $x = 2; } }", "Variable $x was already declared. Variable shadowing is not allowed."),
    ("BEGIN { let $x = 1; let $x = 2; }", "Variable $x was already declared. Variable shadowing is not allowed."),
    ('BEGIN { let $x: uint32 = "a"; }',
     "type mismatch for $x: trying to assign value of type 'string[2]' when variable already has a type 'uint32'"),
    ("BEGIN { let $x: nosuch_t = 1; }", "Unknown type: nosuch_t"),
    ("BEGIN { let $x: struct nosuch = 1; }", "unknown struct 'struct nosuch' (not in the kernel's BTF)"),
    ("BEGIN { if (1) { $y = 1; } $z = $w; }", "Undefined or undeclared variable: $w"),
    ("BEGIN { let $y; print($y); }", "Undefined or undeclared variable: $y"),
])
def test_let_misuse(src, message):
    assert first_error(src) == message


def test_a_variable_read_after_its_block_warns():
    c = compiled("BEGIN { if (1) { $a = 1; } else { $a = 2; } print($a); }")
    assert "$a is used outside the block that assigned it" in c.warnings


# ---- macros ------------------------------------------------------------------------------------------

def test_macros_expand_hygienically():
    c = compiled("macro inc($v, @m, x) { $tmp = x; $v += $tmp; @m += $tmp; $tmp }\n"
                 "BEGIN { $tmp = 100; $a = 1; $r = inc($a, @count, 2); print(($a, $tmp, $r)); }")
    names = sorted(s.name for fn in c.analysis.functions for s in fn.slots.values())
    assert names == ["$a", "$r", "$tmp", "$tmp#inc1"]


@pytest.mark.parametrize("src, message", [
    ("macro m(x) { x } BEGIN { m(1, 2); }", "Call to m() has the wrong number of arguments. Expected: 1 but got 2."),
    ("macro m($v) { $v } BEGIN { m(1); }", "Mismatched arg. m() expects a variable for arg $v but got an expression."),
    ("macro m($v) { $v } BEGIN { m(@x); }", "Mismatched arg. m() expects a variable for arg $v but got a map."),
    ("macro m(@v) { @v } BEGIN { $x = 1; m($x); }", "Mismatched arg. m() expects a map for arg @v but got a variable."),
    ("macro m() { @other = 1; } BEGIN { m(); }",
     "Unhygienic access to map: @other. Maps must be passed into the macro as arguments."),
    ("macro m() { m() } BEGIN { m(); }", "Recursive macro call detected. Call chain: m > m"),
    ("macro m() { 1 } macro m() { 2 } BEGIN { m(); }", "Redefinition of macro: m"),
    ("macro m(x, x) { x } BEGIN { m(1, 2); }", "Ident for macro argument has already been used: x"),
    ("macro m($v) { let $v = 1; } BEGIN { $a = 0; m($a); }", "Variable declaration shadows macro arg $v"),
])
def test_macro_misuse(src, message):
    assert first_error(src) == message


def test_macro_error_points_at_the_call():
    assert diagnostics("macro m(x) { x }\nBEGIN { m(1, 2); }") == lines(
        "stdin:2:9-15: ERROR: Call to m() has the wrong number of arguments. Expected: 1 but got 2.",
        "BEGIN { m(1, 2); }",
        "        ~~~~~~~")


# ---- config ------------------------------------------------------------------------------------------

def test_config_is_read():
    c = compiled("config = { missing_probes = warn; BPFTRACE_MAX_STRLEN = 100; print_maps_on_exit = false }\n"
                 "u:/bin/x:foo, u:/bin/x:nosuch { @s = str(arg0); }")
    assert c.analysis.config.max_strlen == 100 and c.analysis.config.print_maps_on_exit is False
    assert "skipped (missing_probes = warn)" in c.warnings
    assert str(c.analysis.maps["@s"].value) == "string[100]"
    assert compiled("config = { missing_probes = ignore }\nu:/bin/x:foo, u:/bin/x:nosuch { }").warnings == ""


@pytest.mark.parametrize("src, message", [
    ("config = { nosuch = 1 } BEGIN { }", "nosuch: not a known configuration option"),
    ("config = { missing_probes = maybe } BEGIN { }",
     "missing_probes: Invalid value for missing_probes: valid values are ignore, warn, and error."),
    ("config = { max_strlen = abc } BEGIN { }", "max_strlen: expecting a number, got abc"),
    ("config = { print_maps_on_exit = 5 } BEGIN { }",
     "print_maps_on_exit: Invalid bool value: valid values are true, false, 1 or 0."),
    ("config = { strlen = 5 } BEGIN { }", "strlen: key has been renamed to 'max_strlen'"),
    ("config = { btf = 5 } BEGIN { }", "btf: can only be set as an environment variable"),
    ("config = { missing_probes = error }\nu:/bin/x:foo, u:/bin/x:nosuch { }",
     "u:/bin/x:nosuch: no function named 'nosuch' in /bin/x"),
    ("config = { } config = { } BEGIN { }", "duplicate config block"),
])
def test_config_misuse(src, message):
    assert first_error(src) == message


def test_config_error_location():
    assert diagnostics("config = {\n  nosuch = 1\n}\nBEGIN { }") == lines(
        "stdin:2:3-12: ERROR: nosuch: not a known configuration option",
        "  nosuch = 1",
        "  ~~~~~~~~~~")


# ---- indexing, fields through pointers, durations, bools --------------------------------------------

def test_indexing_and_auto_dereference_compile():
    compiled('BEGIN { $t = (struct task_struct *)curtask; $c = $t.comm[1]; $d = $t->comm[0]; $s = "ab"[1]; '
             '$u = (1, "x")[1]; $p = $t.real_parent.pid; $q = $t->real_parent->pid; }')


@pytest.mark.parametrize("src, message", [
    ("BEGIN { $t = (1, 2); $x = $t[2]; }", "tuple index 2 out of range for a tuple of 2 elements"),
    ("BEGIN { $t = (1, 2); $i = 0; $x = $t[$i]; }", "a tuple's index must be a constant integer expression"),
    ("BEGIN { $x = pid[0]; }", "cannot index a value of type 'uint64'"),
    ('BEGIN { $x = "ab"["a"]; }', "an index must be an integer, not string[2]"),
])
def test_index_misuse(src, message):
    assert first_error(src) == message


def test_durations_are_nanoseconds():
    c = compiled("BEGIN { @a = 1s; @b = 100ms; @c = 3us + 2ns; @d = 2m; @e = 1h; @f = 1d; }")
    text = c.c.text
    for n in (1000000000, 100000000, 3000, 120000000000, 3600000000000, 86400000000000):
        assert f"{n}LL" in text, n


def test_interval_takes_a_duration():
    c = compiled("interval:1s { exit(); } interval:250ms { } interval:5000 { }")
    assert c.c.probe_names == ["interval:us:1000000", "interval:us:250000", "interval:us:5"]


@pytest.mark.parametrize("src, message", [
    ("interval:99 { }", "interval:99: Invalid rate of interval probe. Minimum is 1000 or 1us. Found: 99 nanoseconds"),
    ("interval:soon { }", "interval:soon: invalid interval period 'soon': a duration (1s, 100ms) or a number of nanoseconds"),
])
def test_interval_duration_misuse(src, message):
    assert first_error(src) == message


def test_sizeof_and_offsetof_are_constants():
    c = compiled("BEGIN { @a = sizeof(struct task_struct); @b = sizeof(int32); @c = sizeof(pid); "
                 "@d = sizeof((1, \"ab\")); @e = offsetof(struct task_struct, comm); "
                 "@f = offsetof(struct task_struct, pid); $t = curtask; @g = sizeof(*$t); }")
    text = c.c.text
    for n in ("9792LL", "4LL", "8LL", "16LL", "3000LL", "2400LL"):
        assert n in text, n


@pytest.mark.parametrize("src, message", [
    ("BEGIN { @a = sizeof(struct nosuch); }", "unknown struct 'struct nosuch' (not in the kernel's BTF)"),
    ("BEGIN { @a = offsetof(struct task_struct, real_parent.pid); }",
     "'pid': struct task_struct * is not a struct"),
    ("BEGIN { @a = offsetof(struct task_struct, nosuch); }", "struct task_struct has no member 'nosuch'"),
    ("BEGIN { @a = offsetof(struct task_struct, pid.x); }", "'x': int32 is not a struct"),
    ("BEGIN { @a = offsetof(int32, x); }", "offsetof() needs a struct or union type, not int32"),
    ("BEGIN { @a = sizeof(count()); }", "count() should be directly assigned to a map"),
])
def test_sizeof_misuse(src, message):
    assert first_error(src) == message


def test_several_begin_probes_run_in_declaration_order():
    c = compiled('BEGIN { printf("a"); } begin { printf("b"); }')
    assert c.c.text.index("probe_0(ctx);") < c.c.text.index("probe_1(ctx);")


# ---- for loops ---------------------------------------------------------------------------------------

def test_for_loops_become_callbacks():
    c = compiled("BEGIN { @m[1] = 2; for ($i : 0..10) { @n += $i; } for ($kv : @m) { print($kv.1); } }")
    text = c.c.text
    assert "/* pytrace-link callbacks=pytrace_cb_0,pytrace_cb_1 map_refs=0:map_0 */" in text
    assert "bpf_loop(" in text and "bpf_for_each_map_elem(" in text


@pytest.mark.parametrize("src, message", [
    ("BEGIN { for ($i : 0..3) { return; } }", "'return' statement is not allowed in a for-loop"),
    ("BEGIN { for ($i : 0..3) { exit(); } }",
     "exit() is not allowed in a for-loop (it returns from the probe, as 'return')"),
    ('BEGIN { for ($i : 0.."a") { } }', "a for loop's bound must be an integer, not string[2]"),
    ("BEGIN { @s = 1; for ($kv : @s) { } }", "@s has no keys: a for loop iterates over a map with keys"),
    ("BEGIN { @c[1] = count(); for ($kv : @c) { } }",
     "@c holds count() values: a for loop iterates over maps of plain values"),
    ("BEGIN { for ($kv : @nosuch) { } }", "undefined map '@nosuch'"),
    ("BEGIN { for ($kv : @m[1]) { } }", "a for loop iterates over a map (for ($kv : @m)) or a range (for ($i : start..end))"),
    ("BEGIN { break; }", "'break' outside a loop"),
])
def test_for_misuse(src, message):
    assert first_error(src) == message


def test_for_range_is_two_unary_expressions():
    assert "syntax error" in diagnostics("BEGIN { $a = 1; for ($i : 0..$a + 1) { } }")
    compiled("BEGIN { $a = 1; for ($i : 0..($a + 1)) { } }")


# ---- getopt, strftime, clocks, task builtins ----------------------------------------------------------

def test_getopt_takes_named_parameters():
    c = compiled('BEGIN { @a = getopt("depth", 35); @b = getopt("flag"); @c = getopt("s", "x"); }',
                 params=["--depth=5", "--flag", "7"])
    assert "5LL" in c.c.text and str(c.analysis.maps["@b"].value) == "bool"


@pytest.mark.parametrize("src, params, message", [
    ("BEGIN { @a = getopt(1); }", [], "getopt() needs the parameter's name as a string literal"),
    ('BEGIN { @a = getopt("d", pid); }', [], "getopt()'s default must be a literal: an integer, a string or a bool"),
    ('BEGIN { @a = getopt("d", 1); }', ["--d=x"], "--d=x: expects an integer"),
    ('BEGIN { @a = getopt("d"); }', ["--d=maybe"], "--d=maybe: expects a boolean (true, false, 1 or 0)"),
    ('BEGIN { @a = getopt("d", 1, 2); }', [], "getopt()'s description must be a string literal"),
])
def test_getopt_misuse(src, params, message):
    assert first_error(src, params=params) == message


@pytest.mark.parametrize("src, message", [
    ('BEGIN { @s = strftime("%Y", nsecs(monotonic)); }', "strftime() can not take a monotonic timestamp"),
    ('BEGIN { @s = strftime("%Y", -1); }', "strftime() does not accept negative timestamps"),
    ("BEGIN { @s = strftime(1, nsecs); }", "strftime() needs a string literal as its format"),
    ('BEGIN { @s = strftime("%Y", "x"); }', "strftime() timestamp must be an integer, not string[2]"),
    ("BEGIN { @n = nsecs(sideways); }", "nsecs() takes a clock: monotonic, boot, tai, sw_tai"),
])
def test_strftime_misuse(src, message):
    assert first_error(src) == message


def test_nsecs_is_the_boot_clock():
    text = compiled("BEGIN { @a = nsecs; @b = nsecs(monotonic); @c = nsecs(tai); }").c.text
    assert "bpf_ktime_get_boot_ns()" in text and "bpf_ktime_get_ns()" in text and "bpf_ktime_get_tai_ns()" in text


def test_usermode_needs_registers():
    assert first_error("tracepoint:syscalls:sys_enter_read { @u = usermode; }") == (
        "usermode reads the registers of a kprobe, uprobe, profile or software probe, not of a 'tracepoint' probe")


# ---- map declarations ----------------------------------------------------------------------------------

def test_map_declarations_choose_the_bpf_map():
    text = compiled("let @l = lruhash(100); let @c = percpulruhash(7); let @h = hash(5);\n"
                    "BEGIN { @l[1] = 2; @c[1] = count(); @h = 1; }").c.text
    assert 'BPF_TABLE("lru_hash", struct map_0_key, s64, map_0, 100);' in text
    assert 'BPF_TABLE("lru_percpu_hash", struct map_1_key, u64, map_1, 7);' in text
    assert 'BPF_TABLE("hash", u64, s64, map_2, 5);' in text


@pytest.mark.parametrize("src, message", [
    ("let @m = foo(2); BEGIN { @m = 1; }", "Invalid bpf map type: foo"),
    ("let @m = hash(10); BEGIN { @m = count(); }",
     "Incompatible map types. Type from declaration: hash. Type from value/key type: percpuhash"),
    ("let @m = percpuhash(10); BEGIN { @m = 5; }",
     "Incompatible map types. Type from declaration: percpuhash. Type from value/key type: hash"),
    ("let @m = hash(1); let @m = hash(2); BEGIN { @m = 1; }", "map @m is declared twice"),
    ("let @m = hash(0); BEGIN { @m = 1; }", "a map's max entries must be between 1 and 16777216"),
])
def test_map_declaration_misuse(src, message):
    assert first_error(src) == message


def test_an_unused_declared_map_warns():
    assert "WARNING: Unused map: @m" in compiled("let @m = hash(2); BEGIN { }").warnings


# ---- strerror(), syscall_name(), signal_name() -----------------------------------------------------

def test_name_tables_are_filled_before_the_probes_attach():
    c = compiled('BEGIN { @a = strerror(2); @b = syscall_name(0); @c = signal_name(9); @d = strerror(1); }')
    text = c.c.text
    assert text.count("BPF_ARRAY(pytrace_names_") == 3 and "int pytrace_init(void *ctx)" in text
    first = c.c.attachments[0]
    assert first.fn_name == "pytrace_init" and first.internal
    # "read" is system call 0: one little-endian word
    assert "k = 0; w[0] = 0x64616572ULL;" in text


@pytest.mark.parametrize("src, message", [
    ('BEGIN { $s = strerror("x"); }', "strerror() argument must be an integer, not string[2]"),
    ("BEGIN { $s = syscall_name(); }", "syscall_name() requires one argument (0 provided)"),
    ("BEGIN { $s = signal_name(1, 2); }", "signal_name() requires one argument (2 provided)"),
])
def test_name_table_misuse(src, message):
    assert first_error(src) == message


# ---- cgroups, users, MAC addresses, pid namespaces ---------------------------------------------------

def test_builtins_have_a_call_form():
    text = compiled("BEGIN { @a = pid(); @b = comm(); @c = pid(init); @d = tid(curr_ns); @e = username(); }").c.text
    assert "bpf_get_current_comm" in text and text.count("bpf_get_current_pid_tgid()") >= 3


@pytest.mark.parametrize("src, message", [
    ('BEGIN { $f = "x"; @p = cgroup_path(1, $f); }', "cgroup_path()'s filter must be a string literal"),
    ('BEGIN { @p = cgroup_path("x"); }', "cgroup_path() cgroup id must be an integer, not string[2]"),
    ("BEGIN { $p = \"/sys\"; @i = cgroupid($p); }", "cgroupid() needs a string literal: a cgroup's path"),
    ('BEGIN { @i = cgroupid("/sys/fs/cgroup"); }', "cgroupid() is only known on the node (its cgroup file system)"),
    ('BEGIN { @m = macaddr("abcdef"); }', "macaddr() does not support literal string arguments"),
    ("BEGIN { @m = macaddr((1, 2)); }", "macaddr() expects an array or an address, not (int64,int64)"),
    ("BEGIN { @p = pid(other); }", "pid() takes a pid namespace: curr_ns or init"),
    ("BEGIN { @c = comm(1); }",
     "comm(pid) is not supported: it needs a kfunc call (bpf_task_from_pid), which kubectl-pytrace does not make"),
])
def test_cgroup_and_mac_misuse(src, message):
    assert first_error(src) == message


# ---- exit(code), errorf/warnf, assert, len(), strings, aggregation values -----------------------------

def test_exit_code_errorf_and_assert_become_events():
    c = compiled('BEGIN { errorf("e %d", 1); warnf("w"); assert(pid > 1, "100%"); exit(4); }')
    kinds = {ev.kind: ev for ev in c.c.events.values()}
    assert set(kinds) >= {"errorf", "warnf", "exit"}
    assert kinds["warnf"].where == ("stdin", 1, 28, "stdin:1:28-38")  # bpftrace's range: one past the end
    asserts = [ev for ev in c.c.events.values() if ev.kind == "errorf" and ev.where[2] == 40]
    assert asserts and "assert failed: 100" in str(asserts[0].fmt)
    assert [f.name for ev in c.c.events.values() if ev.kind == "exit" for f in ev.record.fields] == ["code", "code"]


def test_aggregations_are_read_across_cpus():
    text = compiled("BEGIN { @c = count(); @a = avg(3); @m[1] = min(2); $x = @c + @a + @m[1]; }").c.text
    assert text.count("pytrace_lookup_percpu((void *)0x70796d61") == 3
    assert "pytrace-link callbacks= map_refs=0:map_0,1:map_1,2:map_2" in text


def test_len_counts_elements_and_frames():
    text = compiled("kprobe:vfs_read { @m[1] = 1; @n = len(@m); @f = len(ustack); }").c.text
    assert "bpf_for_each_map_elem(" in text and "int pytrace_cb_visit(void *arg)" in text
    assert "bpf_get_stack(ctx, " in text and "BPF_F_USER_STACK" in text


def test_static_assert_is_checked_when_compiling():
    assert compiled('BEGIN { static_assert(sizeof(int32) == 4 && !false, "x"); }')


@pytest.mark.parametrize("src, message", [
    ('BEGIN { exit("a"); }', "exit() only supports int arguments (string provided)"),
    ("BEGIN { exit(1, 2); }", "exit() takes 0 to 1 arguments (2 provided)"),
    ("BEGIN { @s = 1; $n = len(@s); }", "call to len() expects a map with explicit keys (non-scalar map)"),
    ("BEGIN { $n = len(1); }", "call to len() expects a map, ustack, or kstack"),
    ("BEGIN { @h[1] = hist(1); $n = len(@h); }", "len() of a hist() map is not supported"),
    ("BEGIN { $n = strlen(1); }", "strlen() expects a string, a char array or a char pointer, not int64"),
    ('BEGIN { $n = strstr("a"); }', "strstr() requires 2 arguments (1 provided)"),
    ('BEGIN { $c = 2; $n = memcmp("ab", "cd", $c); }', "memcmp() count must be a non-negative constant"),
    ('BEGIN { $n = memcmp("ab", "cd", 4); }', "memcmp() count 4 is larger than the values compared (3 bytes)"),
    ('BEGIN { $f = "x"; errorf($f); }', "errorf() needs a string literal as its first argument"),
    ('BEGIN { warnf("%d"); }', "not enough arguments for format string (0 supplied, 1 expected)"),
    ('BEGIN { $m = "x"; assert(1, $m); }', "assert() message must be a string literal"),
    ('BEGIN { $c = 1; static_assert($c, "x"); }', "static_assert() condition must be a constant expression"),
    ('BEGIN { static_assert(1 > 2, "one is not more than two"); }', "one is not more than two"),
    ("BEGIN { @h = hist(1, 6); }", "hist: bits 6 must be 0..5"),
    ("BEGIN { $k = 1; @h = hist(1, $k); }", "hist: invalid bits value, need integer literal"),
    ("BEGIN { @h = hist(1, 1); @h = hist(2, 2); }", "Different bits in a single hist unsupported"),
    ("BEGIN { @h = hist(1); $x = @h + 1; }",
     "@h holds hist() values, which can only be printed, not read in an expression"),
])
def test_new_function_misuse(src, message):
    assert first_error(src) == message


# ---- structs copied whole ---------------------------------------------------------------------------

def test_structs_are_copied_as_bytes():
    c = compiled("kprobe:vfs_read { $f = *(struct file *)arg0; @f[$f.f_flags] = $f; print(*curtask); }")
    text = c.c.text
    assert "struct pytrace_raw_232 { u8 b[232]; };" in text and "bpf_probe_read_kernel(&" in text
    assert "struct pytrace_raw_9792 { u8 b[9792]; };" in text  # print(): straight into the event


def test_tracepoint_args_are_a_record():
    c = compiled("tracepoint:sched:sched_switch { @a = args; $a = args; print($a.prev_pid); }")
    rec = c.analysis.maps["@a"].value
    assert [m[0] for m in rec.members][:5] == ["common_type", "common_flags", "common_preempt_count",
                                                "common_pid", "prev_comm"]


@pytest.mark.parametrize("src, message", [
    ("BEGIN { $t = *curtask; }", "'struct task_struct' is 9792 bytes: too big to store (BPF programs have a "
                                 "512-byte stack); store the fields you need, or print() it"),
    ("tracepoint:sched:sched_switch { $a = args; $b = $a.nosuch; }",
     "struct tracepoint:sched:sched_switch_args has no member 'nosuch'"),
    ("kfunc:vfs_read { $a = args; }", "the args of a 'kfunc' probe are not a struct in memory: use its fields"),
    ('BEGIN { printf("%d", *curtask); }',
     "cannot use a value of type 'struct task_struct' here: use one of its fields, or a pointer to it"),
])
def test_struct_copy_misuse(src, message):
    assert first_error(src) == message


# ---- rawtracepoint:, software:, hardware:, iter: ---------------------------------------------------

def test_new_probe_types_compile():
    c = compiled("rawtracepoint:sched_switch { @[args.next->pid] = count(); @a = arg1; }\n"
                 "rt:sched_sw* { @n = count(); }\n"
                 "software:faults:1e2 { @f = count(); } s:cs { @c = count(); }\n"
                 "hardware:cycles { @h = count(); } h:cache-misses:1000 { @m = count(); }")
    assert c.c.probe_names[:1] == ["rawtracepoint:sched_switch"]
    names = [a.spec.name() for a in c.c.attachments]
    assert names == ["rawtracepoint:sched_switch", "rawtracepoint:sched_switch", "software:faults:100",
                     "software:cs", "hardware:cycles", "hardware:cache-misses:1000"]
    assert "((u64 *)ctx)[2]" in c.c.text and "((u64 *)ctx)[1]" in c.c.text


def test_iter_reads_its_context():
    c = compiled('iter:task { printf("%d\\n", ctx->task->pid); }')
    assert "if (!((u64 *)ctx)[1]) return 0;" in c.c.text


@pytest.mark.parametrize("src, message", [
    ("rawtracepoint:nosuch { }", "no tracepoint named 'nosuch' in the kernel's BTF (btf_trace_nosuch)"),
    ("rawtracepoint:sched_switch { @a = arg4; }", "arg4: tracepoint sched_switch has 4 arguments"),
    ("rawtracepoint:sched_switch { @a = args.nosuch; }", "sched_switch() has no argument named 'nosuch'"),
    ("rawtracepoint:mymod:myevent { @a = args.x; }",
     "the arguments of rawtracepoint:mymod:myevent are not in the kernel's BTF: use arg0, arg1..."),
    ("software:nosuch { }", "software:nosuch: nosuch is not a software probe"),
    ("hardware:cycles:x { }", "hardware:cycles:x: invalid hardware count 'x'"),
    ("software:cs:1:2 { }", "software:cs:1:2: software probes are written software:EVENT[:COUNT]"),
    ("iter:nosuch { }", "this kernel has no 'nosuch' iterator (no struct bpf_iter__nosuch in its BTF)"),
    ("iter:task { } BEGIN { }", "an iter probe can not be used with any other probe (it is the whole program)"),
    ("BEGIN { $c = ctx; }", "the ctx builtin is only supported in iter probes, not 'BEGIN'"),
    ("tracepoint:sched:sched_switch { @a = arg0; }",
     "the arg0 builtin can only be used with 'kprobe', 'uprobe', 'usdt' and 'rawtracepoint' probes"),
])
def test_new_probe_type_misuse(src, message):
    assert first_error(src) == message


# ---- C definitions in the program -----------------------------------------------------------------

def test_c_definitions_are_laid_out_as_a_c_compiler_does():
    c = compiled("enum unit { GRAM, KILO = 1000, MEGA };\n"
                 "struct A { char c; long l; unsigned int lo : 3, hi : 30; short s[3]; union { int i; char b[6]; } u;"
                 " struct file f; struct A *next; enum unit unit; };\n"
                 "BEGIN { @s = sizeof(struct A); @l = offsetof(struct A, l); @a = offsetof(struct A, s);"
                 " @u = offsetof(struct A, u); @f = offsetof(struct A, f); @n = offsetof(struct A, next);"
                 " @e = offsetof(struct A, unit); @k = MEGA; $a = (struct A *)0; @x = $a->hi; }")
    text = c.c.text
    # c@0 l@8 lo/hi share one u32 at 16 then hi spills to 20, s@24, u@32 (8 bytes), f@40 (232), next@272
    for n in ("288LL", "8LL", "24LL", "32LL", "40LL", "272LL", "280LL", "1001LL"):
        assert n in text, n


@pytest.mark.parametrize("src, message", [
    ("struct A { int x; }; struct A { int y; }; BEGIN { }", "in this C definition: struct A is defined twice"),
    ("struct A { nosuch_t x; }; BEGIN { }", "in this C definition: unknown type 'nosuch_t'"),
    ("struct A { int x int y; }; BEGIN { }", "in this C definition: expected ';', found 'int'"),
    ("struct A { struct nosuch n; }; BEGIN { }", "in this C definition: struct nosuch is not in the kernel's BTF"),
])
def test_c_definition_misuse(src, message):
    assert first_error(src) == message


# ---- uaddr(), reg(), kptr()/uptr(), buf() of strings, pointer arithmetic -----------------------------

def test_uaddr_in_a_pie_binary_is_found_from_the_probed_function():
    c = compiled('uprobe:/bin/x:main { @c = *uaddr("counter"); $n = uaddr("names"); @p = (uint64)($n + 2); }')
    text = c.c.text
    assert "(PYTRACE_REG(ctx, 16) - 4352ULL + 16400ULL)" in text  # ip - main + counter
    assert "* 8)" in text  # a 32-byte symbol is a uint64 *: + 2 is 16 bytes


def test_pointer_arithmetic_counts_elements():
    text = compiled("BEGIN { $p = (int32 *)0; @a = (uint64)($p + 3); $t = curtask; @b = (uint64)($t - 1); "
                    "$p++; }").c.text
    assert "((u64)(((s64)3LL)) * 4)" in text and "* 9792)" in text and "+= 4" in text


def test_reg_reads_pt_regs():
    assert "PYTRACE_REG(ctx, 16)" in compiled('uprobe:/bin/x:main { @ip = reg("ip"); }').c.text


@pytest.mark.parametrize("src, message", [
    ('BEGIN { @a = reg("ip"); }', 'reg can not be used with "begin" probes'),
    ('uprobe:/bin/x:main { @a = reg("xyz"); }',
     "'xyz' is not a register on x86_64 (one of r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, "
     "di, orig_ax, ip, cs, flags, sp, ss)"),
    ('uprobe:/bin/x:main { $r = "ip"; @a = reg($r); }', "reg() needs a string literal: a register's name"),
    ('BEGIN { @a = uaddr("counter"); }', "uaddr can only be used with uprobes and usdt probes, not 'BEGIN'"),
    ('uprobe:/bin/x:main { @a = uaddr("nosuch"); }', 'uaddr("nosuch"): no symbol named \'nosuch\' in /bin/x'),
    ('uretprobe:/bin/x:main { @a = uaddr("counter"); }',
     'uaddr("counter") in a position-independent binary works in a uprobe on one function (its address then '
     'tells where the binary is loaded)'),
    ('BEGIN { @a = kptr("x"); }', "kptr() expects a pointer or an address, not string[2]"),
    ('BEGIN { $b = buf(comm); }', "buf() expects a length argument for non-array type string"),
])
def test_address_function_misuse(src, message):
    assert first_error(src) == message


# ---- --unsafe: system(), signal(), override() ---------------------------------------------------------

def test_unsafe_functions_compile_with_unsafe():
    from kubectl_pytrace.lang import CodegenOptions

    class WithKprobes(FakeEnv):
        kprobes_available = True

    c = compile_program('kprobe:vfs_read { system("echo %d", pid); signal("KILL"); signal(15); signal(arg0); '
                        'override(0); }', env=WithKprobes(), options=CodegenOptions(unsafe=True))
    assert "bpf_send_signal((u32)(9));" in c.c.text and "bpf_override_return(ctx" in c.c.text
    assert any(ev.kind == "system" for ev in c.c.events.values())
    assert first_error("kprobe:vfs_read { override(0); }", options=CodegenOptions(unsafe=True)) == (
        "override() needs kprobes, which this kernel does not have")


@pytest.mark.parametrize("src, message", [
    ('BEGIN { system("ls"); }', "system() is an unsafe function being used in safe mode"),
    ("kprobe:vfs_read { signal(9); }", "signal() is an unsafe function being used in safe mode"),
    ("kprobe:vfs_read { override(1); }", "override() is an unsafe function being used in safe mode"),
])
def test_unsafe_functions_need_unsafe(src, message):
    assert first_error(src) == message


@pytest.mark.parametrize("src, message", [
    ('kprobe:vfs_read { signal("NOPE"); }', "Invalid string for signal: NOPE"),
    ("kprobe:vfs_read { signal(99); }", "99 is not a valid signal (1 to 64)"),
    ("BEGIN { signal(9); }", "signal() can not be used for this probetype begin"),
    ("kretprobe:vfs_read { override(1); }", "override() can only be used with kprobes, not 'kretprobe'"),
    ("BEGIN { system(1); }", "system() needs a string literal as its first argument"),
])
def test_unsafe_function_misuse(src, message):
    from kubectl_pytrace.lang import CodegenOptions

    assert first_error(src, options=CodegenOptions(unsafe=True)) == message
