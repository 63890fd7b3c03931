"""The pieces of following a trace that need no cluster: the tracer's records both ways, the
per-pod view, --merge, log cursors, targets and API errors."""
from __future__ import annotations

import io
import json

import pytest

from kubectl_pytrace.errors import UsageError
from kubectl_pytrace.k8s.errors import Forbidden, NotFound, api_error
from kubectl_pytrace.k8s.follow import LogCursor, ts_key
from kubectl_pytrace.k8s.render import TraceView
from kubectl_pytrace.k8s.targets import label_selector, parse_target
from kubectl_pytrace.output.merge import merge_all
from kubectl_pytrace.output.printer import make_output
from kubectl_pytrace.output.values import Array, Buffer, MapDump, Record, Symbolic, pointer
from kubectl_pytrace.output.wire import (WireOutput, WireStderr, from_wire, map_from_wire, map_to_wire, parse_line,
                                         to_wire)

VALUES = [0, -5, 2 ** 64 - 1, "text", "caf\udcc3", (1, "a", (2, "b")), pointer(0xffff), Symbolic("TCP_LISTEN", 10),
          "\n        f+1\n        main+4\n", Buffer(b"a\x00\xff"), Record((("count", 2), ("average", 5))),
          Array((1, 2, 3)), None, True, False]

DUMPS = [
    MapDump("@c", "count", [((), 3)]),
    MapDump("@k", "sum", [(("a", 1), -7), (("b", 2), 9)], key_kinds=(("str", 64), ("int", 8))),
    MapDump("@h", "hist", [((), {1: 2, 5: 7})]),
    MapDump("@l", "lhist", [(("x",), {0: 1, 3: 4})], lhist=(0, 100, 10)),
    MapDump("@a", "avg", [((1,), (4, 40))]),
    MapDump("@s", "stats", [((), (2, 10))]),
    MapDump("@m", "min", [((), -3)]),
    MapDump("@x", "max", [((), 99)]),
    MapDump("@v", "value", [((pointer(16),), "str"), ((pointer(32),), "two")], value_type="other"),
    MapDump("@stk", "value", [((1,), "\n        a+0\n")], value_type="other"),
    MapDump("@h2", "hist", [((), {1: 2, 9: 7})], hist_bits=2),
    MapDump("@neg", "sum", [((), -2)], signed=True, scalar=True),
    MapDump("@e", "count", []),
]


@pytest.mark.parametrize("v", VALUES, ids=repr)
def test_values_round_trip(v):
    back = from_wire(json.loads(json.dumps(to_wire(v))))
    assert back == v and type(back) is type(v)
    assert getattr(back, "numeric", None) == getattr(v, "numeric", None)


@pytest.mark.parametrize("d", DUMPS, ids=lambda d: d.name)
def test_maps_round_trip_and_print_the_same(d):
    back = map_from_wire(json.loads(json.dumps(map_to_wire(d))))
    assert back == d
    for fmt in ("text", "json"):
        a, b = io.StringIO(), io.StringIO()
        make_output(fmt, a).print_map(d)
        make_output(fmt, b).print_map(back)
        assert a.getvalue() == b.getvalue()


def tracer_lines(events) -> list:
    """What a tracer writes for these calls, as the lines of its log."""
    buf = io.StringIO()
    out = WireOutput(buf)
    err = WireStderr(out)
    for call, args, src in events:
        out.source = src
        if call == "stderr":
            err.write(args[0])
        else:
            getattr(out, call)(*args)
    err.flush()
    out.flush()
    return buf.getvalue().splitlines()


def view_of(lines_by_node, output="text", merge=False, targets=1):
    out, err = io.StringIO(), io.StringIO()
    view = TraceView(output, merge, out, err, tracers_expected=len(lines_by_node), targets_expected=targets)
    for node, lines in lines_by_node.items():
        for line in lines:
            rec = parse_line(line)
            tv = view.tracer(node)
            tv.record(rec) if rec is not None else tv.raw(line)
    view.finish()
    return out.getvalue(), err.getvalue()


def test_one_tracer_prints_what_run_local_prints():
    events = [("printf", ("a 1\n",), 1), ("printf", ("b ",), 1), ("printf", ("2\n",), 1),
              ("print_value", ((1, "x"),), 1), ("stderr", ("Attached 1 probe\n",), 0),
              ("exit_dump", ([DUMPS[0], DUMPS[2]],), 0)]
    out, err = view_of({"n1": tracer_lines(events)})
    local = io.StringIO()
    o = make_output("text", local)
    o.printf("a 1\n"), o.printf("b "), o.printf("2\n"), o.print_value((1, "x")), o.exit_dump([DUMPS[0], DUMPS[2]])
    assert out == local.getvalue()
    assert err == "Attached 1 probe\n"


def test_several_pods_are_prefixed_line_by_line():
    hello = json.dumps({"hello": {"targets": [{"namespace": "ns", "pod": "p1", "container": "c"},
                                              {"namespace": "ns", "pod": "p2", "container": "c"}]}})
    events = [("printf", ("one\ntwo\n",), 1), ("printf", ("partial ",), 2), ("printf", ("x",), 1),
              ("printf", ("end\n",), 2), ("printf", ("\n",), 1)]
    out, _ = view_of({"n1": [hello] + tracer_lines(events)}, targets=2)
    assert out == "[pod/p1/c] one\n[pod/p1/c] two\n[pod/p2/c] partial [pod/p1/c] xend\n\n"


