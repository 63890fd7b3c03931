"""The semantic pass: type errors are found before any C is generated, with bpftrace's wording
where bpftrace has one; map types are learned across probes."""

from __future__ import annotations

import pytest

from kubectl_pytrace.lang import CompileError, compile_program
from kubectl_pytrace.lang.diagnostics import Diagnostics, Source
from kubectl_pytrace.lang.env import Environment
from kubectl_pytrace.lang.expand import expand
from kubectl_pytrace.lang.parser import parse
from kubectl_pytrace.lang.semantic import analyse
from kubectl_pytrace.lang.types import (
    INT64, UINT64, AggT, ArrayT, IntT, PtrT, StrT, StructT, TupleT,
)

from .fakeenv import FakeEnv


def var_types(fn):
    """A function's variables by name (one slot per name in these tests)."""
    return {slot.name: slot.type for slot in fn.slots.values()}


def messages(src, env=None, params=None, has_cpid=False, defer=False):
    """The error messages of the analysis pass alone (the code generator is never reached);
    defer: as the client checks a program for a node (check_program)."""
    env = env or FakeEnv()
    diags = Diagnostics(Source(src))
    program = parse(src)
    groups = expand(program, env, diags)
    assert not diags.has_errors(), diags.render()
    analyse(program, groups, env, diags, params or [], has_cpid, defer=defer)
    return [d.message for d in diags.errors]


def error(src, **kw):
    msgs = messages(src, **kw)
    assert len(msgs) == 1, msgs
    return msgs[0]


def analysis(src, env=None, **kw):
    return compile_program(src, env=env or FakeEnv(), **kw).analysis


def map_types(src, **kw):
    return {name: (m.key, m.value) for name, m in analysis(src, **kw).maps.items()}


# ---- types of values ------------------------------------------------------------------------------

@pytest.mark.parametrize("src, message", [
    ('BEGIN { @x = 1 + "a"; }', "type mismatch for '+': comparing 'int64' with 'string[2]'"),
    ("BEGIN { @x = comm * 2; }", "type mismatch for '*': comparing 'string[16]' with 'int64'"),
    ('BEGIN { @x = "a" < "b"; }', "the < operator can not be used on expressions of types string[2], string[2]"),
    ("BEGIN { @x = -comm; }", "the - operator needs an integer operand, not string[16]"),
    ("BEGIN { @x = !comm; }", "the ! operator needs an integer operand, not string[16]"),
    ('BEGIN { @x = comm && 1; }', "the && operator needs integer operands, not string[16]"),
    ('BEGIN { if ("a") { } }', "invalid condition in if(): string[2]"),
    ('BEGIN { while (comm) { } }', "invalid condition in while(): string[16]"),
    ('kprobe:f /comm/ { }', "invalid predicate: it must be an integer, not string[16]"),
    ('BEGIN { @x = comm ? 1 : 2; }', "invalid condition in ternary: string[16]"),
    ('BEGIN { @x = 1 ? 1 : "a"; }', "ternary operator branches have different types: 'int64' and 'string[2]'"),
    ('BEGIN { @x = (1, 2) == (1, 2); }', "the == operator can not be used on expressions of types (int64,int64), (int64,int64)"),
    ('BEGIN { @x = comm == 1; }', "type mismatch for '==': comparing 'string[16]' with 'int64'"),
    ('BEGIN { @x = (uint8)comm; }', "cannot cast a value of type string[16] to uint8"),
    ('BEGIN { @x = str(comm, "a"); }', "str() length must be an integer, not string[2]"),
    ('BEGIN { @x = ksym(comm); }', "ksym() argument must be an integer, not string[16]"),
    ('BEGIN { @x = sum("a"); }', "sum() argument must be an integer, not string[2]"),
    ('BEGIN { @x = hist(comm); }', "hist() argument must be an integer, not string[16]"),
    ('BEGIN { $s = "a"; $s++; }', "the ++ operator needs an integer variable, not string[2]"),
    ('BEGIN { @s = "a"; @s--; }', "the -- operator needs an integer map, @s holds string[2]"),
    ('BEGIN { $t = (1, 2); @x = $t.2; }', "tuple index 2 out of range for a tuple of 2 elements"),
    ('BEGIN { $t = (1, 2); @x = $t.a; }', "tuples are indexed with .N, like $t.0"),
    ('BEGIN { @x = 1; @x = "a"; }',
     "type mismatch for @x: trying to assign value of type 'string[2]' when map already contains a value of type 'int64'"),
    ('BEGIN { $x = 1; $x = "a"; }',
     "type mismatch for $x: trying to assign value of type 'string[2]' when variable already contains a value of type 'int64'"),
    ('BEGIN { @x = 1; @x = (1, 2); }',
     "type mismatch for @x: trying to assign value of type '(int64,int64)' when map already contains a value of type 'int64'"),
    ('BEGIN { @x = count(); @x = sum(1); }',
     "type mismatch for @x: trying to assign value of type 'sum_t' when map already contains a value of type 'count_t'"),
    ('BEGIN { @x = stats(1); @y = @x + 1; }',
     "@x holds stats() values, which can only be printed, not read in an expression"),
    ('BEGIN { $x = exit(); }', "this expression has no value to store"),
    ('BEGIN { @x = &pid; }', "the address-of operator '&' is not supported"),
    ('BEGIN { @x = *comm; }', "cannot dereference a value of type string[16]"),
    ('BEGIN { @x = kstack[0]; }', "cannot index a value of type 'kstack'"),
    ('BEGIN { @x = pid->x; }', "cannot access field 'x' on a value of type 'uint64'"),
])
def test_type_errors(src, message):
    assert error(src) == message


