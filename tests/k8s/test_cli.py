"""The command line as a user meets it before any cluster is involved: usage errors, the
compile-first check, --dry-run=client of a node, version, completion, and what each path
imports (the kubernetes client only where the API is talked to)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubectl_pytrace import __version__
from kubectl_pytrace.lang import check_program
from kubectl_pytrace.lang.diagnostics import CompileError

REPO = Path(__file__).resolve().parents[2]
PLUGIN = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")


def cli(*args, env=None):
    p = subprocess.run([PLUGIN, *args], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, KUBECONFIG="/nonexistent", **(env or {})))
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("args, message", [
    (["run", "pod/x"], "give the program with exactly one of -e PROGRAM, -f FILE or --program NAME"),
    (["run", "pod/x", "-e", "BEGIN {}", "-f", "x.bt"], "give the program with exactly one of"),
    (["run", "pod/x", "-e", "BEGIN {}", "-o", "yaml"], "-o yaml prints the objects of --dry-run"),
    (["run", "pod/x", "-e", "BEGIN {}", "--container-id", "abc"], "--container-id and --pid go with --local"),
    (["run", "-e", "BEGIN {}"], "give one target (TYPE/NAME) or a label selector (-l)"),
    (["run", "svc/x", "-e", "BEGIN {}"], "unknown target type 'svc'"),
    (["run", "pod/x", "-e", "BEGIN {}", "--deadline", "soon"], "'soon' is not a duration"),
    (["run", "pod/x", "-e", "BEGIN {}", "--name", "Bad_Name", "--dry-run=client"], "invalid trace name"),
    (["delete"], "name the traces to delete, or give --all"),
    (["run", "--local", "-e", "BEGIN {}", "--ns-pids"], "--ns-pids needs --container-id or --pid"),
])
def test_usage_errors(args, message):
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert message in err, err
    assert "Traceback" not in err


def test_a_program_error_is_reported_before_any_cluster_is_asked():
    # KUBECONFIG points nowhere: the compile error comes first
    code, out, err = cli("run", "pod/x", "-e", 'BEGIN { printf("%d\\n", "s"); }')
    assert code == 1
    assert err == ('stdin:1:9-27: ERROR: unsupported format specifier for type \'string[2]\': d\n'
                   'BEGIN { printf("%d\\n", "s"); }\n        ~~~~~~~~~~~~~~~~~~~\n'), err


def test_no_kubeconfig_is_a_clear_error():
    code, out, err = cli("run", "pod/x", "-e", "BEGIN {}")
    assert code == 1 and err.startswith("error: cannot use the kubeconfig /nonexistent"), err
    assert "--kubeconfig" in err


def test_dry_run_client_of_a_node_renders_without_a_cluster():
    code, out, err = cli("run", "node/worker-1", "--dry-run=client", "-e", "tracepoint:sched:sched_switch { @ = count(); }",
                         "--name", "my-trace", "--deadline", "30s")
    assert code == 0, err
    cm, job = yaml.safe_load_all(out)
    assert cm["kind"] == "ConfigMap" and job["kind"] == "Job"
    assert job["spec"]["template"]["spec"]["nodeName"] == "worker-1"
    assert json.loads(cm["data"]["trace.json"])["nodes"] == {"worker-1": []}
    code, out, err = cli("run", "node/worker-1", "--dry-run", "-o", "json", "-e", "BEGIN {}")
    assert code == 0 and [o["kind"] for o in json.loads(out)["items"]] == ["ConfigMap", "Job"]


def test_version_and_help():
    code, out, _ = cli("version")
    assert code == 0 and out.splitlines() == [f"Client Version: v{__version__}",
                                              f"Tracer Image: ghcr.io/kubectl-pytrace/tracer:v{__version__}"]
    code, out, _ = cli("--help")
    assert code == 0 and out.startswith("Usage: kubectl pytrace [OPTIONS] COMMAND [ARGS]...")
    for command in ("run", "get", "logs", "attach", "delete", "version", "completion"):
        assert f"  {command} " in out
    assert "  tracer " not in out.split("Commands:")[1]  # the pods' own command is hidden


def test_completion_of_commands_and_targets():
    env = {"_KUBECTL_PYTRACE_COMPLETE": "bash_complete", "COMP_WORDS": "kubectl-pytrace ru", "COMP_CWORD": "1"}
    code, out, _ = cli(env=env)
    assert "plain,run" in out.splitlines()
    env = {"_KUBECTL_PYTRACE_COMPLETE": "bash_complete", "COMP_WORDS": "kubectl-pytrace run de", "COMP_CWORD": "2"}
    code, out, _ = cli(env=env)
    assert "plain,deploy/" in out.splitlines()
    code, out, _ = cli("completion", "bash")
    assert code == 0 and "_KUBECTL_PYTRACE_COMPLETE" in out
    p = subprocess.run([str(Path(PLUGIN).with_name("kubectl_complete-pytrace")), "run", "--dry"],
                       capture_output=True, text=True, timeout=30)
    assert p.stdout.splitlines() == ["--dry-run", ":4"]


IMPORTS = """
import sys, runpy
sys.argv = ["kubectl-pytrace"] + sys.argv[1:]
try:
    from kubectl_pytrace.cli import main
    main()
