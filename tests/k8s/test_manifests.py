"""manifests/ rendered by k8s/manifests.py: the objects a trace is made of, and no string a user
controls (program, parameters, names, labels) can change their structure."""
from __future__ import annotations

import json

import pytest
import yaml

from kubectl_pytrace import __version__, traceconfig
from kubectl_pytrace.errors import UsageError
from kubectl_pytrace.k8s import manifests as m
from kubectl_pytrace.k8s.targets import ContainerTarget, Selection

HOSTILE = [
    'a"b', "a'b", "line1\nline2: x\n- y", "{{ 7*7 }}", "{% raw %}", "&anchor *alias", "!!python/object:os.system",
    "key: value", "# comment", "]}[{", "\\", "\t", "\u2028", "é", "---\n...", "null", "true", "0x1f", "'", '"',
    "${HOME}", "$(id)", "`id`",
]


def selection(pod: str = "web-1", container_id: str = "containerd://" + "ab" * 32) -> Selection:
    t = ContainerTarget("shop", pod, "server", container_id, "worker-1", "uid-1")
    return Selection(f"pod/{pod}", "shop", {"worker-1": [t]})


def request(**kw) -> m.TraceRequest:
    base = dict(name="pytrace-0a1b2c3d", program='uprobe:/app/server:handle { printf("%d\\n", arg0); }',
                filename="stdin", selection=selection(), image="localhost/tracer:dev", deadline=60.0)
    base.update(kw)
    return m.TraceRequest(**base)


def test_the_job_of_a_node():
    cm, job = m.objects(request())
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert job["metadata"]["name"] == m.job_name("pytrace-0a1b2c3d", "worker-1")
    assert job["metadata"]["namespace"] == "kubectl-pytrace"
    assert job["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kubectl-pytrace",
                                         "kubectl-pytrace/trace": "pytrace-0a1b2c3d",
                                         "app.kubernetes.io/name": "kubectl-pytrace-tracer"}
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 60 + m.GRACE_SECONDS + m.START_ALLOWANCE
    assert spec["ttlSecondsAfterFinished"] == m.DEFAULT_TTL
    assert pod["nodeName"] == "worker-1" and pod["hostPID"] is True and pod["hostNetwork"] is True
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["securityContext"] == {"privileged": True}
    assert c["args"] == ["tracer", "--config", "/etc/kubectl-pytrace"]
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    hostpaths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    for path in ("/sys", "/lib/modules", "/usr/src", "/sys/kernel/tracing", "/sys/kernel/debug"):
        assert hostpaths[mounts[path]] == path
    assert hostpaths[mounts["/host/proc"]] == "/proc"
    assert {"name": "HOST_PROC", "value": "/host/proc"} in c["env"]
    assert next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"] == cm["metadata"]["name"]
    assert c["resources"]["limits"]["memory"]


def test_the_configmap_holds_what_the_tracer_reads(tmp_path):
    req = request(params=["42", "x y"], ns_pids=True)
    cm = m.configmap(req)
    for key, text in cm["data"].items():
        (tmp_path / key).write_text(text)
    cfg = traceconfig.read(str(tmp_path))
    assert cfg["program"] == req.program
    assert cfg["client_version"] == __version__ and cfg["params"] == ["42", "x y"] and cfg["ns_pids"] is True
    assert cfg["nodes"] == {"worker-1": [{"namespace": "shop", "pod": "web-1", "container": "server",
                                          "container_id": "containerd://" + "ab" * 32, "pod_uid": "uid-1"}]}


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_strings_stay_strings(evil):
    sel = selection(pod=evil, container_id=evil)
    sel.description = evil
    req = request(program=evil, filename=evil, params=[evil, evil + evil], selection=sel, image=evil,
                  service_account=evil)
    cm, job = m.objects(req)
    assert cm["data"]["program.bt"] == evil
    cfg = json.loads(cm["data"]["trace.json"])
    assert cfg["filename"] == evil and cfg["params"] == [evil, evil + evil]
    assert cfg["nodes"]["worker-1"][0]["pod"] == evil
    assert cm["metadata"]["annotations"][m.TARGET_ANNOTATION] == evil
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == evil and pod["serviceAccountName"] == evil
    assert json.loads(job["metadata"]["annotations"][m.PODS_ANNOTATION])[0]["container_id"] == evil
    # the same keys as with harmless values: nothing was added or taken away
    plain_cm, plain_job = m.objects(request(service_account="sa"))
    assert _shape(cm) == _shape(plain_cm) and _shape(job) == _shape(plain_job)


def _shape(obj):
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items() if k not in ("data", "annotations")}
    if isinstance(obj, list):
        return [_shape(v) for v in obj]
    return type(obj).__name__


def test_a_node_name_is_a_value_too():
    sel = Selection("node/x", None, {"a\nb: c": []})
    job = m.objects(request(selection=sel))[1]
    assert job["spec"]["template"]["spec"]["nodeName"] == "a\nb: c"


def test_the_yaml_filter_round_trips_through_a_yaml_parser():
    for evil in HOSTILE + [{"k": evil} for evil in HOSTILE] + [[1, "x"], None, 3, True]:
        assert yaml.safe_load(f"key: {m.to_yaml(evil)}\n") == {"key": evil}


def test_names():
    assert m.check_name("my-trace") == "my-trace"
    for bad in ("My", "-x", "x-", "a_b", "a" * 53, "", "a.b"):
        with pytest.raises(UsageError):
            m.check_name(bad)
    assert m.new_trace_name().startswith("pytrace-")
    assert m.job_name("t", "node-1") != m.job_name("t", "node-2")


def test_patch_is_a_json_merge_patch():
    job = m.job(request(patch={"spec": {"template": {"spec": {"priorityClassName": "high",
                                                              "hostNetwork": None}}},
                               "metadata": {"labels": {"team": "sre"}}}), "worker-1")
    pod = job["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "high" and "hostNetwork" not in pod
    assert job["metadata"]["labels"]["team"] == "sre"
    assert job["metadata"]["labels"]["kubectl-pytrace/trace"] == "pytrace-0a1b2c3d"


def test_no_deadline_no_job_deadline():
    assert "activeDeadlineSeconds" not in m.job(request(deadline=None), "worker-1")["spec"]


def test_the_namespace_allows_privileged_pods():
    ns = m.namespace("tracers")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_default_image_is_this_version(monkeypatch):
    monkeypatch.delenv("KUBECTL_PYTRACE_IMAGE", raising=False)
    assert m.default_image().endswith(f":v{__version__}")
    monkeypatch.setenv("KUBECTL_PYTRACE_IMAGE", "x/y:z")
    assert m.default_image() == "x/y:z"