def test_string_used_as_integer_is_found_before_any_c():
    with pytest.raises(CompileError) as info:
        compile_program('BEGIN { @x = 1 + "a"; }')
    # the error comes from the semantic pass: no C was generated for the program
    assert "type mismatch for '+'" in str(info.value)


# ---- calls: argument counts and kinds ----------------------------------------------------------------

@pytest.mark.parametrize("src, message", [
    ("BEGIN { @x = count(1); }", "count() requires no arguments (1 provided)"),
    ("BEGIN { @x = sum(); }", "sum() requires one argument (0 provided)"),
    ("BEGIN { @x = avg(1, 2); }", "avg() requires one argument (2 provided)"),
    ("BEGIN { @x = lhist(1, 2, 3); }", "lhist() requires 4 arguments (3 provided)"),
    ("BEGIN { exit(1, 2); }", "exit() takes 0 to 1 arguments (2 provided)"),
    ("BEGIN { @x = str(); }", "str() takes 1 to 2 arguments (0 provided)"),
    ("BEGIN { @x = str(1, 2, 3); }", "str() takes 1 to 2 arguments (3 provided)"),
    ("BEGIN { @x = ksym(); }", "ksym() requires one argument (0 provided)"),
    ("BEGIN { @x = strncmp(comm, comm); }", "strncmp() requires 3 arguments (2 provided)"),
    ("BEGIN { print(); }", "print() takes 1 to 3 arguments (0 provided)"),
    ("BEGIN { @m = 1; clear(@m, 1); }", "clear() requires one argument (2 provided)"),
    ("BEGIN { time(1, 2); }", "time() takes 0 to 1 arguments (2 provided)"),
    ("BEGIN { printf(); }", "printf() needs a string literal as its first argument"),
    ("BEGIN { printf(comm); }", "printf() needs a string literal as its first argument"),
    ("BEGIN { time(comm); }", "time() needs a string literal (a strftime format)"),
    ("BEGIN { clear(1); }", "clear() expects a map argument"),
    ("BEGIN { @m[1] = 1; clear(@m[1]); }", "clear() takes a whole map, without [keys]"),
    ("BEGIN { print(@m, -1); @m = 1; }", "print(@map, top, div): top and div must be non-negative integer literals"),
    ("BEGIN { print(1, 2); }", "print() of a value takes one argument"),
    ("BEGIN { @x = strncmp(comm, 1, 2); }", "strncmp() compares strings, not int64"),
    ("BEGIN { @x = strncmp(comm, comm, $1); }", "strncmp() length must be a non-negative integer literal"),
    ("BEGIN { @x = str(0, -1); }", "str() length must not be negative"),
    ("BEGIN { @x = kstack(5000); }", "kstack() limit must be an integer literal between 1 and 1024"),
    ("BEGIN { @x = ustack(fast); }", "unknown stack mode 'fast': use one of bpftrace, perf, raw"),
    ("BEGIN { @x = ntop(comm); }", "ntop() expects an integer IPv4 address or a 4/16-byte array, not string[16]"),
    ("BEGIN { @x = nosuch(1); }", "unknown function 'nosuch'"),
    ("BEGIN { system(\"ls\"); }", "system() is an unsafe function being used in safe mode"),
    ("BEGIN { $p = pton(\"1.2.3.4\"); }",
     "function 'pton' is not supported by kubectl-pytrace: array values (u8[4], u8[16]) can not be stored or "
     "printed yet"),
    ("interval:1s { @t = tseries(1, 1s, 10); }",
     "function 'tseries' is not supported by kubectl-pytrace: time series maps are not implemented"),
])
def test_call_errors(src, message):
    assert error(src) == message


