"""The exact text of diagnostics: `file:line:col-endcol: ERROR: message`, the source line and a
`~` underline (columns 1-based, end column inclusive), as bpftrace prints them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kubectl_pytrace.lang import CompileError, compile_program
from kubectl_pytrace.lang.diagnostics import Diagnostic, Diagnostics, Source, Span

from .fakeenv import FakeEnv


def errors(src, filename="stdin", env=None, **kw) -> str:
    with pytest.raises(CompileError) as info:
        compile_program(src, filename, env=env, **kw)
    return str(info.value)


def lines(*ls) -> str:
    return "\n".join(ls)


# ---- rendering ----------------------------------------------------------------------------------

def test_unknown_builtin_exact_text():
    assert errors('BEGIN { printf("%d\\n", nosuchbi); }') == lines(
        "stdin:1:24-31: ERROR: unknown builtin 'nosuchbi'",
        'BEGIN { printf("%d\\n", nosuchbi); }',
        "                       ~~~~~~~~",
    )


def test_one_character_span_has_no_end_column():
    assert errors("BEGIN { @x = 1 }}") == lines(
        "stdin:1:17: ERROR: syntax error, unexpected '}'",
        "BEGIN { @x = 1 }}",
        "                ~",
    )


def test_render_of_spans_directly():
    src = Source("ab\ncdef\n", "f.bt")
    assert Diagnostic("m", Span(3, 7)).render(src) == lines("f.bt:2:1-4: ERROR: m", "cdef", "~~~~")
    assert Diagnostic("m", Span(4, 5)).render(src) == lines("f.bt:2:2: ERROR: m", "cdef", " ~")
    # an empty span still underlines one character
    assert Diagnostic("m", Span(1, 1)).render(src) == lines("f.bt:1:2: ERROR: m", "ab", " ~")
    # a span over several lines underlines the rest of its first line
    assert Diagnostic("m", Span(1, 6)).render(src) == lines("f.bt:1:2: ERROR: m", "ab", " ~")
    assert Diagnostic("m", Span(0, 6), "WARNING", "try this").render(src) == lines(
        "f.bt:1:1-2: WARNING: m", "ab", "~~", "HINT: try this")


def test_same_diagnostic_is_reported_once():
    d = Diagnostics(Source("x"))
    d.error("m", Span(0, 1))
    d.error("m", Span(0, 1))
    d.warning("m", Span(0, 1))
    assert len(d.items) == 2 and d.has_errors() and len(d.errors) == 1


# ---- syntax errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("src, expected", [
    ("BEGIN { @x = 1 @y = 2; }", [
        "stdin:1:16-17: ERROR: syntax error, unexpected '@y'",
        "BEGIN { @x = 1 @y = 2; }",
        "               ~~"]),
    ("BEGIN { @x = 1", [
        "stdin:1:14: ERROR: syntax error, unexpected end of file",
        "BEGIN { @x = 1",
        "             ~"]),
    ("BEGIN { @x = 1; }\nEND\n\n", [
        "stdin:2:3: ERROR: syntax error, unexpected end of file",
        "END",
        "  ~"]),
    ("", [
        "stdin:1:1: ERROR: syntax error, unexpected end of file",
        "",
        "~"]),
    ('BEGIN { @x = "abc; }', [
        "stdin:1:14-20: ERROR: unterminated string (strings end on the same line, backslash-newline "
        "is not allowed)",
        'BEGIN { @x = "abc; }',
        "             ~~~~~~~"]),
    ('BEGIN { @x = "a\\\nb"; }', [
        "stdin:1:14-16: ERROR: unterminated string (strings end on the same line, backslash-newline "
        "is not allowed)",
        'BEGIN { @x = "a\\',
        "             ~~~"]),
    ("BEGIN { @x = 1 \\ 2; }", [
        "stdin:1:16: ERROR: syntax error, unexpected '\\' (backslash outside a string)",
        "BEGIN { @x = 1 \\ 2; }",
        "               ~"]),
    ("BEGIN { @x = `; }", [
        "stdin:1:14: ERROR: syntax error, unexpected character '`'",
        "BEGIN { @x = `; }",
        "             ~"]),
    ('BEGIN { @x = "\\q"; }', [
        "stdin:1:15-16: ERROR: invalid escape sequence '\\q'",
        'BEGIN { @x = "\\q"; }',
        "              ~~"]),
    ("BEGIN { @x = 0108; }", [
        "stdin:1:14-17: ERROR: invalid octal literal '0108'",
        "BEGIN { @x = 0108; }",
        "             ~~~~"]),
    ("BEGIN { if (1) { } else }", [
        "stdin:1:25: ERROR: syntax error, unexpected '}'",
        "BEGIN { if (1) { } else }",
        "                        ~"]),
])
def test_syntax_errors(src, expected):
    assert errors(src) == lines(*expected)


# ---- several errors of one pass ---------------------------------------------------------------------

def test_semantic_errors_are_reported_together_in_source_order():
    src = "BEGIN { @x = nosuch; $y = 1 + \"a\"; print($z); @x = 1; }"
    assert errors(src) == lines(
        "stdin:1:14-19: ERROR: unknown builtin 'nosuch'",
        src,
        "             ~~~~~~",
        "stdin:1:27-33: ERROR: type mismatch for '+': comparing 'int64' with 'string[2]'",
        src,
        "                          ~~~~~~~",
        "stdin:1:42-43: ERROR: Undefined or undeclared variable: $z",
        src,
        "                                         ~~",
    )


def test_expansion_errors_are_reported_together_and_stop_before_types():
    src = "foo:bar { @x = nosuch; }\nprofile:ms { }\nBEGIN { }"
    assert errors(src) == lines(
        "stdin:1:1-7: ERROR: foo:bar: unknown probe type 'foo'",
        "foo:bar { @x = nosuch; }",
        "~~~~~~~",
        "stdin:2:1-10: ERROR: profile:ms: profile probe takes a unit and a rate: profile:s:1, "
        "profile:ms:100 or profile:hz:99",
        "profile:ms { }",
        "~~~~~~~~~~",
    )


def test_one_body_for_several_attach_points_reports_once():
    src = "uprobe:/bin/x:foo, uprobe:/bin/x:main { @x = retval; }"
    assert errors(src, env=FakeEnv()).count("ERROR") == 1


def test_several_begin_probes_are_allowed():
    compile_program("BEGIN { }\nBEGIN { }\nbegin { }")


# ---- multi-line programs, file names, tabs ----------------------------------------------------------

PROG = textwrap.dedent("""\
    #!/usr/bin/env bpftrace
    // count opens
    tracepoint:syscalls:sys_enter_openat
    {
        @opens[comm] = count();
        printf("%s %d\\n", comm, args.nosuch);
    }
    """)


def test_multi_line_program_with_a_file_name_and_a_hint():
    assert errors(PROG, "/home/me/opens.bt", env=FakeEnv()) == lines(
        "/home/me/opens.bt:6:29-39: ERROR: tracepoint syscalls:sys_enter_openat has no field 'nosuch'",
        '    printf("%s %d\\n", comm, args.nosuch);',
        "                            ~~~~~~~~~~~",
        "HINT: its fields are: __syscall_nr, dfd, filename, flags, mode",
    )


def test_tabs_in_the_source_line_are_kept_in_the_underline():
    src = "BEGIN {\n\tif (1) {\n\t\t@x = 1 + comm;\n\t}\n}"
    assert errors(src, "t.bt") == lines(
        "t.bt:3:8-15: ERROR: type mismatch for '+': comparing 'int64' with 'string[16]'",
        "\t\t@x = 1 + comm;",
        "\t\t     ~~~~~~~~",
    )


def test_a_span_over_several_lines_underlines_its_first_line():
    src = 'BEGIN {\n  printf("%d\\n",\n         "s");\n}'
    assert errors(src) == lines(
        "stdin:2:3-16: ERROR: unsupported format specifier for type 'string[2]': d",
        '  printf("%d\\n",',
        "  ~~~~~~~~~~~~~~",
    )


def test_crlf_line_endings():
    src = "BEGIN {\r\n  @x = nosuch;\r\n}\r\n"
    out = errors(src)
    assert out.split("\n")[0] == "stdin:2:8-13: ERROR: unknown builtin 'nosuch'"
    assert out.split("\n")[2] == "       ~~~~~~"


def test_cli_shows_the_file_name_and_exits_non_zero(tmp_path):
    # --dump ast: only the parser runs, so this needs neither root nor tracefs
    prog = tmp_path / "bad.bt"
    prog.write_text("#!/usr/bin/env bpftrace\nBEGIN {\n\t@x = 1 +;\n}\n")
    res = subprocess.run([sys.executable, "-m", "kubectl_pytrace", "run", "--local", "--dump", "ast", "-f", str(prog)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert lines(f"{prog}:3:10: ERROR: syntax error, unexpected ';'", "\t@x = 1 +;", "\t        ~") in res.stderr
    assert "Traceback" not in res.stderr
