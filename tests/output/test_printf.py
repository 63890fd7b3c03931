"""lang/printf.py and output/printf.py: conversions, argument checks (messages as bpftrace 0.27 prints
them) and iostream formatting. Expected strings come from bpftrace 0.27 runs:
    bpftrace -e 'BEGIN { printf(FORMAT, VALUES...); exit(); }'
"""

from __future__ import annotations

import timeit

import pytest

from kubectl_pytrace.lang.printf import FormatError, check_args, parse_format
from kubectl_pytrace.output.printf import compile_format, format_values
from kubectl_pytrace.output.values import Buffer, pointer


def specs(fmt):
    return [s.specifier for s in parse_format(fmt).specs]


def test_conversions_are_what_bpftrace_finds():
    assert specs("%d %s %c %lld %hhx %zX %tp %jo %rx %rh %r %i %gr") == [
        "d", "s", "c", "d", "x", "X", "p", "o", "rx", "rh", "r", "i", "gr"]
    assert specs("%-5d %05d %.3s %-10.2lx %+d %#x % d %f %e %n") == [
        "d", "d", "s", "x", "d", "x", "d", "f", "e", "n"]
    # flags only in the order - + space # 0; "%%" is no argument; "%5", "%q", "a%" are text
    for fmt in ["%0-5d", "%--5d", "%q", "%5", "%", "%%", "%l|"]:
        assert specs(fmt) == [], fmt


def test_fragments():
    f = parse_format("a %d b\n")
    assert f.fragments == ("a ", " b\n")
    assert [(s.specifier, s.offset) for s in f.specs] == [("d", 2)]
    assert parse_format("x%%").fragments == ("x%",)
    assert parse_format("%%%d%%").fragments == ("%", "%")
    s = parse_format("%-08.3lx").specs[0]
    assert (s.left, s.zeros, s.width, s.length, s.specifier) == (True, True, 8, "l", "x")


I, S, B, N = ("integer", "int64"), ("other", "string[2]"), ("buffer", "buffer[2]"), ("none", "none")


@pytest.mark.parametrize(
    "fmt, types, message",
    [
        ("%d\n", [S], "unsupported format specifier for type 'string[2]': d"),
        ("%r\n", [I], "unsupported format specifier for type 'int64': r"),
        ("%rh\n", [S], "unsupported format specifier for type 'string[2]': rh"),
        ("%f\n", [I], "unsupported format specifier: f"),
        ("%n\n", [I], "unsupported format specifier: n"),
        ("%d %d\n", [I], "not enough arguments for format string (1 supplied, 2 expected)"),
        ("%d\n", [I, I], "too many arguments for format string (2 supplied, 1 expected)"),
        ("a%%d\n", [I], "too many arguments for format string (1 supplied, 0 expected)"),
        ("%d\n", [N], "unable to print none type for specifier: d"),
    ],
)
def test_check_args_messages(fmt, types, message):
    with pytest.raises(FormatError) as e:
        check_args(parse_format(fmt), types)
    assert e.value.message == message


def test_check_args_accepts():
    check_args(parse_format("%s %d %r %s %s %c %p %x"), [S, I, B, I, B, I, I, I])


