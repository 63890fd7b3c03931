"""seccomp profiles for real: a container's system calls recorded by `kubectl-pytrace seccomp
--local`, then the same workload run again under the profile (docker --security-opt seccomp=FILE):
it completes; with one call it needs taken out of the profile, it fails; without the runtime's
base, the container cannot even start. And the base is measured again here: what runc does after
installing the filter and what a process's start does must be in it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import dockerlib
from kubectl_pytrace.guard import seccomp as sc
from kubectl_pytrace.guard.syscall_names import X86_64

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.docker]
REPO = Path(__file__).resolve().parents[2]
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")
RECORD_SECONDS = 5
# a shell loop whose every step must work (set -e): mkdir, date, cat, ls, sleep; it lives longer
# than the recording when started with a large count, and ends by itself with a small one
WORKLOAD = ("set -e; sleep 2; i=0; while [ $i -lt {n} ]; do i=$((i+1)); mkdir -p /tmp/d$i; date > /tmp/d$i/f; "
            "cat /tmp/d$i/f > /dev/null; ls /tmp > /dev/null; sleep 0.1; done; echo finished")


def _record(image: str, *args: str):
    name = f"pytrace-seccomp-{secrets.token_hex(4)}"
    cid = dockerlib.docker("run", "-d", "--name", name, "--label", f"{dockerlib.LABEL}=1", image, "sh", "-c",
                           WORKLOAD.format(n=200)).stdout.strip()
    try:
        p = subprocess.run([PYTRACE, "seccomp", "--local", "--container-id", cid, "--duration", f"{RECORD_SECONDS}s",
                            *args], capture_output=True, text=True, timeout=180)
        running = json.loads(dockerlib.docker("inspect", name).stdout)[0]["State"]["Running"]
    finally:
        dockerlib.docker("rm", "-f", name, check=False)
    assert p.returncode == 0, p.stderr
    assert running, "the workload ended while it was recorded: the recording is not of a running container"
    return p


@pytest.fixture(scope="module")
def recorded(base_image):
    p = _record(base_image)
    return json.loads(p.stdout), p.stderr


def _run_under(image: str, profile: dict, tmp_path: Path, n: int = 10) -> subprocess.CompletedProcess:
    path = tmp_path / f"profile-{secrets.token_hex(3)}.json"
    path.write_text(json.dumps(profile))
    return dockerlib.docker("run", "--rm", "--security-opt", f"seccomp={path}", image, "sh", "-c",
                            WORKLOAD.format(n=n), check=False, timeout=120)


def _without(profile: dict, name: str) -> dict:
    out = json.loads(json.dumps(profile))
    out["syscalls"][0]["names"].remove(name)
    return out


def test_the_workload_runs_again_under_its_profile(recorded, base_image, tmp_path):
    profile, stderr = recorded
    names = profile["syscalls"][0]["names"]
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["architectures"] == ["SCMP_ARCH_X86_64"]
    assert "mkdir" in names and "mkdir" not in sc.runtime_base()  # seen, not given
    assert "libseccomp compiled it" in stderr
    assert len(names) < 150  # far from everything (x86_64 has ~370)
    p = _run_under(base_image, profile, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("finished")


def test_one_needed_call_less_and_the_workload_fails(recorded, base_image, tmp_path):
    profile, _ = recorded
    p = _run_under(base_image, _without(profile, "mkdir"), tmp_path)
    assert p.returncode != 0
    assert "Operation not permitted" in p.stderr and "finished" not in p.stdout


def test_without_the_runtime_base_the_container_does_not_start(base_image, tmp_path):
    """What a running container is seen to do lacks its runtime's start: runc cannot even exec."""
    p = _record(base_image, "--base", "none")
    profile = json.loads(p.stdout)
    assert "0 more from the base" in p.stderr
    run = _run_under(base_image, profile, tmp_path)
    assert run.returncode != 0 and "finished" not in run.stdout


