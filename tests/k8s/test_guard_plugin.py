"""The plugin's side of firewall, shape and seccomp, without a cluster: the trace configuration
and Jobs that carry a command and its options, and how the tracers' records are printed."""
from __future__ import annotations

import io
import json

import pytest
import yaml

from kubectl_pytrace.guard.commands import firewall_settings, shape_settings
from kubectl_pytrace.guard.rules import RuleError
from kubectl_pytrace.k8s import manifests as m
from kubectl_pytrace.k8s.guard import Records
from kubectl_pytrace.k8s.render import TraceView
from kubectl_pytrace.k8s.targets import ContainerTarget, Selection

HOSTILE_RULE = 'tcp/80 from 10.0.0.0/8"; } int x; {{ 7*7 }}'


def _selection() -> Selection:
    t = ContainerTarget("shop", "web-1", "server", "containerd://" + "ab" * 32, "worker-1", "uid-1")
    return Selection("pod/web-1", "shop", {"worker-1": [t]})


def _request(**kw) -> m.TraceRequest:
    base = dict(name="pytrace-0a1b2c3d", program="", filename="", selection=_selection(), image="i:1")
    base.update(kw)
    return m.TraceRequest(**base)


def test_a_trace_has_no_options_and_a_firewall_has_its_options():
    cfg = m.trace_config(_request(program="BEGIN { }"))
    assert cfg["command"] == "trace" and "options" not in cfg
    settings = firewall_settings(["tcp/8080"], ["10.0.0.0/8"], "drop", "eth0", 5.0, False)
    cm, job = m.objects(_request(command="firewall", options=settings))
    cfg = json.loads(cm["data"]["trace.json"])
    assert cfg["command"] == "firewall"
    assert cfg["options"] == {"rules": ["tcp/8080", "from 10.0.0.0/8"], "mode": "drop", "interface": "eth0",
                              "interval": 5.0, "force": False, "generation": 1}
    assert cm["data"]["program.bt"] == ""
    assert job["metadata"]["annotations"][m.COMMAND_ANNOTATION] == "firewall"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["tracer", "--config", "/etc/kubectl-pytrace"]


def test_options_are_checked_before_anything_is_made_and_reach_yaml_as_values():
    with pytest.raises(RuleError):
        firewall_settings([HOSTILE_RULE], [], "drop", "eth0", 5.0, False)
    settings = shape_settings("1mbit", "64k", ["10.1.0.0/16"], "auto", "eth0", 1.0, True)
    assert settings["rate"] == 1_000_000 and settings["burst"] == 65536 and settings["to"] == ["10.1.0.0/16"]
    settings["interface"] = "eth0\n- x: {{ y }}"  # what a bug could let through: still one value
    cm, _ = m.objects(_request(command="shape", options=settings))
    assert yaml.safe_load(yaml.safe_dump(cm)) == cm
    assert json.loads(cm["data"]["trace.json"])["options"]["interface"] == "eth0\n- x: {{ y }}"


def _view(kind: str, output: str):
    out = io.StringIO()
    view = TraceView("text", False, out, io.StringIO(), records=Records(kind, output, out))
    tv = view.tracer("worker-1")
    tv.record({"hello": {"targets": [{"namespace": "shop", "pod": "web-1", "container": "server"}]}})
    return view, tv, out


REPORT = {"interface": "eth0", "target": "pod shop/web-1", "attach": "XDP (BPF link, driver mode)", "mode": "drop",
          "elapsed": 5.0, "final": True, "rules": [{"rule": "tcp/8080", "packets": 3, "bytes": 222}],
          "passed": {"packets": 10, "bytes": 1000}, "non_ip": {"packets": 0, "bytes": 0}}


def test_reports_are_printed_as_text_with_the_pod():
    view, tv, out = _view("firewall", "text")
    tv.record({"firewall": REPORT, "src": 1, "t": 1.0})
    tv.record({"updated": 2})
    text = out.getvalue()
    assert text.startswith("firewall on eth0 (pod shop/web-1), final counters:")
    assert "tcp/8080" in text and "222 B" in text and "updated" not in text


def test_reports_as_json_carry_node_namespace_and_pod():
    view, tv, out = _view("firewall", "json")
    tv.record({"firewall": REPORT, "src": 1})
    rec = json.loads(out.getvalue())
    assert rec["type"] == "firewall" and rec["node"] == "worker-1" and rec["pod"] == "web-1"
    assert rec["namespace"] == "shop" and rec["rules"][0]["packets"] == 3


def test_other_records_go_on_as_before():
    view, tv, out = _view("firewall", "text")
    tv.record({"exit": 0, "error": None, "hint": None})
    assert tv.exit == {"exit": 0, "error": None, "hint": None} and view.exit_code() == 0