@pytest.mark.parametrize("agg", ["count()", "sum(1)", "avg(1)", "min(1)", "max(1)", "stats(1)", "hist(1)",
                                 "lhist(1, 0, 10, 1)"])
def test_aggregations_must_be_assigned_to_a_map(agg):
    name = agg.split("(")[0]
    assert error(f"BEGIN {{ $x = {agg}; }}") == f"{name}() should be directly assigned to a map"
    assert error(f"BEGIN {{ {agg}; }}") == f"{name}() should be directly assigned to a map"
    assert error(f"BEGIN {{ @x = {agg} + 1; }}") == f"{name}() should be directly assigned to a map"
    assert error(f'BEGIN {{ printf("%d", {agg}); }}') == f"{name}() should be directly assigned to a map"


# ---- printf: bpftrace 0.27's own messages -------------------------------------------------------------

@pytest.mark.parametrize("src, message", [
    ('BEGIN { printf("%d\\n"); }', "not enough arguments for format string (0 supplied, 1 expected)"),
    ('BEGIN { printf("%d %s\\n", 1); }', "not enough arguments for format string (1 supplied, 2 expected)"),
    ('BEGIN { printf("x\\n", 1); }', "too many arguments for format string (1 supplied, 0 expected)"),
    ('BEGIN { printf("a%%d\\n", 1); }', "too many arguments for format string (1 supplied, 0 expected)"),
    ('BEGIN { printf("%d\\n", "s"); }', "unsupported format specifier for type 'string[2]': d"),
    ('BEGIN { printf("%r\\n", 1); }', "unsupported format specifier for type 'int64': r"),
    ('BEGIN { printf("%lx\\n", comm); }', "unsupported format specifier for type 'string[16]': x"),
    ('BEGIN { printf("%d\\n", (1, 2)); }', "unsupported format specifier for type '(int64,int64)': d"),
    ('BEGIN { printf("%d\\n", kstack); }', "unsupported format specifier for type 'kstack': d"),
    ('BEGIN { printf("%f\\n", 1); }', "unsupported format specifier: f"),
    ('BEGIN { printf("%d\\n", print(1)); }', "unable to print none type for specifier: d"),
])
def test_printf_argument_checks(src, message):
    assert error(src) == message


def test_printf_accepts_what_bpftrace_accepts():
    assert messages('BEGIN { printf("%s %d %u %x %5.2s %-3lld %c %p %s %s %i %s\\n", comm, pid, 1, 2, '
                    '"ab", -1, 65, curtask, kstack, ksym(0), 5, 7); }') == []
    assert messages('BEGIN { printf("%s\\n", probe); printf("%d %d\\n", (uint8 *)0, 1 > 0); }') == []


# ---- lhist --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ("1, -1, 10, 1", "lhist() min must be non-negative"),
    ("1, 10, 10, 1", "lhist() max must be greater than min"),
    ("1, 10, 5, 1", "lhist() max must be greater than min"),
    ("1, 0, 10, 0", "lhist() step must be >= 1"),
    ("1, 0, 10, -2", "lhist() step must be >= 1"),
    ("1, 0, 10000, 1", "lhist() has too many buckets: (max - min) / step must be at most 1000"),
    ("1, $1, 10, 1", "lhist() min, max and step must be integer literals"),
    ("1, 0, pid, 1", "lhist() min, max and step must be integer literals"),
    ('"a", 0, 10, 1', "lhist() argument must be an integer, not string[2]"),
    ("1, 0, 100000000000000000000, 10000000000000000000",
     "lhist() min, max and step must fit in a signed 64-bit integer"),
])
def test_lhist_argument_checks(args, message):
    assert error(f"BEGIN {{ @ = lhist({args}); }}") == message


