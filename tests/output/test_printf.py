"""lang/printf.py and output/printf.py: tokens, argument checks (messages as bpftrace 0.17 prints them) and C
formatting. Expected strings come from bpftrace 0.17 runs; the program is in each comment."""

from __future__ import annotations

import timeit

import pytest

from kubectl_pytrace.lang.printf import (
    Conversion,
    FormatError,
    Literal,
    check_args,
    conversions,
    parse_format,
)
from kubectl_pytrace.output.printf import compile_format, format_values
from kubectl_pytrace.output.values import Buffer, Stack


def specs(fmt):
    return [c.spec for c in conversions(parse_format(fmt))]


def test_tokens_are_what_bpftrace_counts():
    assert specs("%d %s %c %lld %hhx %zX %tp %jo %rx %rh %r") == [
        "d", "s", "c", "lld", "hhx", "zX", "tp", "jo", "rx", "rh", "r"]
    assert specs("%-5d %05d %.3s %-10.2lx") == ["d", "d", "s", "lx"]
    # not tokens in bpftrace 0.17: %i, flags other than '-', '*', %e, %ls, %hc, %.d, "%0-5d"
    for fmt in ["%i", "%+d", "% d", "%#x", "%*d", "%.*d", "%e", "%ls", "%lc", "%hc", "%hs",
                "%.d", "%0-5d", "%--5d", "%q", "%5", "%"]:
        assert specs(fmt) == [], fmt
    # "%%d" still counts as a token (bpftrace's regex finds "%d"), "%+d %d" counts one
    assert specs("%%d") == ["d"]
    assert specs("%+d %d") == ["d"]


def test_segments():
    assert parse_format("a %d b\n") == [
        Literal("a "),
        Conversion(token="%d", spec="d", offset=2, kind="int", conv="d"),
        Literal(" b\n"),
    ]
    # text after the last token is raw: "%%" stays
    assert parse_format("x%%") == [Literal("x%%")]
    assert parse_format("%%%d%%") == [
        Literal("%"), Conversion(token="%d", spec="d", offset=2, kind="int", conv="d"),
        Literal("%%")]
    c = conversions(parse_format("%-08.3lx"))[0]
    assert (c.flags, c.width, c.precision, c.length, c.conv, c.kind) == ("-0", 8, 3, "l", "x", "int")
    assert conversions(parse_format("%%d"))[0].conv is None  # argument not printed
    assert [s.undefined for s in parse_format("%+d %d") if isinstance(s, Literal)] == [False, True]


@pytest.mark.parametrize(
    "fmt, types, message",
    [
        # bpftrace -e 'BEGIN { printf("%d\n", "a"); }'
        ("%d\n", ["string"], "printf: %d specifier expects a value of type integer (string supplied)"),
        ("%s\n", ["integer"], "printf: %s specifier expects a value of type string (integer supplied)"),
        ("%s %d\n", ["integer", "integer"],
         "printf: %s specifier expects a value of type string (integer supplied)"),
        ("%r\n", ["string"], "printf: %r specifier expects a value of type buffer (string supplied)"),
        ("%rx\n", ["integer"], "printf: %rx specifier expects a value of type buffer (integer supplied)"),
        ("%s\n", ["buffer"], "printf: %s specifier expects a value of type string (buffer supplied)"),
        ("%d\n", ["tuple"], "printf: %d specifier expects a value of type integer (tuple supplied)"),
        ("%d\n", ["count"], "printf: %d specifier expects a value of type integer (count supplied)"),
        ("%d\n", ["hist"], "printf: %d specifier expects a value of type integer (hist supplied)"),
        ("%d\n", ["kstack"], "printf: %d specifier expects a value of type integer (string supplied)"),
        ("%x\n", ["ksym"], "printf: %x specifier expects a value of type integer (string supplied)"),
        ("%s\n", ["pointer"], "printf: %s specifier expects a value of type string (integer supplied)"),
        ("%%d\n", [], "printf: Not enough arguments for format string (0 supplied, 1 expected)"),
        ("%%d %d\n", ["integer"], "printf: Not enough arguments for format string (1 supplied, 2 expected)"),
        ("%d %d\n", ["integer"], "printf: Not enough arguments for format string (1 supplied, 2 expected)"),
        ("%+d\n", ["integer"], "printf: Too many arguments for format string (1 supplied, 0 expected)"),
        ("%i\n", ["integer"], "printf: Too many arguments for format string (1 supplied, 0 expected)"),
        ("%*d\n", ["integer", "integer"], "printf: Too many arguments for format string (2 supplied, 0 expected)"),
        ("%d %ld %lld %u %x %lx %i|\n", ["integer"] * 7,
         "printf: Too many arguments for format string (7 supplied, 6 expected)"),
    ],
)
def test_check_args_messages(fmt, types, message):
    with pytest.raises(FormatError) as e:
        check_args(parse_format(fmt), types)
    assert e.value.message == message