def test_json_events_carry_their_pod_and_node():
    hello = json.dumps({"hello": {"targets": [{"namespace": "ns", "pod": "p1", "container": "c"}]}})
    out, _ = view_of({"n1": [hello] + tracer_lines([("printf", ("hi\n",), 1), ("printf", ("begin\n",), 0)])},
                     output="json")
    recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert recs == [{"type": "printf", "data": "hi\n", "node": "n1", "namespace": "ns", "pod": "p1", "container": "c"},
                    {"type": "printf", "data": "begin\n", "node": "n1"}]


def test_merge_adds_what_several_nodes_counted():
    a = [MapDump("@c", "count", [(("x",), 2), (("y",), 1)]), MapDump("@h", "hist", [((), {2: 1, 3: 4})]),
         MapDump("@m", "min", [((), 5)]), MapDump("@M", "max", [((), 5)]), MapDump("@a", "avg", [((), (2, 10))])]
    b = [MapDump("@c", "count", [(("x",), 3)]), MapDump("@h", "hist", [((), {3: 1, 9: 2})]),
         MapDump("@m", "min", [((), -1)]), MapDump("@M", "max", [((), 1)]), MapDump("@a", "avg", [((), (1, 20))])]
    merged = {d.name: dict(d.entries) for d in merge_all([a, b])}
    assert merged == {"@c": {("x",): 5, ("y",): 1}, "@h": {(): {2: 1, 3: 5, 9: 2}}, "@m": {(): -1},
                      "@M": {(): 5}, "@a": {(): (3, 30)}}
    out, _ = view_of({"n1": tracer_lines([("exit_dump", (a,), 0)]), "n2": tracer_lines([("exit_dump", (b,), 0)])},
                     merge=True)
    assert "@c[x]: 5\n" in out and "@a: 10\n" in out
    separate, _ = view_of({"n1": tracer_lines([("exit_dump", (a,), 0)]),
                           "n2": tracer_lines([("exit_dump", (b,), 0)])})
    assert "=== maps of node/n1 (node/n1) ===" in separate and "@c[x]: 3\n" in separate


def test_merge_refuses_maps_of_different_kinds():
    with pytest.raises(ValueError):
        merge_all([[MapDump("@c", "count", [((), 1)])], [MapDump("@c", "sum", [((), 1)])]])


def test_a_log_cursor_skips_exactly_what_was_seen():
    c = LogCursor()
    stream1 = ["2026-01-01T00:00:01.5Z", "2026-01-01T00:00:01.5Z", "2026-01-01T00:00:01.75Z"]
    assert [c.fresh(ts) for ts in stream1] == [True, True, True]
    assert c.since() == "2026-01-01T00:00:01Z"
    c.begin()  # resumed from the second: the same lines again, then new ones
    again = ["2026-01-01T00:00:01.5Z", "2026-01-01T00:00:01.5Z", "2026-01-01T00:00:01.75Z",
             "2026-01-01T00:00:01.75Z", "2026-01-01T00:00:02Z"]
    assert [c.fresh(ts) for ts in again] == [False, False, False, True, True]


def test_timestamps_order_with_trimmed_zeros():
    assert ts_key("2026-01-01T00:00:01.1Z") < ts_key("2026-01-01T00:00:01.12Z") < ts_key("2026-01-01T00:00:02Z")
    assert ts_key("2026-01-01T00:00:01Z") < ts_key("2026-01-01T00:00:01.000000001Z")


def test_targets_are_spelled_as_kubectl_spells_them():
    assert parse_target("deploy/web") == ("deployment", "web")
    assert parse_target("sts/db") == ("statefulset", "db")
    assert parse_target("no/n1") == ("node", "n1")
    assert parse_target("Pod/x") == ("pod", "x")
    for bad in ("web", "pod/", "svc/web", "pod/a/b"):
        with pytest.raises(UsageError):
            parse_target(bad)


def test_label_selectors():
    assert label_selector({"matchLabels": {"b": "2", "a": "1"},
                           "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]},
                                                {"key": "u", "operator": "NotIn", "values": ["z"]},
                                                {"key": "v", "operator": "Exists"},
                                                {"key": "w", "operator": "DoesNotExist"}]}) == \
        "a=1,b=2,t in (x,y),u notin (z),v,!w"


def test_api_errors_say_what_was_refused():
    body = json.dumps({"kind": "Status", "message": 'jobs.batch is forbidden: User "alice" cannot create resource '
                       '"jobs" in API group "batch" in the namespace "kubectl-pytrace"'}).encode()
    e = api_error(403, body, "POST", "/apis/batch/v1/namespaces/kubectl-pytrace/jobs")
    assert isinstance(e, Forbidden)
    assert e.message == "forbidden: alice cannot create jobs.batch in namespace kubectl-pytrace"
    assert "manifests/rbac.yaml" in e.hint
    nf = api_error(404, json.dumps({"message": 'pods "x" not found', "details": {"kind": "pods", "name": "x"}}).encode(),
                   "GET", "/api/v1/namespaces/shop/pods/x")
    assert isinstance(nf, NotFound) and nf.message == "pod 'x' not found in namespace 'shop'"
