"""Golden cases for the output layer: each case is a bpftrace 0.17 program and the calls our
Output must receive to print the same thing. The expected stdout of every program (without the
"Attaching N probes..." line) is stored in golden_bpftrace.json, captured from /usr/bin/bpftrace
by ``python -m tests.output.capture`` and re-checked against bpftrace by test_golden.py when it is
installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List

from kubectl_pytrace.output.printf import compile_format
from kubectl_pytrace.output.printer import Output
from kubectl_pytrace.output.values import Buffer, MapDump, pointer as Pointer
Unquoted = str


@dataclass
class Case:
    name: str
    program: str
    render: Callable[[Output], None]
    json: bool = True  # also compare bpftrace -f json
    unsafe: bool = False


def hist_index(v: int, k: int = 0) -> int:
    """bpftrace 0.27's hist bucket (lang/codegen.py's pytrace_log2_bucket)."""
    if v < 0:
        return 0
    mask = (1 << k) - 1
    if v <= mask:
        return v + 1
    lead = v.bit_length() - 1 - k
    return ((lead + 1) << k) + ((v >> lead) & mask) + 1


def hist_of(*values: int) -> dict:
    d: dict = {}
    for v in values:
        i = hist_index(v)
        d[i] = d.get(i, 0) + 1
    return d


def lhist_of(lmin: int, lmax: int, step: int, *values: int) -> dict:
    d: dict = {}
    for v in values:
        if v < lmin:
            i = 0
        elif v >= lmax:
            i = (lmax - lmin) // step + 1
        else:
            i = (v - lmin) // step + 1
        d[i] = d.get(i, 0) + 1
    return d


def M(name, kind, entries, **kw) -> MapDump:
    return MapDump(name, kind, entries, **kw)


def pf(fmt: str, *args):
    f = compile_format(fmt)
    return lambda o: o.printf(f(list(args)))


def seq(*fns):
    def run(o):
        for f in fns:
            f(o)

    return run


def exit_with(*dumps):
    return lambda o: o.exit_dump(list(dumps))


CASES: List[Case] = []


def case(name, program, *fns, **kw):
    CASES.append(Case(name, program, seq(*fns), **kw))


# ------------------------------------------------------------------ exit dump basics
case("exit_no_maps", 'BEGIN { printf("x\\n"); exit(); }', pf("x\n"), exit_with())
case(
    "scalar_and_keyed",
    'BEGIN { printf("hello %d\\n", 5); @a = count(); @b[1,"x"] = sum(5); exit(); }',
    pf("hello %d\n", 5),
    exit_with(M("@a", "count", [((), 1)]), M("@b", "sum", [((1, "x"), 5)])),
)
case(
    "map_name_order",
    "BEGIN { @b=1; @=2; @_x=3; @A=4; @a1=5; @a_=6; @Z=7; @a=8; @aa=9; exit(); }",
    exit_with(
        *[
            M(n, "value", [((), v)])
            for n, v in [("@b", 1), ("@", 2), ("@_x", 3), ("@A", 4), ("@a1", 5), ("@a_", 6),
                         ("@Z", 7), ("@a", 8), ("@aa", 9)]
        ]
    ),
)
case(
    "int_signedness",
    "BEGIN { @a[(uint64)-1]=1; @b[(uint32)-1]=2; @c[(int32)-1]=3; @d[(int8)-1]=4; "
    "@e[(uint8)255]=5; @f[-5]=6; @h=(uint64)-1; @i=-1; @j=(uint32)-1; exit(); }",
    exit_with(
        M("@a", "value", [(((1 << 64) - 1,), 1)]),
        M("@b", "value", [((4294967295,), 2)]),
        M("@c", "value", [((-1,), 3)]),
        M("@d", "value", [((-1,), 4)]),
        M("@e", "value", [((255,), 5)]),
        M("@f", "value", [((-5,), 6)]),
        M("@h", "value", [((), (1 << 64) - 1)]),
        M("@i", "value", [((), -1)]),
        M("@j", "value", [((), 4294967295)]),
    ),
)
case(
    "sort_by_value_signed",
    "BEGIN { @b[1]=sum(-5); @b[2]=sum(5); @b[3]=sum(0); "
    "@d[1]=(uint64)200; @d[2]=(uint64)3; @e[1]=(int64)-1; @e[2]=(int64)3; @e[3]=(int64)-7; exit(); }",
    exit_with(
        M("@b", "sum", [((1,), -5), ((2,), 5), ((3,), 0)]),
        M("@d", "value", [((1,), 200), ((2,), 3)]),
        M("@e", "value", [((1,), -1), ((2,), 3), ((3,), -7)]),
    ),
)
case(
    "count_keyed",
    "BEGIN { @c[1]=count(); @c[1]=count(); @c[1]=count(); @c[2]=count(); @c[3]=count(); "
    "@c[3]=count(); @n=count(); exit(); }",
    exit_with(M("@c", "count", [((1,), 3), ((2,), 1), ((3,), 2)]), M("@n", "count", [((), 1)])),
)
case(
    "min_max",
    "BEGIN { @a=min(5); @b=min(-5); @f[1]=min(10); @f[2]=min(-10); @f[3]=min(3); "
    "@g[2]=max(7); @g[3]=max(0); @e=max(5000000000); exit(); }",
    exit_with(
        M("@a", "min", [((), 5)]),
        M("@b", "min", [((), -5)]),
        M("@e", "max", [((), 5000000000)]),
        M("@f", "min", [((1,), 10), ((2,), -10), ((3,), 3)]),
        M("@g", "max", [((2,), 7), ((3,), 0)]),
    ),
)
case(
    "avg_stats",
    "BEGIN { @a=avg(-3); @a=avg(-4); @s=stats(-3); @s=stats(-4); @b[1]=avg(5); @b[2]=avg(-5); "
    "@b[3]=avg(1); @t[5]=stats(4); @t[6]=stats(10); @t[6]=stats(20); exit(); }",
    exit_with(
        M("@a", "avg", [((), (2, -7))]),
        M("@b", "avg", [((1,), (1, 5)), ((2,), (1, -5)), ((3,), (1, 1))]),
        M("@s", "stats", [((), (2, -7))]),
        M("@t", "stats", [((5,), (1, 4)), ((6,), (2, 30))]),
    ),
)
case(
    "string_keys_and_values",
    'BEGIN { @s[3]="c"; @s[1]="z"; @s[2]="a"; @s[-1]="m"; @t["b"]="x"; @t["a"]="y"; '
    '@t["ab"]="w"; @t[""]="e"; exit(); }',
    exit_with(
        M("@s", "value", [((3,), "c"), ((1,), "z"), ((2,), "a"), ((-1,), "m")]),
        M("@t", "value", [(("b",), "x"), (("a",), "y"), (("ab",), "w"), (("",), "e")]),
    ),
)
case(
    "multi_keys_tuples",
    'BEGIN { @m[2,"a"]="1"; @m[1,"b"]="2"; @m[1,"a"]="3"; @m[2,"b"]="4"; @m[10,"a"]="5"; '
    '@n["b",2]=(1,"x"); @n["a",3]=(2,"y"); @n["a",1]=(-3,"z"); @t=(1,"two",-3); exit(); }',
    exit_with(
        M("@m", "value", [((2, "a"), "1"), ((1, "b"), "2"), ((1, "a"), "3"), ((2, "b"), "4"),
                          ((10, "a"), "5")]),
        M("@n", "value", [(("b", 2), (1, "x")), (("a", 3), (2, "y")), (("a", 1), (-3, "z"))]),
        M("@t", "value", [((), (1, "two", -3))]),
    ),
)
case(
    "empty_and_cleared_maps",
    "BEGIN { @a=1; @b[1]=2; clear(@b); @d=hist(1); clear(@d); @e=stats(1); clear(@e); "
    "@f[1]=avg(1); clear(@f); @g[1] = 1; delete(@g[1]); if (0) { @h = 1; @i[1]=lhist(1,0,10,1); } "
    "exit(); }",
    exit_with(
        M("@a", "value", [((), 1)]),
        M("@b", "value", []),
        M("@d", "hist", []),
        M("@e", "stats", []),
        M("@f", "avg", []),
        M("@g", "value", []),
        M("@h", "value", []),
        M("@i", "lhist", [], lhist=(0, 10, 1)),
    ),
)
case(
    "zeroed_maps",
    "BEGIN { @b = sum(3); zero(@b); @c=max(3); zero(@c); @e=hist(3); zero(@e); "
    "@f = stats(10); zero(@f); @g[1]=lhist(5,0,10,1); zero(@g); exit(); }",
    exit_with(
        M("@b", "sum", [((), 0)]),
        M("@c", "max", [((), 0)]),
        M("@e", "hist", [((), {hist_index(3): 0})]),
        M("@f", "stats", [((), (0, 0))]),
        M("@g", "lhist", [((1,), {6: 0})], lhist=(0, 10, 1)),
    ),
)
case(
    "pointer_and_special_values",
    "BEGIN { @p = (int8*)1234; @q[(int8*)5]=1; @e = strerror(2); @i = ntop(0x0100007f); "
    "@pr = probe; @t=(1, strerror(1), probe); exit(); }",
    exit_with(
        M("@e", "value", [((), Unquoted("No such file or directory"))]),
        M("@i", "value", [((), "127.0.0.1")]),
        M("@p", "value", [((), Pointer(1234))]),
        M("@pr", "value", [((), "begin")]),
        M("@q", "value", [((Pointer(5),), 1)]),
        M("@t", "value", [((), (1, Unquoted("Operation not permitted"), "begin"))]),
    ),
)
case(
    "ksym_inet_values_no_delimiter",
    "BEGIN { @k[1] = ksym(0); @k[2] = ksym(1); @i[1] = ntop(0x0100007f); "
    "@i[2] = ntop(0x0200007f); @s = ksym(0); @t[1] = (1, ntop(0x0100007f)); exit(); }",
    exit_with(
        M("@i", "value", [((1,), "127.0.0.1"), ((2,), "127.0.0.2")], value_type="inet"),
        M("@k", "value", [((1,), "0"), ((2,), "0x1")], value_type="ksym"),
        M("@s", "value", [((), "0")], value_type="ksym"),
        M("@t", "value", [((1,), (1, "127.0.0.1"))]),
    ),
)
case(
    "buffers",
    'BEGIN { @b = buf("x\\ty", 3); @k[buf("k\\n", 2)] = 1; print(buf("a\\x01b", 3)); exit(); }',
    lambda o: o.print_value(Buffer(b"a\x01b")),
    exit_with(M("@b", "value", [((), Buffer(b"x\ty"))]), M("@k", "value", [((Buffer(b"k\n"),), 1)])),
)

# ------------------------------------------------------------------ hist / lhist
_HIST_VALUES = [0, 1, 1, 2, 3, -1, -100, 1024, 2047, 1048576, 1073741824, 1099511627776,
                0x7FFFFFFFFFFFFFFF]
case(
    "hist_all_ranges",
    "BEGIN { " + " ".join("@h=hist(%d);" % v for v in _HIST_VALUES) + " exit(); }",
    exit_with(M("@h", "hist", [((), hist_of(*_HIST_VALUES))])),
)
case(
    "hist_keyed_sorted_by_total_ties_memcmp",
    "BEGIN { @h[1]=hist(1); @h[256]=hist(1); @h[2]=hist(1); @h[3]=hist(5); @h[3]=hist(5); "
    "@s[1]=stats(5); @s[256]=stats(6); @s[2]=stats(4); @s[512]=stats(1); exit(); }",
    exit_with(
        M("@h", "hist", [((1,), hist_of(1)), ((256,), hist_of(1)), ((2,), hist_of(1)),
                         ((3,), hist_of(5, 5))]),
        M("@s", "stats", [((1,), (1, 5)), ((256,), (1, 6)), ((2,), (1, 4)), ((512,), (1, 1))]),
    ),
)
case(
    "hist_string_keys",
    'BEGIN { @h["b"]=hist(10); @h["a"]=hist(100); @h["a"]=hist(1000); @h["c"]=hist(-5); '
    "@h[\"c\"]=hist(0); @h[\"c\"]=hist(7); exit(); }",
    exit_with(
        M("@h", "hist", [(("b",), hist_of(10)), (("a",), hist_of(100, 1000)),
                         (("c",), hist_of(-5, 0, 7))])
    ),
)
_LH = [5, -5, 500, 55, 15, 15]
case(
    "lhist_under_over",
    "BEGIN { " + " ".join("@l=lhist(%d,0,100,10);" % v for v in _LH)
    + " @lk[1]=lhist(55,0,100,10); exit(); }",
    exit_with(
        M("@l", "lhist", [((), lhist_of(0, 100, 10, *_LH))], lhist=(0, 100, 10)),
        M("@lk", "lhist", [((1,), lhist_of(0, 100, 10, 55))], lhist=(0, 100, 10)),
    ),
)
case(
    "lhist_k_m_labels",
    "BEGIN { @a=lhist(0,0,4096,1024); @a=lhist(3000,0,4096,1024); @a=lhist(5000,0,4096,1024); "
    "@b=lhist(1048576,0,3145728,1048576); @b=lhist(2097152,0,3145728,1048576); "
    "@c=lhist(0,1000,2000,100); @c=lhist(1999,1000,2000,100); exit(); }",
    exit_with(
        M("@a", "lhist", [((), lhist_of(0, 4096, 1024, 0, 3000, 5000))], lhist=(0, 4096, 1024)),
        M("@b", "lhist", [((), lhist_of(0, 3145728, 1048576, 1048576, 2097152))],
          lhist=(0, 3145728, 1048576)),
        M("@c", "lhist", [((), lhist_of(1000, 2000, 100, 0, 1999))], lhist=(1000, 2000, 100)),
    ),
)
# Bars use float arithmetic: 15/26*52 is 29.99.. in double but 30 in float.
_BAR = [1] * 15 + [2] * 26 + [3] * 7 + [4] * 13 + [5] * 1
case(
    "lhist_bar_float_rounding",
    "BEGIN { "
    + " ".join("@l=lhist(%d,0,10,1);" % v for v in sorted(set(_BAR)) for _ in range(_BAR.count(v)))
    + " exit(); }",
    exit_with(M("@l", "lhist", [((), lhist_of(0, 10, 1, *_BAR))], lhist=(0, 10, 1))),
)
case(
    "lhist_step_not_dividing",
    "BEGIN { @l=lhist(1,0,10,3); @l=lhist(9,0,10,3); @l=lhist(10,0,10,3); @l=lhist(11,0,10,3); "
    "exit(); }",
    exit_with(M("@l", "lhist", [((), {1: 1, 4: 3})], lhist=(0, 10, 3))),
)

# ------------------------------------------------------------------ print()
case(
    "print_map_top_div",
    "BEGIN { @a[1]=(int64)10; @a[2]=(int64)20; @a[3]=(int64)30; @a[4]=(int64)45; print(@a); print(@a, 2); print(@a, 2, 10); "
    "print(@a, 0, 3); @s=5; print(@s); clear(@a); clear(@s); exit(); }",
    lambda o: [
        o.print_map(M("@a", "value", [((1,), 10), ((2,), 20), ((3,), 30), ((4,), 45)]), *td)
        for td in [(0, 0), (2, 0), (2, 10), (0, 3)]
    ],
    lambda o: o.print_map(M("@s", "value", [((), 5)])),
    exit_with(M("@a", "value", []), M("@s", "value", [])),
)
_H1 = hist_of(3)
_H2 = hist_of(3, 100)
case(
    "print_hist_avg_stats_lhist_top_div",
    "BEGIN { @h[1]=hist(3); @h[2]=hist(3); @h[2]=hist(100); print(@h); print(@h, 1); "
    "print(@h,1,2); @av[1]=avg(10); @av[2]=avg(20); @av[3]=avg(31); print(@av, 2, 10); "
    "@st[1]=stats(10); @st[2]=stats(20); print(@st, 1, 10); @l=lhist(3,0,10,1);"
    "@l=lhist(3,0,10,1); print(@l, 0, 2); clear(@h); clear(@av); clear(@st); clear(@l); "
    'printf("end\\n"); exit(); }',
    lambda o: o.print_map(M("@h", "hist", [((1,), _H1), ((2,), _H2)])),
    lambda o: o.print_map(M("@h", "hist", [((1,), _H1), ((2,), _H2)]), 1),
    lambda o: o.print_map(M("@h", "hist", [((1,), _H1), ((2,), _H2)]), 1, 2),
    lambda o: o.print_map(M("@av", "avg", [((1,), (1, 10)), ((2,), (1, 20)), ((3,), (1, 31))]),
                          2, 10),
    lambda o: o.print_map(M("@st", "stats", [((1,), (1, 10)), ((2,), (1, 20))]), 1, 10),
    lambda o: o.print_map(M("@l", "lhist", [((), {4: 2})], lhist=(0, 10, 1)), 0, 2),
    pf("end\n"),
    exit_with(M("@h", "hist", []), M("@av", "avg", []), M("@st", "stats", []),
              M("@l", "lhist", [], lhist=(0, 10, 1))),
)
case(
    "print_values",
    'BEGIN { print(1); print(-1); print("str"); print((1,"a")); print((uint8)255); '
    '$t = (1, (2, "x")); print($t); @x = 5; print(@x); print(@x > 3); exit(); }',
    *[
        (lambda v: (lambda o: o.print_value(v)))(v)
        for v in [1, -1, "str", (1, "a"), 255, (1, (2, "x"))]
    ],
    lambda o: o.print_map(M("@x", "value", [((), 5)])),
    lambda o: o.print_value(True),
    exit_with(M("@x", "value", [((), 5)])),
)
case(
    "print_empty_keyed_map",
    "BEGIN { @e[1]=1; delete(@e[1]); print(@e); @c[1]=count(); print(@c); exit(); }",
    lambda o: o.print_map(M("@e", "value", [])),
    lambda o: o.print_map(M("@c", "count", [((1,), 1)])),
    exit_with(M("@e", "value", []), M("@c", "count", [((1,), 1)])),
)
case(
    "end_probe_and_exit_midway",
    'BEGIN { printf("a\\n"); exit(); printf("b\\n"); @x = 1; } END { printf("end\\n"); @y = 2; }',
    pf("a\n"),
    pf("end\n"),
    exit_with(M("@x", "value", []), M("@y", "value", [((), 2)])),
)

# ------------------------------------------------------------------ printf
case(
    "printf_int_lengths",
    'BEGIN { $x = 1; $y = $x << 40; $y = $y + 5; printf("%d %ld %lld %u %x %lx|\\n", $y, $y, '
    '$y, $y, $y, $y); printf("%d %ld %u %lu %x %lx\\n", -1, -1, -1, -1, -1, -1); '
    'printf("%d %ld\\n", 5000000000, 5000000000); printf("%hhd %hd %hhu %hu %hhx %hX\\n", 300, '
    '70000, -1, -1, -1, -1); printf("%jd %zd %td %ju %zu %tu %jx %zx %tx\\n", -1,-1,-1,-1,-1,-1,'
    "-1,-1,-1); exit(); }",
    pf("%d %ld %lld %u %x %lx|\n", *[(1 << 40) + 5] * 6),
    pf("%d %ld %u %lu %x %lx\n", *[-1] * 6),
    pf("%d %ld\n", 5000000000, 5000000000),
    pf("%hhd %hd %hhu %hu %hhx %hX\n", 300, 70000, -1, -1, -1, -1),
    pf("%jd %zd %td %ju %zu %tu %jx %zx %tx\n", *[-1] * 9),
    exit_with(),
)
case(
    "printf_octal_and_types",
    'BEGIN { printf("%o %lo %ho %hho|%lu %lx %d %u|%hhd %ld %c|%lu\\n", 8, -1, -1, -1, (int8)-1,'
    " (int8)-1, (uint32)-1, (int32)-1, (uint8)-1, (uint8)-1, (uint16)0x141, (int32)-2); exit(); }",
    pf("%o %lo %ho %hho|%lu %lx %d %u|%hhd %ld %c|%lu\n", 8, -1, -1, -1, -1, -1, 4294967295, -1,
       255, 255, 0x141, -2),
    exit_with(),
)
case(
    "printf_char_pointer_string",
    'BEGIN { printf("[%c][%c][%c][%5c][%-3c]\\n", 65, 321, 0x4142, 66, 67); '
    'printf("[%p][%p][%p][%lp][%20p][%-20p]\\n", 0, 1, -1, 4096, 255, 255); '
    'printf("[%s][%10s][%-10s][%.2s][%5.1s][%-5.3s]\\n", "abc", "abc", "abc", "abc", "abc", '
    '"abcdef"); printf("[%5d][%-5d][%05d][%.3d][%8.3d][%-08d][%5x][%08X][%.0d]\\n", 42, 42, 42, '
    "7, 7, 42, 255, 255, 0); exit(); }",
    pf("[%c][%c][%c][%5c][%-3c]\n", 65, 321, 0x4142, 66, 67),
    pf("[%p][%p][%p][%lp][%20p][%-20p]\n", 0, 1, -1, 4096, 255, 255),
    pf("[%s][%10s][%-10s][%.2s][%5.1s][%-5.3s]\n", "abc", "abc", "abc", "abc", "abc", "abcdef"),
    pf("[%5d][%-5d][%05d][%.3d][%8.3d][%-08d][%5x][%08X][%.0d]\n", 42, 42, 42, 7, 7, 42, 255, 255,
       0),
    exit_with(),
)
case(
    "printf_percent_and_non_tokens",
    'BEGIN { printf("100%%\\n"); printf("%d%%\\n", 5); printf("%%%d\\n", 5); printf("%%d\\n"); '
    'printf("[%-%]\\n"); printf("a%\\n"); printf("%5\\n"); printf("%l|%q|%i|%+d\\n", 3, -4); '
    'printf("[%-05d][%5.2d][%05p][%.5p][%.5x][%0.5x][%#x][%#o][%+d][%#X]\\n", 5, 5, 5, 5, 5, 5, 255, 8, 0, 0); '
    'printf("[%c]|%c|\\n", 0, 65); printf("[%05d][%-5d|%5s|%-6s|%3s]\\n", -5, -5, (1, 2), (1, 2), "abcd"); exit(); }',
    pf("100%%\n"),
    pf("%d%%\n", 5),
    pf("%%%d\n", 5),
    pf("%%d\n"),
    pf("[%-%]\n"),
    pf("a%\n"),
    pf("%5\n"),
    pf("%l|%q|%i|%+d\n", 3, -4),
    pf("[%-05d][%5.2d][%05p][%.5p][%.5x][%0.5x][%#x][%#o][%+d][%#X]\n", 5, 5, 5, 5, 5, 5, 255, 8, 0, 0),
    pf("[%c]|%c|\n", 0, 65),
    pf("[%05d][%-5d|%5s|%-6s|%3s]\n", -5, -5, (1, 2), (1, 2), "abcd"),
    exit_with(),
)
case(
    "printf_buffers",
    'BEGIN { printf("[%r][%rx][%rh][%5r]\\n", buf("a\\\\b\\"c ~\\x7f\\x80\\xff\\x00z", 12), '
    'buf("AB", 2), buf("A\\x00B", 3), buf("ab", 2)); exit(); }',
    pf("[%r][%rx][%rh][%5r]\n", Buffer(b'a\\b"c ~\x7f\x80\xff\x00z'), Buffer(b"AB"),
       Buffer(b"A\x00B"), Buffer(b"ab")),
    exit_with(),
)
case(
    "printf_non_ascii",
    'BEGIN { printf("[%.1s][%3s][%-4s] \\xc3\\xa9\\x01\\x1f\\"\\\\/\\t\\r\\x7f|\\n", "\\xc3\\xa9", '
    '"\\xc3\\xa9", "\\xc3\\xa9"); @["\\xc3\\xa9\\"k"]="v\\"\\x01\\xc3\\xa9"; exit(); }',
    pf("[%.1s][%3s][%-4s] \xe9\x01\x1f\"\\/\t\r\x7f|\n", "\xe9", "\xe9", "\xe9"),
    exit_with(M("@", "value", [(("\xe9\"k",), "v\"\x01\xe9")])),
)
case(
    "printf_many_args",
    'BEGIN { printf("%d %d %d %d %d %d %d %d %d %d %d\\n", 1,2,3,4,5,6,7,8,9,10,11); exit(); }',
    pf("%d %d %d %d %d %d %d %d %d %d %d\n", *range(1, 12)),
    exit_with(),
)
case(
    "cat_system",
    'BEGIN { cat("/proc/sys/kernel/ostype"); printf("|\\n"); system("echo sys"); exit(); }',
    lambda o: o.cat("Linux\n"),
    pf("|\n"),
    lambda o: o.syscall("sys\n"),
    exit_with(),
    unsafe=True,
)
case(
    "interval_and_end",
    "BEGIN { @n = 0 } interval:ms:50 { @n++; printf(\"tick %d\\n\", @n); if (@n == 3) { exit(); } }"
    ' END { printf("bye\\n"); }',
    pf("tick %d\n", 1),
    pf("tick %d\n", 2),
    pf("tick %d\n", 3),
    pf("bye\n"),
    exit_with(M("@n", "value", [((), 3)])),
)
