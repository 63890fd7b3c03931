"""parse(): whole trees compared structurally (AST equality ignores spans)."""

from __future__ import annotations

import pytest

from kubectl_pytrace.lang import CompileError, parse
from kubectl_pytrace.lang.ast import (
    AssignMap, AssignVar, AttachPoint, Binop, Block, Break, Builtin, Call, Cast, Cond, Continue,
    ExprStmt, FieldAccess, Identifier, If, IncDec, Index, Integer, Map, Positional, Probe, Program,
    Return, String, Tuple, TypeName, Unop, Unroll, Var, While,
)


# ---- helpers ------------------------------------------------------------------------------------

def I(n):  # noqa: E743 - short names keep the expected trees readable
    return Integer(n)


def B(op, left, right):
    return Binop(op, left, right)


def U(op, x):
    return Unop(op, x)


def S(text):
    return String(text if isinstance(text, bytes) else text.encode())


def body(src):
    """The statements of `BEGIN { src }`."""
    return parse("BEGIN { " + src + " }").probes[0].block.stmts


def expr(src):
    """The expression e of `BEGIN { @ = e; }`."""
    (stmt,) = body(f"@ = {src};")
    assert isinstance(stmt, AssignMap)
    return stmt.value


def syntax_error(src):
    with pytest.raises(CompileError) as info:
        parse(src)
    return str(info.value)


# ---- probes -------------------------------------------------------------------------------------

def test_whole_program_tree():
    prog = parse('kprobe:do_nanosleep { printf("%d\\n", pid); }\nEND { exit(); }')
    assert prog == Program([
        Probe([AttachPoint("kprobe:do_nanosleep")], None,
              Block([ExprStmt(Call("printf", [S("%d\n"), Builtin("pid")]))])),
        Probe([AttachPoint("END")], None, Block([ExprStmt(Call("exit", []))])),
    ])


def test_spans_do_not_take_part_in_equality():
    a = parse("BEGIN{@x=1;}")
    b = parse("BEGIN {\n    @x   =   1 ;\n}\n")
    assert a == b
    assert a.probes[0].block.stmts[0].span != b.probes[0].block.stmts[0].span


def test_several_attach_points_keep_their_text():
    prog = parse('uprobe:/bin/bash:readline, t:syscalls:sys_enter_*,kprobe:vfs_read,'
                 'uprobe:/usr/lib/libstdc++.so.6:"std::foo(int, char)",usdt:/bin/x:prov:probe { }')
    assert [ap.raw for ap in prog.probes[0].attach_points] == [
        "uprobe:/bin/bash:readline", "t:syscalls:sys_enter_*", "kprobe:vfs_read",
        'uprobe:/usr/lib/libstdc++.so.6:"std::foo(int, char)"', "usdt:/bin/x:prov:probe"]


def test_attach_point_spans_point_at_each_attach_point():
    src = "BEGIN,END{}"
    aps = parse(src).probes[0].attach_points
    assert [src[a.span.start:a.span.end] for a in aps] == ["BEGIN", "END"]


def test_empty_bodies_and_empty_statements():
    assert parse("BEGIN {}").probes[0].block == Block([])
    assert parse("BEGIN { ; ; }").probes[0].block == Block([])
    assert body("@x = 1;; @y = 2") == [AssignMap(Map("@x"), I(1)), AssignMap(Map("@y"), I(2))]


@pytest.mark.parametrize("src, pred", [
    ("kprobe:f /pid/ { }", Builtin("pid")),
    ("kprobe:f / pid / 2 == 1 / { }", B("==", B("/", Builtin("pid"), I(2)), I(1))),
    ("kprobe:f /pid / 2 == 1/ { }", B("==", B("/", Builtin("pid"), I(2)), I(1))),
    ("kprobe:f /pid/2/2/{ }", B("/", B("/", Builtin("pid"), I(2)), I(2))),
    ("kprobe:f /comm == \"a/ {\"/ { }", B("==", Builtin("comm"), S("a/ {"))),
    ("kprobe:f /pid == 1/ // the predicate ends here\n { }", B("==", Builtin("pid"), I(1))),
    ("kprobe:f /pid == 1/ /* { */ { }", B("==", Builtin("pid"), I(1))),
    ("kprobe:f /@x[1] && $1 > 2/\n{ }", B("&&", Map("@x", [I(1)]), B(">", Positional(1), I(2)))),
])
def test_predicates(src, pred):
    (probe,) = parse(src).probes
    assert probe.predicate == pred
    assert probe.block == Block([])