def test_a_security_profiles_operator_resource(base_image):
    p = _record(base_image, "-o", "profile-cr", "--name", "shell-loop")
    cr = yaml.safe_load(p.stdout)
    assert cr["apiVersion"] == "security-profiles-operator.x-k8s.io/v1beta1" and cr["kind"] == "SeccompProfile"
    assert cr["metadata"] == {"name": "shell-loop"}
    assert "mkdir" in cr["spec"]["syscalls"][0]["names"]


# ---- the runtime base, measured again ------------------------------------------------------------

# runc installs the filter with prctl(PR_SET_SECCOMP) (libseccomp's seccomp(2) calls before it are
# probes that fail); from then on every call of that process is the runtime's until execve, then
# the container process's own start
MEASURE = """
tracepoint:raw_syscalls:sys_enter /comm == "runc:[2:INIT]" && ((args->id == 317 && args->args[0] == 1) || (args->id == 157 && args->args[0] == 22))/ { @arming[tid] = 1; }
tracepoint:raw_syscalls:sys_exit /@arming[tid] == 1/ { if (args->ret >= 0) { @armed[pid] = 1; } delete(@arming[tid]); }
tracepoint:raw_syscalls:sys_enter /@armed[pid] == 1/ { @s[pid, comm, args->id] = count(); }
"""


def test_the_runtime_base_covers_what_runc_and_a_process_start_do(base_image, tmp_path):
    marker = f"pyt{secrets.token_hex(4)}"  # the started program's name: only our containers count
    prog = tmp_path / "measure.bt"
    prog.write_text(MEASURE)
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        tracer = subprocess.Popen([PYTRACE, "run", "--local", "-f", str(prog), "--deadline", "40s"], stdout=o, stderr=e)
    try:
        end = time.monotonic() + 60
        while "Attached" not in err.read_text() and time.monotonic() < end:
            time.sleep(0.2)
        for _ in range(4):
            dockerlib.docker("run", "--rm", base_image, "sh", "-c", f"cp /bin/true /tmp/{marker} && exec /tmp/{marker}")
    finally:
        tracer.send_signal(2)
        tracer.wait(timeout=60)
    runc, start, pids = set(), set(), set()
    rows = re.findall(r"^@s\[(\d+), (.*), (\d+)\]: \d+$", out.read_text(), re.M)
    pids = {pid for pid, comm, _ in rows if comm == marker}
    assert len(pids) == 4, f"not every container was seen: {out.read_text()[-3000:]}\n{err.read_text()}"
    for pid, comm, nr in rows:
        if pid in pids and comm == "runc:[2:INIT]":
            runc.add(X86_64[int(nr)])
        elif pid in pids and comm == marker:
            start.add(X86_64[int(nr)])
    print(f"runc after the filter: {sorted(runc)}\nprocess start: {sorted(start)}")
    assert runc and start
    missing = (runc | start) - sc.runtime_base()
    assert not missing, f"the runtime base lacks {sorted(missing)} (add them to guard/seccomp.py)"


def test_a_container_that_exits_while_recorded_lets_nothing_else_in(base_image):
    """The container ends 2 s into a 6 s recording; this host goes on making calls a shell does not
    (getpriority here, bpf() in the tracer): none of them may enter the container's profile."""
    name = f"pytrace-seccomp-{secrets.token_hex(4)}"
    cid = dockerlib.docker("run", "-d", "--name", name, "--label", f"{dockerlib.LABEL}=1", base_image, "sh", "-c",
                           "sleep 2; ls / > /dev/null").stdout.strip()
    try:
        rec = subprocess.Popen([PYTRACE, "seccomp", "--local", "--container-id", cid, "--duration", "6s",
                                "--base", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 6
        while time.monotonic() < end:
            os.getpriority(os.PRIO_PROCESS, 0)
            time.sleep(0.01)
        out, err = rec.communicate(timeout=120)
        state = json.loads(dockerlib.docker("inspect", name).stdout)[0]["State"]
    finally:
        dockerlib.docker("rm", "-f", name, check=False)
    assert not state["Running"], "the container was to end while recorded"
    assert rec.returncode == 0, err
    names = json.loads(out)["syscalls"][0]["names"]
    assert "getpriority" not in names and "bpf" not in names, names