def test_lhist_bounds_are_part_of_the_map_type():
    assert error("BEGIN { @ = lhist(1, 0, 10, 1); @ = lhist(1, 0, 20, 1); }") == \
        "@: lhist() arguments differ from an earlier use of the map"
    assert map_types("BEGIN { @ = lhist(1, 0, 1000, 1); }")["@"][1] == AggT("lhist", True, (0, 1000, 1))


# ---- statements ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("count, message", [
    ("0", "unroll() count must be between 1 and 100 (got 0)"),
    ("101", "unroll() count must be between 1 and 100 (got 101)"),
    ("-1", "unroll() count must be between 1 and 100 (got -1)"),
    ("$1", "unroll() needs an integer literal"),
    ("pid", "unroll() needs an integer literal"),
])
def test_unroll_bounds(count, message):
    assert error(f"BEGIN {{ unroll({count}) {{ }} }}", params=["3"]) == message


def test_unroll_limits_accepted():
    assert messages("BEGIN { unroll(1) { } unroll(100) { } }") == []


@pytest.mark.parametrize("src, message", [
    ("BEGIN { break; }", "'break' outside a loop"),
    ("BEGIN { continue; }", "'continue' outside a loop"),
    ("BEGIN { if (1) { break; } }", "'break' outside a loop"),
    ("BEGIN { unroll(2) { continue; } }", "'continue' outside a loop"),
    ("BEGIN { while (1) { } break; }", "'break' outside a loop"),
])
def test_break_and_continue_outside_a_loop(src, message):
    assert error(src) == message


def test_break_and_continue_inside_loops():
    assert messages("BEGIN { $i = 0; while ($i < 3) { $i++; if ($i == 1) { continue; } "
                    "while (1) { break; } unroll(2) { break; } } }") == []


# ---- maps and variables ---------------------------------------------------------------------------------

@pytest.mark.parametrize("src, message", [
    ("BEGIN { print($y); }", "Undefined or undeclared variable: $y"),
    ("BEGIN { $x += 1; }", "Undefined or undeclared variable: $x"),
    ("BEGIN { $x++; }", "Undefined or undeclared variable: $x"),
    ("BEGIN { @x = @nope; }", "undefined map '@nope'"),
    ("BEGIN { print(@nope); }", "undefined map '@nope'"),
    ("BEGIN { clear(@nope); }", "undefined map '@nope'"),
    ("BEGIN { delete(@nope[1]); }", "undefined map '@nope'"),
    ("BEGIN { @x = nosuch; }", "unknown builtin 'nosuch'"),
    ("BEGIN { @a[1, 2] = 1; @a[1] = 2; }",
     "argument mismatch for @a: trying to access with arguments: [int64] when map expects arguments: [int64, int64]"),
    ("BEGIN { @a[1] = 1; @a = 2; }",
     "argument mismatch for @a: trying to access with arguments: [] when map expects arguments: [int64]"),
    ("BEGIN { @a = 1; @b = @a[1]; }",
     "argument mismatch for @a: trying to access with arguments: [int64] when map expects arguments: []"),
    ('BEGIN { @a[1] = 1; @a["k"] = 1; }',
     "argument type mismatch for @a: key (string[2]) is not compatible with the map's key (int64)"),
    ('BEGIN { @a[1] = 1; @a[1, 2] += 1; }',
     "argument mismatch for @a: trying to access with arguments: [int64, int64] when map expects arguments: [int64]"),
    ("BEGIN { @x = 1; @y = lhist(1, 0, 10, 1); @z[@y] = 1; }",
     "@y holds lhist() values, which can only be printed, not read in an expression"),
])
def test_map_and_variable_errors(src, message):
    assert message in messages(src)


def test_compound_assignment_on_an_undefined_map_makes_an_integer_map():
    # bpftrace 0.17 accepts it: the map starts at 0
    assert map_types("BEGIN { @x += 5; @y -= 1; @z++; --@w[comm]; }") == {
        "@x": (None, INT64), "@y": (None, INT64), "@z": (None, INT64), "@w": (TupleT((StrT(16),)), INT64)}


def test_compound_assignment_with_a_string_is_an_error():
    assert messages('BEGIN { @x += "a"; }') == ["undefined map '@x'"]
    assert messages('BEGIN { @x = "s"; @x += 1; }') == ["type mismatch for '+': comparing 'string[2]' with 'int64'"]