def test_predicate_without_block_is_a_syntax_error():
    assert "syntax error" in syntax_error("kprobe:f /pid/")


# ---- statements ---------------------------------------------------------------------------------

def test_if_else_if_else():
    (stmt,) = body("if ($x > 1) { @a = 1; } else if ($x) { @b = 2; } else { @c = 3; }")
    inner = If(Var("$x"), Block([AssignMap(Map("@b"), I(2))]), Block([AssignMap(Map("@c"), I(3))]))
    assert stmt == If(B(">", Var("$x"), I(1)), Block([AssignMap(Map("@a"), I(1))]), Block([inner]))


def test_if_without_else_and_blocks_need_no_semicolon():
    stmts = body("if (1) { } @x = 1; if (2) { exit() } @y = 2")
    assert stmts == [If(I(1), Block([])), AssignMap(Map("@x"), I(1)),
                     If(I(2), Block([ExprStmt(Call("exit"))])), AssignMap(Map("@y"), I(2))]


def test_unroll_while_break_continue_return():
    stmts = body("unroll (3) { @i++; } while ($i < 10) { if ($i == 5) { break; } continue; } return")
    assert stmts == [
        Unroll(I(3), Block([ExprStmt(IncDec(Map("@i"), "++", False))])),
        While(B("<", Var("$i"), I(10)), Block([If(B("==", Var("$i"), I(5)), Block([Break()])), Continue()])),
        Return(),
    ]


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"])
def test_compound_assignment_desugars(op):
    assert body(f"@x[1, 2] {op}= $y + 1;") == [
        AssignMap(Map("@x", [I(1), I(2)]), B(op, Map("@x", [I(1), I(2)]), B("+", Var("$y"), I(1))))]
    assert body(f"$v {op}= 2") == [AssignVar(Var("$v"), B(op, Var("$v"), I(2)))]


def test_increment_and_decrement():
    assert body("$x++; $x--; ++@y; --@z[1]; $w = @n++") == [
        ExprStmt(IncDec(Var("$x"), "++", False)),
        ExprStmt(IncDec(Var("$x"), "--", False)),
        ExprStmt(IncDec(Map("@y"), "++", True)),
        ExprStmt(IncDec(Map("@z", [I(1)]), "--", True)),
        AssignVar(Var("$w"), IncDec(Map("@n"), "++", False)),
    ]


def test_assignment_to_a_non_lvalue_is_a_syntax_error():
    assert "syntax error" in syntax_error("BEGIN { pid = 1; }")
    assert "syntax error" in syntax_error("BEGIN { 1 = 1; }")
    assert "syntax error" in syntax_error("BEGIN { x = 1; }")


# ---- expressions: precedence and associativity ---------------------------------------------------

a, b, c, d = Var("$a"), Var("$b"), Var("$c"), Var("$d")

