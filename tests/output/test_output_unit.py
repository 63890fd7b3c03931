"""Output details the golden captures do not cover (stacks need a live process) and helpers.
Expected text follows bpftrace 0.27 (src/output/text.cpp, json.cpp)."""

from __future__ import annotations

import io
import random

from kubectl_pytrace.output.printer import format_map, hist_value, json_escape, make_output, std_sort
from kubectl_pytrace.output.values import MapDump, render_stack

A, B, C = "0x5567fc782149", "0x5567fc78218f", "0x7f49fdd9424a"


def text(fn) -> str:
    buf = io.BytesIO()
    fn(make_output("text", buf, stderr=io.StringIO()))
    return buf.getvalue().decode("utf-8", "surrogateescape")


def test_stack_keys_and_values():
    # bpftrace -e 'uprobe:./calls:work { @[ustack] = count(); if (arg0 == 3) { @t = (1, ustack(2)); } }'
    s3 = render_stack((A, B, C))
    got = text(lambda o: o.exit_dump([
        MapDump("@", "count", [((s3,), 5)]),
        MapDump("@t", "value", [((), (1, render_stack((A, B))))]),
    ]))
    assert got == (
        "\n\n@[\n        %s\n        %s\n        %s\n]: 5\n@t: (1, \n        %s\n        %s\n)\n"
        % (A, B, C, A, B)
    )


def test_stack_modes():
    assert render_stack(()) == "\n"
    assert render_stack(("ffff81 do_sys+5 ([kernel.kallsyms])",), "perf") == "\n\tffff81 do_sys+5 ([kernel.kallsyms])\n"
    assert render_stack(("ffff81",), "raw") == "\nffff81\n"


def test_print_stack_value():
    got = text(lambda o: o.print_value(render_stack(("work+0", "main+52"))))
    assert got == "\n        work+0\n        main+52\n\n"


def test_json_escape_signed_char():
    # bpftrace -f json -e 'BEGIN { printf("é\x01\x1f\"\\/\t\r\x7f|\n"); }'
    assert json_escape('\xe9\x01\x1f"\\/\t\r\x7f|\n') == (
        '\\uffffffc3\\uffffffa9\\u0001\\u001f\\"\\\\/\\t\\r\x7f|\\n')


def test_hist_labels_and_bits():
    h = hist_value({3: 1, 12: 1, 23: 1, 33: 1, 43: 1})
    assert [str(x) for x in h.labels] == [
        "4", "8", "16", "32", "64", "128", "256", "512", "1K", "2K", "4K", "8K", "16K", "32K", "64K", "128K",
        "256K", "512K", "1M", "2M", "4M", "8M", "16M", "32M", "64M", "128M", "256M", "512M", "1G", "2G",
        "4G", "8G", "16G", "32G", "64G", "128G", "256G", "512G", "1T", "2T", "4T"]
    assert h.lower_bound == 2
    h2 = hist_value({5: 1, 9: 1}, k=2)  # hist(v, 2): four buckets per power of 2
    assert (h2.lower_bound, [str(x) for x in h2.labels]) == (4, ["5", "6", "7", "8", "10"])


def test_messages():
    err = io.StringIO()
    buf = io.BytesIO()
    o = make_output("text", buf, stderr=err)
    o.attached_probes(1)
    o.attached_probes(3)
    o.lost_events(7)
    o.time("12:00:00\n")
    o.join("a b")
    assert buf.getvalue().decode() == "12:00:00\na b\n"
    assert err.getvalue() == "Attached 1 probe\nAttached 3 probes\nLost 7 events\n"
    buf = io.BytesIO()
    o = make_output("json", buf)
    o.attached_probes(2)
    o.lost_events(7)
    o.time("12\n")
    o.print_value((1, "a", (2, "x")))
    assert buf.getvalue().decode() == (
        '{"type": "attached_probes", "count": 2, "data": {"probes": 2}}\n'
        '{"type": "lost_events", "count": 7, "data": {"events": 7}}\n'
        '{"type": "time", "data": "12\\n"}\n'
        '{"type": "value", "data": [1,"a",[2,"x"]]}\n'
    )


def test_text_stream_accepted():
    s = io.StringIO()
    make_output("text", s).print_value("x")
    assert s.getvalue() == "x\n"


def test_count_ties_broken_by_key():
    d = MapDump("@", "count", [((3,), 1), ((1,), 1), ((-1,), 1), ((2,), 0)])
    assert [k for k, _ in format_map(d).values] == [2, -1, 1, 3]


def test_print_of_empty_key_less_maps_prints_zero():
    for kind, want in (("count", "@c: 0\n"), ("avg", "@c: 0\n"),
                       ("stats", "@c: { .count = 0, .average = 0, .total = 0 }\n")):
        assert text(lambda o: o.print_map(MapDump("@c", kind, [], scalar=True))) == want
    assert text(lambda o: o.exit_dump([MapDump("@c", "count", [], scalar=True)])) == "\n\n"


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


def test_resolved_words(tmp_path, monkeypatch):
    """macaddr, username and cgroup_path values are one u64 that user space turns into text."""
    from kubectl_pytrace.kernel import sysfs
    from kubectl_pytrace.lang.types import CgroupPathT, MacT, UsernameT
    from kubectl_pytrace.output.decode import Symbols, converter

    sym = Symbols()
    assert converter(MacT(), sym)([int.from_bytes(b"\x01\x02\xab\xcd\xef\x80", "little")]) == "01:02:AB:CD:EF:80"
    sym._users = {"0": "root"}
    assert converter(UsernameT(), sym)([0]) == "root"
    assert converter(UsernameT(), sym)([4242]) == ""  # as bpftrace: nothing for an unknown uid
    seen = []
    monkeypatch.setattr(sysfs, "cgroup_paths", lambda ident, pattern: seen.append((ident, pattern)) or "unified:/x")
    assert converter(CgroupPathT("mem*"), sym)([7]) == "unified:/x" and seen == [(7, "mem*")]


def test_cgroup_paths_in_each_hierarchy(tmp_path, monkeypatch):
    import os

    from kubectl_pytrace.kernel import sysfs

    v2, mem = tmp_path / "unified", tmp_path / "memory"
    (v2 / "a" / "b").mkdir(parents=True)
    (mem / "b").mkdir(parents=True)
    monkeypatch.setattr(sysfs, "cgroup_roots", lambda: ([str(mem)], [str(v2)]))
    ident = os.stat(v2 / "a" / "b").st_ino
    assert sysfs.cgroup_paths(ident) == "unified:/a/b"
    assert sysfs.cgroup_paths(os.stat(v2).st_ino) == "unified:/"
    assert sysfs.cgroup_paths(os.stat(mem / "b").st_ino, "mem*") == "memory:/b"
    assert sysfs.cgroup_paths(os.stat(mem / "b").st_ino, "unified") == ""