FORMATS = [
    ('%d %ld %lld %u %x %lx|\n', [(1 << 40) + 5] * 6, '5 1099511627781 1099511627781 5 5 10000000005|\n'),
    ('%d %ld %u %lu %x %lx\n', [-1] * 6, '-1 -1 4294967295 18446744073709551615 ffffffff ffffffffffffffff\n'),
    ('%d %ld\n', [5000000000] * 2, '705032704 5000000000\n'),
    ('%hhd %hd %hhu %hu %hhx %hX\n', [300, 70000, -1, -1, -1, -1], '44 4464 255 65535 ff FFFF\n'),
    ('%jd %zd %td %ju %jx %tu\n', [-1] * 6, '-1 -1 -1 18446744073709551615 ffffffffffffffff 18446744073709551615\n'),
    ('[%c][%c][%c][%5c][%-3c]\n', [65, 321, 0x4142, 66, 67], '[A][A][B][    B][C  ]\n'),
    ('[%p][%p][%p][%lp][%20p][%-20p][%020p]\n', [0, 1, -1, 4096, 255, 255, 255], '[0][0x1][0xffffffffffffffff][0x1000][                0xff][0xff                ][00000000000000000xff]\n'),
    ('[%s][%10s][%-10s][%.2s][%5.1s][%-5.3s]\n', ["abc"] * 5 + ["abcdef"], '[abc][       abc][abc       ][abc][  abc][abcdef]\n'),
    ('[%5d][%-5d][%05d][%.3d][%8.3d][%-08d][%5x][%08X][%.0d]\n', [42, 42, 42, 7, 7, 42, 255, 255, 0], '[   42][42   ][00042][7][       7][42000000][   ff][000000FF][0]\n'),
    ('[%+d][%+d][%+5d][%+u][%#x][%#o][%#X][%#x][%#5x][%#05x]\n', [5, -5, 5, 5, 255, 8, 255, 0, 255, 255], '[+5][-5][   +5][5][0xff][010][0XFF][0][ 0xff][00xff]\n'),
    ('[%o][%lo][%hho][%i][%li]\n', [8, -1, -1, -3, -3], '[10][1777777777777777777777][377][-3][-3]\n'),
    ('[%s][%s][%s][%d][%s][%5s][%-8s]\n', [5, -5, True, True, (1, "a"), (1, "a"), (1, "a")], '[5][-5][true][1][(1, a)][    (1, a)][(       1, a)]\n'),
    ('[%05d][%-05d][% d][%s]\n', [-5, 5, 5, 200], '[000-5][50000][5][200]\n'),
    ('100%%\n', [], '100%\n'),
    ('%d%%|%%%d|%%d|[%-%]|a%|%5|%l|%q\n', [5, 6], '5%|%6|%d|[%]|a%|%5|%l|%q\n'),
    ('[%r][%rx][%rh][%5r][%-6rx]\n', [Buffer(b"a\\b\"c ~\x7f\x80\xff\x00z"), Buffer(b"AB"), Buffer(b"A\x00B"), Buffer(b"ab"), Buffer(b"a")], '[a\\b"c ~\\x7f\\x80\\xff\\x00z][\\x41\\x42][41 00 42][   ab][\\x61  ]\n'),
    ('[%3s][%-4s][%s]\n', ["\xe9"] * 3, '[ é][é  ][é]\n'),
    ('[%c]|%c|\n', [0, 200], '[\x00]|\udcc8|\n'),
]


@pytest.mark.parametrize("fmt, values, expected", FORMATS)
def test_format_values(fmt, values, expected):
    assert format_values(parse_format(fmt), values) == expected
    assert compile_format(fmt)(values) == expected


def test_python_expression_matches():
    f = compile_format("a %d %s %5s %x %u\n")
    expr, env = f.python_expression(["a0", "a1", "a2", "a3", "a4"], ["int", "str", "str", "int", "int"])
    env.update(a0=-1, a1="x", a2="y", a3=255, a4=-1)
    assert eval(expr, env) == f([-1, "x", "y", 255, -1]) == "a -1 x     y ff 4294967295\n"


def test_pointers_and_stacks_as_values():
    assert compile_format("%s %d %p|\n")([pointer(255), pointer(255), pointer(255)]) == "0xff 255 0xff|\n"
    assert compile_format("%s|\n")(["\n        work+0\n"]) == "\n        work+0\n|\n"
    assert compile_format("[%d]\n")([(1, 2)]) == "[!{invalid integer conversion: (1, 2)}]\n"


def test_value_count_checked():
    with pytest.raises(ValueError):
        compile_format("%d")([])


def test_fast_enough():
    f = compile_format("pid %d comm %s ret %ld x %x\n")
    expr, env = f.python_expression(["a", "b", "c", "d"], ["int", "str", "int", "int"])
    code = compile(expr, "<printf>", "eval")
    env.update(a=1234, b="bash", c=-5, d=255)
    n = 20000
    t = timeit.timeit(lambda: eval(code, env), number=n) / n
    # ~1 us here; the runtime wants ~300k events/s
    assert t < 5e-6, t