PRECEDENCE = [
    # arithmetic
    ("$a + $b * $c", B("+", a, B("*", b, c))),
    ("$a * $b + $c", B("+", B("*", a, b), c)),
    ("$a - $b - $c", B("-", B("-", a, b), c)),
    ("$a / $b / $c", B("/", B("/", a, b), c)),
    ("$a % $b * $c", B("*", B("%", a, b), c)),
    ("$a - -$b", B("-", a, U("-", b))),
    ("-$a * $b", B("*", U("-", a), b)),
    # shifts below additive, above relational
    ("$a << $b + $c", B("<<", a, B("+", b, c))),
    ("$a << $b << $c", B("<<", B("<<", a, b), c)),
    ("$a < $b << $c", B("<", a, B("<<", b, c))),
    # relational and equality
    ("$a < $b < $c", B("<", B("<", a, b), c)),
    ("$a == $b != $c", B("!=", B("==", a, b), c)),
    ("$a < $b == $c >= $d", B("==", B("<", a, b), B(">=", c, d))),
    # bitwise: & above ^ above |, all below equality (as in C)
    ("$a & $b == $c", B("&", a, B("==", b, c))),
    ("$a | $b ^ $c & $d", B("|", a, B("^", b, B("&", c, d)))),
    ("$a & $b & $c", B("&", B("&", a, b), c)),
    # logical
    ("$a || $b && $c", B("||", a, B("&&", b, c))),
    ("$a && $b || $c && $d", B("||", B("&&", a, b), B("&&", c, d))),
    ("$a | $b && $c", B("&&", B("|", a, b), c)),
    ("!$a == $b", B("==", U("!", a), b)),
    ("!!$a", U("!", U("!", a))),
    ("~$a & $b", B("&", U("~", a), b)),
    # ternary: lowest, right associative
    ("$a ? $b : $c ? $d : 1", Cond(a, b, Cond(c, d, I(1)))),
    ("$a || $b ? 1 : 2", Cond(B("||", a, b), I(1), I(2))),
    ("$a ? $b ? 1 : 2 : 3", Cond(a, Cond(b, I(1), I(2)), I(3))),
    # parentheses
    ("($a + $b) * $c", B("*", B("+", a, b), c)),
    ("$a - ($b - $c)", B("-", a, B("-", b, c))),
    # unary, casts, postfix
    ("*$a + 1", B("+", U("*", a), I(1))),
    ("-$a.0", U("-", FieldAccess(a, "0"))),
    ("(uint8)$a + 1", B("+", Cast(TypeName("uint8"), a), I(1))),
    ("(int64)-$a", Cast(TypeName("int64"), U("-", a))),
    ("$a++ + 1", B("+", IncDec(a, "++", False), I(1))),
    ("$a->b->c", FieldAccess(FieldAccess(a, "b", True), "c", True)),
    ("$a[1][2]", Index(Index(a, I(1)), I(2))),
    ("*$a[1]", U("*", Index(a, I(1)))),
    ("&$a", U("&", a)),
    ("+$a", U("+", a)),
]


@pytest.mark.parametrize("src, tree", PRECEDENCE, ids=[p[0] for p in PRECEDENCE])
def test_precedence_and_associativity(src, tree):
    assert expr(src) == tree


def test_casts():
    assert expr("(struct sock *)arg0") == Cast(TypeName("struct sock", 1), Builtin("arg0"))
    assert expr("(union bpf_attr **)$a") == Cast(TypeName("union bpf_attr", 2), a)
    assert expr("(enum tcp_state)$a") == Cast(TypeName("enum tcp_state"), a)
    assert expr("(pid_t)$a") == Cast(TypeName("pid_t"), a)  # `(name)` before an expression: a type
    assert expr("(pid_t *)$a") == Cast(TypeName("pid_t", 1), a)
    assert expr("(uint8[4])$a") == Cast(TypeName("uint8", 0, suffixes=("[4]",)), a)
    assert expr("(int32 *)0") == Cast(TypeName("int32", 1), I(0))
    assert expr("((struct task_struct *)curtask)->pid") == FieldAccess(
        Cast(TypeName("struct task_struct", 1), Builtin("curtask")), "pid", True)
    for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "bool"):
        assert expr(f"({t})1") == Cast(TypeName(t), I(1))


def test_a_parenthesised_identifier_is_not_a_cast():
    assert expr("(pid) + 1") == B("+", Builtin("pid"), I(1))
    assert expr("(uint8x)") == Identifier("uint8x")