def test_map_types_are_learned_across_probes():
    # END reads maps that probes written later in the program fill
    src = """
    END { printf("%s %d\\n", @name, @n); @copy = @name; @k[@name] = @n; @t = (@n, @name); }
    BEGIN { @name = "text"; }
    uprobe:/bin/x:foo { @n = arg0; }
    """
    types = map_types(src)
    assert types["@name"] == (None, StrT(5))
    assert types["@n"] == (None, UINT64)
    assert types["@copy"] == (None, StrT(5))
    assert types["@k"] == (TupleT((StrT(5),)), UINT64)
    assert types["@t"] == (None, TupleT((UINT64, StrT(5))))


def test_map_learned_through_a_chain_of_maps():
    types = map_types('END { @d = @c; } interval:s:1 { @c = @b; } uprobe:/bin/x:foo { @b = @a; } '
                      'BEGIN { @a = "s"; }')
    assert types["@d"] == (None, StrT(2))


def test_map_value_types_widen():
    types = map_types('BEGIN { @s = "a"; @s = "longer"; @i = (int8)1; @i = -1; @u = (uint32)1; @u = 2; '
                      '@n = (uint64)1; @n = (uint32)1; }')
    assert types["@s"] == (None, StrT(7))
    assert types["@i"] == (None, INT64)
    assert types["@u"] == (None, UINT64)  # the common type of uint64 and int64 is unsigned
    assert types["@n"] == (None, UINT64)


def test_variable_types_are_per_probe():
    fns = analysis('BEGIN { $x = 1; } END { $x = "s"; }').functions
    assert [var_types(fn) for fn in fns] == [{"$x": INT64}, {"$x": StrT(2)}]


def test_map_used_but_never_assigned():
    assert messages("BEGIN { print(@x); } END { @y = @x; }") == [
        "undefined map '@x'", "undefined map '@x'"]


# ---- builtins in the wrong probe type --------------------------------------------------------------------

@pytest.mark.parametrize("src, message", [
    ("tracepoint:syscalls:sys_enter_read { @ = arg0; }",
     "the arg0 builtin can only be used with 'kprobe', 'uprobe', 'usdt' and 'rawtracepoint' probes"),
    ("uprobe:/bin/x:foo { @ = retval; }",
     "the retval builtin can only be used with 'kretprobe', 'uretprobe' and 'kretfunc' probes"),
    ("tracepoint:syscalls:sys_enter_read { @ = retval; }",
     "the retval builtin can only be used with 'kretprobe', 'uretprobe' and 'kretfunc' probes"),
    ("uretprobe:/bin/x:foo { @ = arg0; }", "the arg0 builtin can only be used with 'kprobe', 'uprobe', 'usdt' and 'rawtracepoint' probes"),
    ("BEGIN { @ = args.x; }", "the args builtin can only be used with tracepoint and kfunc probes, not 'BEGIN'"),
    ("uprobe:/bin/x:foo { @ = args.x; }", "the args builtin can only be used with tracepoint and kfunc probes, not 'uprobe'"),
    ("BEGIN { @ = func; }", "the func builtin can not be used with 'BEGIN' probes"),
    ("tracepoint:syscalls:sys_enter_read { @ = func; }", "the func builtin can not be used with 'tracepoint' probes"),
    ("profile:hz:99 { @ = sarg0; }", "the sarg0 builtin can only be used with 'kprobe' and 'uprobe' probes"),
    ("uprobe:/bin/x:foo { @ = arg6; }", "arg6: only arg0..arg5 are passed in registers on x86_64"),
    ("usdt:/bin/x:prov:start { @ = arg2; }", "arg2: USDT probe prov:start has 2 arguments"),
    ("usdt:/bin/x:other:start { @ = arg1; }", "arg1: USDT probe other:start has 1 argument"),
    ("BEGIN { @ = cpid; }", "cpid is only available when a command is run with -c"),
    ("kfunc:vfs_read { @ = args.nosuch; }", "vfs_read() has no argument named 'nosuch'"),
])
def test_builtins_in_the_wrong_probe_type(src, message):
    assert error(src) == message