except SystemExit:
    pass
finally:
    print("KUBERNETES_IMPORTED=%s" % any(m == "kubernetes" or m.startswith("kubernetes.") for m in sys.modules),
          file=sys.stderr)
"""


@pytest.mark.parametrize("args, imported", [
    (["--help"], False),
    (["run", "--help"], False),
    (["run", "node/n", "--dry-run=client", "-e", "BEGIN {}"], False),
    (["run", "--local", "--dump", "ast", "-e", "BEGIN {}"], False),
    (["run", "pod/x", "-e", "BEGIN {}"], True),  # talks to the API (and fails: no kubeconfig)
])
def test_the_kubernetes_client_is_imported_only_to_talk_to_the_api(args, imported):
    p = subprocess.run([sys.executable, "-c", IMPORTS, *args], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, KUBECONFIG="/nonexistent"))
    assert f"KUBERNETES_IMPORTED={imported}" in p.stderr, p.stderr


OIDC = """
import sys
from kubectl_pytrace.k8s.client import _import_client
_import_client()
from kubernetes.config import kube_config
print("requests imported:", "requests" in sys.modules)
# what kube_config does on an OIDC token refresh: build a session, catch the client's error
session = kube_config.OAuth2Session(client_id="pytrace", token={"access_token": "x"})
print(type(session).__module__, type(session).__name__)
error = kube_config.oauthlib.oauth2.rfc6749.errors.InvalidClientIdError
print(error.__module__, error.__name__, issubclass(error, Exception))
"""


def test_the_oidc_modules_are_imported_only_when_a_token_is_refreshed():
    # kube_config imports oauthlib and requests_oauthlib at its top (~50 ms): they wait until used
    p = subprocess.run([sys.executable, "-c", OIDC], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "requests imported: False",
        "requests_oauthlib.oauth2_session OAuth2Session",
        "oauthlib.oauth2.rfc6749.errors InvalidClientIdError True"], p.stdout


# ---- the client's compile: far from the node ------------------------------------------------------

@pytest.mark.parametrize("program", [
    'tracepoint:syscalls:sys_enter_openat { printf("%s\\n", str(args->filename)); }',
    'kprobe:tcp_retransmit_skb { $sk = (struct sock *)arg0; @[$sk->__sk_common.skc_dport] = count(); }',
    'kprobe:f { printf("%d\\n", TASK_RUNNING); }',
    'tracepoint:x:y { @x = args->foo; } END { print(@x); }',
    'kfunc:vfs_read { @[args->count] = count(); }',
    'BEGIN { @t = kaddr("avenrun"); }',
])
def test_what_only_the_node_knows_is_left_to_the_node(program):
    assert check_program(program) == ""


@pytest.mark.parametrize("program, message", [
    ('BEGIN { printf("%d\\n"); }', "not enough arguments for format string"),
    ('tracepoint:a:b { $x = args->f; printf("%d %d\\n", $x); }', "not enough arguments for format string"),
    ('BEGIN { nosuch(); }', "unknown function 'nosuch'"),
    ('BEGIN { $x = 1; $x = "s"; }', "type mismatch for $x"),
    ('BEGIN { @x = count(); @x = 1; }', "type mismatch for @x"),
    ('BEGIN { printf("%s\\n", $y); }', "Undefined or undeclared variable: $y"),
    ('kprobe:f { @ = hist(comm); }', "hist() argument must be an integer"),
    ('BEGIN { exit() exit() }', "syntax error"),
])
def test_what_any_host_can_check_is_checked(program, message):
    with pytest.raises(CompileError) as e:
        check_program(program)
    assert message in str(e.value)
