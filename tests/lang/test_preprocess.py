"""The preprocessor: #if/#ifdef/#define/#include before parsing, with every position kept."""

from __future__ import annotations

import pytest

from kubectl_pytrace.lang import CompileError, compile_program, parse
from kubectl_pytrace.lang.ast import Binop, Builtin, Call, ExprStmt, Identifier, Integer, String
from kubectl_pytrace.lang.env import Environment
from kubectl_pytrace.lang.parser import parse as parse_with
from .fakeenv import FakeEnv

# bpftrace's own tools (tcpconnect.bt) start like this
TOOL_PRELUDE = """\
#ifndef BPFTRACE_HAVE_BTF
#include <linux/socket.h>
#include <net/sock.h>
#else
#include <sys/socket.h>
#endif
"""


def printf_args(src, predefined=None):
    prog = parse_with(src, "stdin", predefined)
    (stmt,) = prog.probes[0].block.stmts
    assert isinstance(stmt, ExprStmt) and isinstance(stmt.expr, Call)
    return stmt.expr.args[1:]


def error_text(src, env=None):
    with pytest.raises(CompileError) as info:
        compile_program(src, env=env or FakeEnv())
    return str(info.value)


# ---- conditionals ------------------------------------------------------------------------------

def test_btf_branch_of_the_tools_prelude():
    with_btf = parse_with(TOOL_PRELUDE + "BEGIN { }", "stdin", {"BPFTRACE_HAVE_BTF": "1"})
    without = parse_with(TOOL_PRELUDE + "BEGIN { }", "stdin", {})
    assert with_btf.includes == ["sys/socket.h"]
    assert without.includes == ["linux/socket.h", "net/sock.h"]


def test_the_environment_decides_about_btf():
    class NoBTF(Environment):
        def predefined_macros(self):
            return {}

    # far from the node (Environment()), BTF is assumed: the node decides
    assert parse(TOOL_PRELUDE + "BEGIN { }").includes == ["sys/socket.h"]
    assert parse(TOOL_PRELUDE + "BEGIN { }", env=NoBTF()).includes == ["linux/socket.h", "net/sock.h"]


@pytest.mark.parametrize("cond, taken", [
    ("1", True), ("0", False), ("2 > 1 && 3", True), ("defined(X)", True), ("defined X", True),
    ("!defined(X)", False), ("defined(NOPE)", False), ("NOPE", False), ("X == 5", True),
    ("X * 2 - 10", False), ("(X << 2) == 20", True), ("X > 3 ? 1 : 0", True), ("-1 < 0", True),
    ("~0 == -1", True), ("10 / 3 == 3 && 10 % 3 == 1", True), ("-7 / 2 == -3", True),
    ("0x10 == 16 && 010 == 8 && 5UL == 5", True), ("Y", True), ("Y + Y == 12", True),
])
def test_if_expressions(cond, taken):
    src = f"#define X 5\n#define Y (X + 1)\n#if {cond}\n#include <yes.h>\n#endif\nBEGIN {{ }}"
    assert parse(src).includes == (["yes.h"] if taken else [])


def test_elif_else_chains_and_nesting():
    src = """\
#define LEVEL 2
#if LEVEL == 1
#include <one.h>
#elif LEVEL == 2
#include <two.h>
#  ifdef NOPE
#include <nope.h>
#  else
#include <two-b.h>
#  endif
#elif LEVEL == 2
#include <again.h>
#else
#include <other.h>
#endif
BEGIN { }"""
    assert parse(src).includes == ["two.h", "two-b.h"]


def test_skipped_branches_are_not_parsed():
    src = "#if 0\nthis is { not a program\n#unknown directive\n#if 1\n#endif\n#else\nBEGIN { }\n#endif\n"
    assert len(parse(src).probes) == 1


# ---- macros ------------------------------------------------------------------------------------

def test_macro_bodies_replace_identifiers():
    src = '#define N 5\n#define S "hi"\n#define E (N + 1)\n#define P pid\n#define L 10UL\n' \
          'BEGIN { printf("%d %s %d %d %d", N, S, E, P, L); }'
    assert printf_args(src) == [Integer(5), String(b"hi"), Binop("+", Integer(5), Integer(1)), Builtin("pid"),
                                Integer(10)]


def test_replacement_tokens_sit_where_the_name_was():
    src = "#define LONGER_NAME 5\nBEGIN { printf(\"%d\", LONGER_NAME); }"
    (arg,) = printf_args(src)
    assert src[arg.span.start:arg.span.end] == "LONGER_NAME"


def test_undef_and_redefinition_follow_the_source_order():
    src = "#define X 1\nBEGIN { printf(\"%d\", X); }\n#undef X\n#define X 2\nEND { printf(\"%d\", X); }"
    prog = parse(src)
    assert [p.block.stmts[0].expr.args[1] for p in prog.probes] == [Integer(1), Integer(2)]


def test_a_macro_never_expands_inside_itself():
    assert printf_args('#define A A\nBEGIN { printf("%d", A); }') == [Identifier("A")]
    assert printf_args('#define A B\n#define B A\nBEGIN { printf("%d", A); }') == [Identifier("A")]