def test_unknown_tracepoint_field_with_a_hint():
    src = "tracepoint:syscalls:sys_enter_read { @ = args.nosuch; }"
    diags = Diagnostics(Source(src))
    program = parse(src)
    env = FakeEnv()
    analyse(program, expand(program, env, diags), env, diags)
    (d,) = diags.errors
    assert d.message == "tracepoint syscalls:sys_enter_read has no field 'nosuch'"
    assert d.hint == "its fields are: __syscall_nr, buf, count, fd"


def test_tracepoint_fields_without_tracefs():
    src = "tracepoint:syscalls:sys_enter_read { @ = args.fd; }"
    assert error(src, env=Environment()) == "tracepoint fields are unknown here (no tracefs)"


def test_tracepoint_wildcard_types_each_match():
    # each matching tracepoint gets its own function: args.fd exists in sys_enter_read only
    msgs = messages("tracepoint:syscalls:sys_*_read { @ = args.fd; }")
    assert msgs == ["tracepoint syscalls:sys_exit_read has no field 'fd'"]


# ---- typing of builtins, fields and casts -----------------------------------------------------------------

def test_types_of_fields_and_builtins():
    fn = analysis("tracepoint:sched:sched_switch { @a = args.prev_comm; @b = args.prev_pid; "
                  "@c = comm; @d = pid; @e = (int8)-1; }").maps
    assert fn["@a"].value == StrT(16)
    assert fn["@b"].value == INT64
    assert fn["@c"].value == StrT(16)
    assert fn["@d"].value == UINT64
    assert fn["@e"].value == INT64


def test_struct_access_through_btf():
    a = analysis("BEGIN { $t = (struct task_struct *)curtask; @p = $t->real_parent->pid; @c = $t->comm; "
                 "@f = $t->in_execve; }")
    assert a.maps["@p"].value == INT64 and a.maps["@c"].value == StrT(16) and a.maps["@f"].value == UINT64
    fn = a.functions[0]
    assert var_types(fn)["$t"] == PtrT(StructT("struct task_struct"), "kernel")


@pytest.mark.parametrize("src, message", [
    ("BEGIN { $t = (struct nosuch *)0; }", "unknown struct 'struct nosuch' (not in the kernel's BTF)"),
    ("BEGIN { $t = (struct task_struct)0; }", "cannot cast to 'struct task_struct': cast to a pointer ('struct task_struct *')"),
    ("BEGIN { @x = ((struct task_struct *)0)->nosuch; }", "struct task_struct has no member 'nosuch'"),
    ("BEGIN { @x = ((struct task_struct *)0).nosuch; }", "struct task_struct has no member 'nosuch'"),
    ("BEGIN { $t = (struct task_struct *)0; @x = *$t; }",
     "'struct task_struct' is 9792 bytes: too big to store (BPF programs have a 512-byte stack); store the fields you need, or print() it"),
])
def test_struct_errors(src, message):
    assert error(src) == message


def test_struct_casts_need_btf():
    assert error("BEGIN { $t = (struct task_struct *)0; }", env=Environment()) == (
        "cannot resolve 'struct task_struct': kernel struct access needs the running kernel's BTF "
        "(/sys/kernel/btf/vmlinux), which this host does not have")


def test_positional_parameters_are_typed_by_their_value():
    a = analysis('BEGIN { @n = $1; @s = $2; @c = $#; @missing = $3; }', params=["0x10", "text"])
    assert a.maps["@n"].value == INT64
    assert a.maps["@s"].value == StrT(5)
    assert a.maps["@c"].value == INT64
    assert a.maps["@missing"].value == StrT(1)
    assert error("BEGIN { @ = $0; }") == "positional parameters start at $1"


def test_usdt_arguments_typed_from_the_probe_notes():
    a = analysis("usdt:/bin/x:prov:start { @a = arg0; @b = arg1; }")
    assert a.maps["@a"].value == INT64 and a.maps["@b"].value == UINT64
    assert [u.type for u in a.functions[0].usdt_args] == [IntT(32, True), UINT64]


def test_integer_literal_types():
    a = analysis("BEGIN { @a = 9223372036854775807; @b = 9223372036854775808; }")
    assert a.maps["@a"].value == INT64 and a.maps["@b"].value == UINT64
    assert error("BEGIN { @a = 18446744073709551616; }") == "integer 18446744073709551616 does not fit in 64 bits"