def test_tuples_and_element_access():
    assert expr('(1, "a", (pid, 2))') == Tuple([I(1), S("a"), Tuple([Builtin("pid"), I(2)])])
    assert expr("$t.0") == FieldAccess(Var("$t"), "0")
    assert expr("$t.1.0") == FieldAccess(FieldAccess(Var("$t"), "1"), "0")
    assert expr("@t[1].2") == FieldAccess(Map("@t", [I(1)]), "2")
    assert expr("(1)") == I(1)  # not a tuple


def test_maps_with_keys():
    assert expr("@") == Map("@")
    assert expr("@x") == Map("@x")
    assert expr("@_1[pid]") == Map("@_1", [Builtin("pid")])
    assert expr('@x[1, "k", comm, $y + 1]') == Map("@x", [I(1), S("k"), Builtin("comm"), B("+", Var("$y"), I(1))])
    assert expr("@x[(1, 2)]") == Map("@x", [Tuple([I(1), I(2)])])


def test_positional_parameters():
    assert expr("$1 + $22") == B("+", Positional(1), Positional(22))
    assert expr("$#") == Positional(0, True)
    assert expr("$0") == Positional(0)


def test_builtins_and_identifiers():
    assert expr("arg0 + sarg3 + retval") == B("+", B("+", Builtin("arg0"), Builtin("sarg3")), Builtin("retval"))
    assert expr("args.filename") == FieldAccess(Builtin("args"), "filename")
    assert expr("args->filename") == FieldAccess(Builtin("args"), "filename", True)
    assert expr("nosuch") == Identifier("nosuch")
    assert expr("argx") == Identifier("argx")


def test_calls():
    assert expr("f()") == Call("f", [])
    assert expr('printf("%d %s", 1, comm)') == Call("printf", [S("%d %s"), I(1), Builtin("comm")])
    assert expr("kstack(perf, 3)") == Call("kstack", [Identifier("perf"), I(3)])
    assert expr("str(arg0, $n + 1)") == Call("str", [Builtin("arg0"), B("+", Var("$n"), I(1))])


# ---- lexical ------------------------------------------------------------------------------------

def test_comments_are_ignored():
    src = """
    // a line comment with { braces } and "quotes"
    BEGIN /* before the block */ {
        @x = 1; // trailing
        /* multi
           line */ @y = /* inside */ 2;
    }
    // at the end, without newline"""
    assert parse(src) == parse("BEGIN { @x = 1; @y = 2; }")


def test_include_lines_are_recorded_not_parsed():
    src = "#include <linux/sched.h>\n#include \"x.h\"\nBEGIN { @x = 1; }\n"
    prog = parse(src)
    assert prog.includes == ["linux/sched.h", "x.h"]
    assert prog.probes == parse("BEGIN { @x = 1; }").probes


@pytest.mark.parametrize("literal, value", [
    ("0", 0), ("42", 42), ("0x10", 16), ("0XfF", 255), ("0b101", 5), ("0B1", 1), ("010", 8),
    ("0777", 511), ("00", 0), ("1_000", 1000), ("1_000_000", 10 ** 6), ("1e3", 1000), ("5E2", 500),
    ("1e0", 1), ("18446744073709551615", 2 ** 64 - 1), ("1e19", 10 ** 19),
])
def test_integer_literals(literal, value):
    assert expr(literal) == I(value)


@pytest.mark.parametrize("literal, message", [
    ("0108", "invalid octal literal '0108'"),
    ("09", "invalid octal literal '09'"),
    ("1e20", "exponent will overflow integer range: 20"),
    ("1e999999999999", "exponent will overflow integer range: 999999999999"),
    ("9" * 5000, "integer literal does not fit in 64 bits"),
])
def test_invalid_integer_literals(literal, message):
    assert f"ERROR: {message}" in syntax_error(f"BEGIN {{ @ = {literal}; }}")


def test_negative_numbers_are_unary_minus():
    assert expr("-1") == U("-", I(1))
    assert expr("1-1") == B("-", I(1), I(1))