def test_check_args_func_name_and_ok():
    # bpftrace --unsafe -e 'BEGIN { system("echo %d"); }'
    with pytest.raises(FormatError, match=r"^system: Not enough arguments for format string \(0 supplied, 1 expected\)$"):
        check_args(parse_format("echo %d"), [], func="system")
    with pytest.raises(FormatError, match=r"^cat: %s specifier expects"):
        check_args(parse_format("/tmp/%s"), ["integer"], func="cat")
    check_args(parse_format("%s %d %r %s %s"), ["string", "integer", "buffer", "ustack", "usym"])
    check_args(parse_format("%d %p"), ["pointer", "integer"])
    e = pytest.raises(FormatError, check_args, parse_format("ab %d %s"), ["integer", "integer"])
    assert e.value.offset == 6


# Each row: format, values, bpftrace's output (captured with
#   bpftrace -e 'BEGIN { printf(FORMAT, VALUES...); exit(); }')
FORMATS = [
    ("%d %ld %lld %u %x %lx|\n", [(1 << 40) + 5] * 6, "5 1099511627781 1099511627781 5 5 10000000005|\n"),
    ("%d %ld %u %lu %x %lx\n", [-1] * 6, "-1 -1 4294967295 18446744073709551615 ffffffff ffffffffffffffff\n"),
    ("%d %ld\n", [5000000000] * 2, "705032704 5000000000\n"),
    ("%hhd %hd %hhu %hu %hhx %hX\n", [300, 70000, -1, -1, -1, -1], "44 4464 255 65535 ff FFFF\n"),
    ("%jd %zd %td %ju %jx\n", [-1] * 5, "-1 -1 -1 18446744073709551615 ffffffffffffffff\n"),
    ("[%c][%c][%c][%5c][%-3c]\n", [65, 321, 0x4142, 66, 67], "[A][A][B][    B][C  ]\n"),
    ("[%p][%p][%p][%lp][%20p][%-20p]\n", [0, 1, -1, 4096, 255, 255],
     "[(nil)][0x1][0xffffffffffffffff][0x1000][                0xff][0xff                ]\n"),
    ("[%s][%10s][%-10s][%.2s][%5.1s][%-5.3s]\n", ["abc"] * 5 + ["abcdef"],
     "[abc][       abc][abc       ][ab][    a][abc  ]\n"),
    ("[%5d][%-5d][%05d][%.3d][%8.3d][%-08d][%5x][%08X][%.0d]\n", [42, 42, 42, 7, 7, 42, 255, 255, 0],
     "[   42][42   ][00042][007][     007][42      ][   ff][000000FF][]\n"),
    ("100%%\n", [], "100%%\n"),
    ("%d%%\n", [5], "5%%\n"),
    ("%%%d\n", [5], "%5\n"),
    ("%%d\n", [5], "%d\n"),
    ("[%-%d]\n", [5], "[%d]\n"),
    ("a%\n", [], "a%\n"),
    ("[%.d]\n", [], "[%.d]\n"),
    ("[%-05d]\n", [5], "[5    ]\n"),
    ("[%5.2d]\n", [5], "[   05]\n"),
    ("[%.10s][%0s][%05s]\n", ["abc"] * 3, "[abc][abc][  abc]\n"),
    ("[%05c]\n", [65], "[    A]\n"),
    ("[%05p][%.5p][%.5x][%0.5x]\n", [5] * 4, "[0x005][0x00005][00005][00005]\n"),
    ("[%c]\n", [0], "[]\n"),
    ("[%o][%lo][%hho]\n", [8, -1, -1], "[10][1777777777777777777777][377]\n"),
    ("[%r][%rx][%rh][%5r]\n", [Buffer(b'a\\b"c ~\x7f\x80\xff\x00z'), Buffer(b"AB"), Buffer(b"A\x00B"), Buffer(b"ab")],
     '[a\\b"c ~\\x7f\\x80\\xff\\x00z][\\x41\\x42][41 00 42][%5r]\n'),
    ("[%.1s][%3s][%-4s]\n", ["\xe9"] * 3, "[\udcc3][ \xe9][\xe9  ]\n"),  # widths count bytes
]


@pytest.mark.parametrize("fmt, values, expected", FORMATS)
def test_format_values(fmt, values, expected):
    assert format_values(parse_format(fmt), values) == expected
    assert compile_format(fmt)(values) == expected


def test_stack_as_string():
    # printf("%s|\n", ustack) in a uprobe: "\n" + frames indented by 8 spaces
    s = Stack(("work+0", "main+52"))
    assert compile_format("%s|\n")([s]) == "\n        work+0\n        main+52\n|\n"
    p = Stack(("5648ba1c7149 work+0 (/tmp/calls)",), perf=True)
    assert compile_format("%s|\n")([p]) == "\n\t5648ba1c7149 work+0 (/tmp/calls)\n|\n"


def test_value_count_checked():
    with pytest.raises(ValueError):
        compile_format("%d")([])


def test_fast_enough():
    f = compile_format("pid %d comm %s ret %ld x %x\n")
    n = 20000
    t = timeit.timeit(lambda: f([1234, "bash", -5, 255]), number=n) / n
    # ~1 us here; the runtime wants ~300k events/s
    assert t < 5e-6, t