def test_arrays_cannot_be_stored_but_byte_arrays_are_strings():
    assert error("BEGIN { $s = (struct sock *)0; @x = $s->skc_ports; }") == \
        "cannot store an array of type 'uint16[2]': index it"
    a = analysis("BEGIN { $s = (struct sock *)0; @x = $s->sk_v6_daddr; @p = $s->skc_ports[1]; }")
    assert a.maps["@x"].value == StrT(16)  # like args.prev_comm: char[16] is a string[16]
    assert a.maps["@p"].value == UINT64


# ---- limits that keep the generated C bounded ---------------------------------------------------------

def test_nested_unroll_copies_are_bounded():
    assert messages("BEGIN { unroll(100) { unroll(100) { @x++; } } }") == []
    assert error("BEGIN { unroll(100) { unroll(100) { unroll(2) { @x++; } } } }") == \
        "nested unroll() would copy its body 20000 times (at most 10000)"
    # siblings do not multiply
    assert messages("BEGIN { unroll(100) { @a++; } unroll(100) { unroll(100) { @b++; } } }") == []


@pytest.mark.parametrize("src, message", [
    ("kprobe:f { @ = arg" + "9" * 5000 + "; }", "arg9999999999999...: argument number too large"),
    ("kprobe:f { @ = sarg" + "9" * 30 + "; }", "sarg999999999999...: argument number too large"),
    ("kprobe:f { @ = arg1234567; }", "arg1234567...: argument number too large"),
    ("usdt:/bin/y:p { @ = arg12; }", "arg12: USDT probes have at most 12 arguments"),
    ("BEGIN { $t = (1, 2); @ = $t." + "9" * 5000 + "; }",
     "tuple index " + "9" * 5000 + " out of range for a tuple of 2 elements"),
])
def test_numbers_in_names(src, message):
    assert error(src, env=FakeEnv() if "/bin/y" not in src else Environment()) == message


def test_numbers_in_names_that_fit():
    assert messages("kprobe:f { @ = arg000005 + sarg123456; }", env=Environment()) == []
    assert messages("usdt:/bin/y:p { @ = arg11; }", env=Environment(), defer=True) == []


def test_usdt_arguments_need_the_note_where_code_is_generated():
    # the program reads each argument where the probe's note says: no note, no code
    assert error("usdt:/bin/y:p { @ = arg0; }", env=Environment()) == \
        "arg0: the note of USDT probe p was not found in /bin/y, so where its arguments are is unknown"


def test_positional_parameter_too_large_for_64_bits():
    assert error("BEGIN { @x = $1 + 1; }", params=["99999999999999999999999"]) == \
        "$1 is used as a number but '99999999999999999999999' does not fit in 64 bits"
    assert messages("BEGIN { @x = $1 + $2; }", params=["18446744073709551615", "-9223372036854775808"]) == []


@pytest.mark.parametrize("src", [
    "BEGIN { @x = 1" + " + 1" * 590 + "; }",
    "BEGIN { $x = 1; @x = " + "($x ? " * 290 + "1" + " : 2)" * 290 + "; }",
    "BEGIN { @x = " + "(uint8)" * 590 + "1; }",
    "BEGIN { @a[1] = 1; @x = " + "@a[" * 590 + "1" + "]" * 590 + "; }",
    "BEGIN { $i = 0; " + "while ($i < 1) { " * 190 + "$i++; " + "}" * 190 + " }",
    "BEGIN { @x = 1" + " && @x" * 590 + "; }",
])
def test_deep_programs_compile_in_every_pass(src):
    """Just under the parser's nesting limit, every pass (recursive) still has room."""
    assert compile_program(src).c.text


def test_string_literals_are_at_most_1023_bytes():
    assert messages('BEGIN { @x = "' + "a" * 1023 + '"; }') == []
    assert error('BEGIN { @x = "' + "a" * 1024 + '"; }') == "string is too long (over 1024 bytes)"
    assert error('BEGIN { if (comm == "' + "a" * 1100 + '") { } }') == "string is too long (over 1024 bytes)"
    assert messages('BEGIN { printf("' + "a" * 300 + '\\n"); }') == []  # formats stay in Python


def test_long_positional_strings_are_cut_to_63_bytes():
    a = analysis("BEGIN { @x = $1; @y = str($1); }", params=["p" * 100])
    assert a.maps["@x"].value == StrT(64) and a.maps["@y"].value == StrT(64)