@pytest.mark.parametrize("src, value", [
    (r'"plain"', b"plain"),
    (r'""', b""),
    (r'"a\nb"', b"a\nb"),
    (r'"\t"', b"\t"),
    (r'"\r"', b"\r"),
    (r'"\\"', b"\\"),
    (r'"\""', b'"'),
    (r'"\x41\x4a\x4A"', b"AJJ"),
    (r'"\x4g"', b"\x04g"),  # one hex digit is enough, as in C
    (r'"\101\60"', b"A0"),
    (r'"\0"', b"\0"),
    (r'"a\0b"', b"a\0b"),
    (r'"\1234"', b"S4"),  # at most three octal digits
    (r'"\xff\x80"', b"\xff\x80"),
    ('"é"', "é".encode()),
    (r'"%d %s %%"', b"%d %s %%"),
    (r'"/* not a comment */ // nor this"', b"/* not a comment */ // nor this"),
])
def test_string_escapes(src, value):
    assert expr(src) == String(value)


@pytest.mark.parametrize("src, message", [
    (r'"\q"', r"invalid escape sequence '\q'"),
    (r'"\8"', r"invalid escape sequence '\8'"),
    (r'"\x"', r"invalid hex escape '\x' (needs hex digits)"),
    (r'"\xg"', r"invalid hex escape '\x' (needs hex digits)"),
    (r'"\400"', r"invalid octal escape '\400'"),
])
def test_rejected_escapes(src, message):
    assert f"ERROR: {message}" in syntax_error(f"BEGIN {{ @ = {src}; }}")


def test_strings_end_on_their_line():
    for src in ('BEGIN { @ = "a\\\nb"; }', 'BEGIN { @ = "a\nb"; }', 'BEGIN { @ = "abc'):
        assert "unterminated string" in syntax_error(src)


def test_words_out_of_place_are_identifiers():
    # lark's contextual lexer: where an expression is expected, a keyword or type name is just a
    # name, which the semantic pass then reports as an unknown builtin
    assert expr("if") == Identifier("if")
    assert expr("uint8") == Identifier("uint8")
    assert expr("uint8_t") == Identifier("uint8_t")
    assert expr("(uint8_t)$a") == Cast(TypeName("uint8_t"), Var("$a"))  # a typedef (BTF's)


def test_shebang_line_is_ignored():
    src = "#!/usr/bin/env bpftrace\n// comment\nBEGIN { @x = 1; }\n"
    assert parse(src) == parse("BEGIN { @x = 1; }")
    assert parse("BEGIN { }\n#!/x\nEND { }") == parse("BEGIN { } END { }")
    assert "unexpected character '#'" in syntax_error("BEGIN { @x = 1 #!/x\n}")
    assert "unexpected character '#'" in syntax_error("BEGIN { @x = 1 #define X 1\n}")


def test_positional_parameter_number_too_large():
    assert "positional parameter number too large" in syntax_error("BEGIN { @ = $" + "9" * 5000 + "; }")
    assert expr("$123456") == Positional(123456)


# ---- nesting: every pass is recursive, so depth is bounded with a clear error -----------------------

def test_deep_but_reasonable_programs_parse():
    assert expr("1" + " + 1" * 550).op == "+"
    assert expr("(" * 5000 + "1" + ")" * 5000) == I(1)  # parentheses add no depth
    stmts = body("if (1) { " * 190 + "@x = 1;" + " }" * 190)
    depth = 0
    while stmts and isinstance(stmts[0], If):
        depth += 1
        stmts = stmts[0].then.stmts
    assert depth == 190


@pytest.mark.parametrize("src, column", [
    ("BEGIN { @ = 1" + " + 1" * 700 + "; }", "stdin:1:437:"),
    ("BEGIN { " + "if (1) { " * 250 + "}" * 250 + " }", "stdin:1:1800-"),
    ("BEGIN { @ = " + "(" * 5000 + "1" + ", 1)" * 5000 + "; }", "stdin:1:"),
    ("BEGIN { @ = " + "!" * 100000 + "1; }", "stdin:1:"),
])
def test_too_deep_programs_are_rejected(src, column):
    out = syntax_error(src)
    assert out.startswith(column)
    assert "ERROR: the program is nested too deeply (more than 600 levels of expressions and blocks)" in out