def test_macros_named_like_identifiers_only():
    # a macro is replaced where its name is an identifier: not in strings, maps, variables or probes
    src = '#define x 7\nBEGIN { @x = 1; $x = 2; printf("x %d", x); }'
    stmts = parse(src).probes[0].block.stmts
    assert stmts[0].target.name == "@x" and stmts[1].target.name == "$x"
    assert stmts[2].expr.args == [String(b"x %d"), Integer(7)]


def test_macros_in_the_semantic_pass():
    c = compile_program('#define FLAGS 0x40\ntracepoint:syscalls:sys_enter_openat /args->flags & FLAGS/ '
                        '{ @[comm] = count(); }', env=FakeEnv())
    assert "0x40" not in c.c.text and "64LL" in c.c.text


def test_comments_and_continuations():
    src = """\
/* #include <commented.h>
#define C 1
*/
#define A 1 /* a comment */ + \\
          2 // the rest
BEGIN { printf("%d", A); }"""
    prog = parse_with(src, "stdin", {})
    assert prog.includes == []
    assert printf_args(src) == [Binop("+", Integer(1), Integer(2))]


def test_shebang_and_directives_before_it():
    src = "#!/usr/bin/env bpftrace\n#define X 1\nBEGIN { printf(\"%d\", X); }"
    assert printf_args(src) == [Integer(1)]


# ---- positions and errors -----------------------------------------------------------------------

def test_errors_after_directives_point_at_the_source_line():
    src = TOOL_PRELUDE + "BEGIN {\n\t@x = nosuch;\n}\n"
    assert error_text(src) == ("stdin:8:7-12: ERROR: unknown builtin 'nosuch'\n"
                               "\t@x = nosuch;\n"
                               "\t     ~~~~~~")


@pytest.mark.parametrize("src, message", [
    ("#if 1\nBEGIN { }", "stdin:1:1-3: ERROR: unterminated conditional directive (no #endif)"),
    ("#ifdef X\n#if 0\n#endif\nBEGIN { }", "stdin:1:1-6: ERROR: unterminated conditional directive (no #endif)"),
    ("#endif\nBEGIN { }", "stdin:1:1-6: ERROR: #endif without #if"),
    ("#else\nBEGIN { }", "stdin:1:1-5: ERROR: #else without #if"),
    ("#if 1\n#else\n#elif 1\n#endif\nBEGIN { }", "stdin:3:1-5: ERROR: #elif after #else"),
    ("BEGIN { }\n  #foo bar\n", "stdin:2:3-6: ERROR: unknown preprocessor directive '#foo'"),
    ("#error no BTF here\nBEGIN { }", "stdin:1:1-6: ERROR: #error no BTF here"),
    ("#define SQ(x) ((x)*(x))\nBEGIN { }",
     "stdin:1:9-10: ERROR: function-like macro 'SQ' is not supported (only #define NAME VALUE)"),
    ("#define C 'a'\nBEGIN { }", "stdin:1:11-13: ERROR: character constants are not supported: 'a'"),
    ("#define\nBEGIN { }", "stdin:1:1-7: ERROR: #define needs a macro name"),
    ("#include sys/socket.h\nBEGIN { }", "stdin:1:1-8: ERROR: #include expects <FILE> or \"FILE\""),
    ("#if 1 +\n#endif\nBEGIN { }", "stdin:1:1-7: ERROR: expected a value at the end of the expression"),
    ("#if 1 / 0\n#endif\nBEGIN { }", "stdin:1:7: ERROR: division by zero in '/'"),
    ("#ifdef\n#endif\nBEGIN { }", "stdin:1:1-6: ERROR: #ifdef needs a macro name"),
    ("#define X `\nBEGIN { }", "stdin:1:11: ERROR: unexpected character '`'"),
    ("#define X #\nBEGIN { }", "stdin:1:11: ERROR: unexpected character '#'"),
])
def test_directive_errors(src, message):
    assert error_text(src).split("\n")[0] == message


def test_error_renders_the_directive_line():
    assert error_text("BEGIN { }\n#bogus\n") == ("stdin:2:1-6: ERROR: unknown preprocessor directive '#bogus'\n"
                                                 "#bogus\n"
                                                 "~~~~~~")


def test_warning_directive_is_a_warning():
    c = compile_program("#warning check me\nBEGIN { }", env=FakeEnv())
    assert c.warnings.startswith("stdin:1:1-8: WARNING: #warning check me")


def test_macro_that_expands_to_something_unusable():
    assert "syntax error" in error_text('#define V 5 5\nBEGIN { printf("%d", V); }')
    assert "macro 'V' expands to more than" in error_text(
        "#define A B B B B B B B B B B\n#define B C C C C C C C C C C\n#define C D D D D D D D D D D\n"
        "#define D E E E E E E E E E E\n#define V A A A A A A A A A A\nBEGIN { printf(\"%d\", V); }")
