"""Output details that need a live process to capture (stacks) and helpers. Expected text was
captured from bpftrace 0.17; the program is in each comment (tests/workloads/host/calls.c)."""

from __future__ import annotations

import io
import random

from kubectl_pytrace.output.printer import (
    hist_bucket_label,
    json_escape,
    make_output,
    sort_entries,
    std_sort,
)
from kubectl_pytrace.output.values import MapDump, Stack

A, B, C = "0x5567fc782149", "0x5567fc78218f", "0x7f49fdd9424a"


def text(fn) -> str:
    buf = io.BytesIO()
    fn(make_output("text", buf))
    return buf.getvalue().decode("utf-8", "surrogateescape")


def test_stack_keys_and_values():
    # bpftrace -e 'uprobe:./calls:work { @[ustack] = count(); @u[ustack(3)] = count();
    #   if (arg0 == 3) { @t = (1, ustack(2)); } }' -c './calls 5'
    # (the process is gone when the maps are printed: frames are bare addresses)
    s3 = Stack((A, B, C))
    got = text(lambda o: o.exit_dump([
        MapDump("@", "count", [((s3,), 5)]),
        MapDump("@t", "value", [((), (1, Stack((A, B))))]),
    ]))
    assert got == (
        "\n\n@[\n    %s\n    %s\n    %s\n]: 5\n@t: (1, \n        %s\n        %s\n)\n"
        % (A, B, C, A, B)
    )


def test_stack_valued_maps_have_no_delimiter():
    # uprobe:./calls:work /arg0 < 2/ { @s[arg0] = ustack(2); @p[arg0] = ustack(perf, 2);
    #   @k = kstack; }
    P1 = "5648ba1c7149 0x5648ba1c7149 ([unknown])"
    P2 = "5648ba1c718f 0x5648ba1c718f ([unknown])"
    got = text(lambda o: o.exit_dump([
        MapDump("@k", "value", [((), Stack(()))]),
        MapDump("@p", "value", [((0,), Stack((P1, P2), perf=True)), ((1,), Stack((P1, P2), perf=True))]),
        MapDump("@s", "value", [((0,), Stack((A, B))), ((1,), Stack((A, B)))]),
    ]))
    assert got == (
        "\n\n@k: \n"
        "@p[0]: \n\t%s\n\t%s\n@p[1]: \n\t%s\n\t%s\n\n"
        "@s[0]: \n        %s\n        %s\n@s[1]: \n        %s\n        %s\n\n"
        % (P1, P2, P1, P2, A, B, A, B)
    )


def test_print_stack_value():
    # print(ustack) -> "\n        work+0\n        main+52\n        __libc_start_call_main+122\n\n"
    got = text(lambda o: o.print_value(Stack(("work+0", "main+52", "__libc_start_call_main+122"))))
    assert got == "\n        work+0\n        main+52\n        __libc_start_call_main+122\n\n"


def test_json_escape_signed_char():
    # bpftrace -f json -e 'BEGIN { printf("é\x01\x1f\"\\/\t\r\x7f|\n"); }'
    assert json_escape('\xe9\x01\x1f"\\/\t\r\x7f|\n') == (
        '\\uffffffc3\\uffffffa9\\u0001\\u001f\\"\\\\/\\t\\r\x7f|\\n')


def test_hist_labels():
    assert [hist_bucket_label(p) for p in (0, 1, 9, 10, 19, 20, 30, 31, 40, 50)] == [
        "1", "2", "512", "1K", "512K", "1M", "1G", "2G", "1T", "1024T"]


def test_messages():
    assert text(lambda o: (o.attached_probes(1), o.attached_probes(3), o.lost_events(7),
                           o.time("12:00:00\n"), o.join("a b"))) == (
        "Attaching 1 probe...\nAttaching 3 probes...\nLost 7 events\n12:00:00\na b\n")
    buf = io.BytesIO()
    o = make_output("json", buf)
    o.attached_probes(2)
    o.lost_events(7)
    o.time("12\n")
    o.print_value((1, "a", (2, "x")))
    assert buf.getvalue().decode() == (
        '{"type": "attached_probes", "data": {"probes": 2}}\n'
        '{"type": "lost_events", "data": {"events": 7}}\n'
        '{"type": "time", "data": "12\\n"}\n'
        '{"type": "value", "data": [1,"a",[2,"x"]]}\n'
    )


def test_text_stream_accepted():
    s = io.StringIO()
    make_output("text", s).print_value("x")
    assert s.getvalue() == "x\n"


def test_count_ties_broken_by_key():
    d = MapDump("@", "count", [((3,), 1), ((1,), 1), ((-1,), 1), ((2,), 0)])
    assert [k for k, _ in sort_entries(d)] == [(2,), (1,), (3,), (-1,)]


def test_std_sort_sorts():
    rnd = random.Random(1)
    for n in (0, 1, 2, 15, 16, 17, 100, 1000):
        a = [rnd.randint(0, 10) for _ in range(n)]
        b = list(a)
        std_sort(b, lambda x, y: x < y)
        assert b == sorted(a)


def test_std_sort_is_libstdcxx_order():
    # Which of equal elements comes first after std::sort of 40 (key, tag) pairs by key,
    # printed by a C++ program built with g++ 12 (libstdc++): see tests/output/stdsort_ref.cpp
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    import pytest

    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    src = Path(__file__).with_name("stdsort_ref.cpp")
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "ref"
        subprocess.run(["g++", "-O1", "-o", str(exe), str(src)], check=True)
        rnd = random.Random(7)
        for n in (17, 40, 100, 300):
            keys = [rnd.randint(0, 4) for _ in range(n)]
            inp = " ".join(map(str, keys))
            out = subprocess.run([str(exe)], input=inp, capture_output=True, text=True, check=True)
            ref = [int(x) for x in out.stdout.split()]
            idx = list(range(n))
            std_sort(idx, lambda a, b: keys[a] < keys[b])
            assert idx == ref
