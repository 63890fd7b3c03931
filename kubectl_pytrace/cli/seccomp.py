"""kubectl pytrace seccomp: a seccomp profile from the system calls a container makes."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Dict, Optional

import click

from kubectl_pytrace.cli.options import kube_options, parse_duration, tracer_namespace_option

EXAMPLES = """
\b
Examples:
  # a minute of a pod's container, as an OCI/Docker profile (JSON) for
  # securityContext.seccompProfile {type: Localhost} or docker --security-opt seccomp=FILE
  kubectl pytrace seccomp pod/web-7d9 -c server --duration 60s > web.json
\b
  # the same as a Security Profiles Operator SeccompProfile resource
  kubectl pytrace seccomp pod/web-7d9 -c server --duration 60s -o profile-cr | kubectl apply -f -
\b
  # a Docker container on this host
  kubectl pytrace seccomp --local --container-id 3f2a9c1e0b7d --duration 30s > app.json
\b
Only what runs while recording is seen: exercise the workload meanwhile. The calls of the
container's start, made before recording began, come from --base (default runtime: what runc and
a process's start need); --base FILE merges another profile's allowed calls.
"""


def _record_local(container_id: Optional[str], pid: Optional[int], seconds: float) -> Dict[int, int]:
    if (container_id is None) == (pid is None):
        raise click.UsageError("with --local, give the container with --container-id ID or --pid PID")
    from kubectl_pytrace.tracer import syscalls

    return syscalls.record(container_id, pid, seconds)


def _print(profile, output: str, name: str, namespace: Optional[str]) -> None:
    if output == "json":
        json.dump(profile.oci(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    import yaml

    sys.stdout.write(yaml.safe_dump(profile.custom_resource(name, namespace), sort_keys=False))


def _check(profile) -> None:
    from kubectl_pytrace.guard import seccomp

    result = seccomp.check(profile)
    if result is None:
        print("kubectl-pytrace: seccomp: python3-seccomp is not installed: the profile was not compiled "
              "with libseccomp", file=sys.stderr)
    elif result.unknown:
        print(f"warning: libseccomp here does not know {', '.join(result.unknown)}: a runtime with the same "
              f"libseccomp ignores them", file=sys.stderr)
    else:
        print(f"kubectl-pytrace: seccomp: libseccomp compiled it: {result.rules} rules, {result.instructions} "
              f"BPF instructions", file=sys.stderr)


@click.command(epilog=EXAMPLES)
@click.argument("target", required=False)
@click.option("-c", "--container", metavar="NAME", help="The container of the pod.")
@click.option("--duration", default="60s", show_default=True, metavar="DURATION",
              help="How long to record (Ctrl-C ends sooner).")
@click.option("-o", "--output", type=click.Choice(["json", "profile-cr"]), default="json", show_default=True,
              help="json: an OCI/Docker seccomp profile; profile-cr: a Security Profiles Operator SeccompProfile.")
@click.option("--base", default="runtime", show_default=True, metavar="runtime|none|FILE",
              help="Calls allowed besides those seen: the runtime's start, none, or a profile's.")
@click.option("--name", "cr_name", metavar="NAME", help="With -o profile-cr: its name (default: POD-CONTAINER).")
@click.option("--local", is_flag=True, help="A container on this host (--container-id or --pid).")
@click.option("--container-id", metavar="ID", help="With --local: the container.")
@click.option("--pid", "target_pid", type=int, metavar="PID", help="With --local: the container of this process.")
@click.option("--image", metavar="IMAGE", help="The tracer image (default: the one of this version).")
@click.option("--image-pull-policy", type=click.Choice(["Always", "IfNotPresent", "Never"]),
              default="IfNotPresent", show_default=True)
@tracer_namespace_option
@kube_options
def seccomp(target, container, duration, output, base, cr_name, local, container_id, target_pid, image,
            image_pull_policy, tracer_namespace, kube) -> None:
    """Record the system calls of TARGET's container (pod/NAME, a workload, or --local) in the
    kernel and print a seccomp profile that allows them and refuses everything else."""
    from kubectl_pytrace.guard import seccomp as sc

    seconds = parse_duration(duration)
    if cr_name is not None:  # checked before minutes of recording, not after
        if output != "profile-cr":
            raise click.UsageError("--name names the SeccompProfile of -o profile-cr")
        sc.resource_name(cr_name)
    base_what, base_names = sc.read_base(base)
    if local:
        if target is not None:
            raise click.UsageError("--local takes no TARGET: use --container-id or --pid")
        rec = Recorded(_record_local(container_id, target_pid, seconds), os.uname().machine, 0, None,
                       cr_name or f"container-{(container_id or str(target_pid))[:12]}")
    else:
        rec = _record_cluster(target, container, seconds, cr_name, image, image_pull_policy, tracer_namespace, kube)
    if not rec.counts:
        raise sc.ProfileError("no system call was recorded: nothing to make a profile of",
                              hint="the recording may have ended before it started (see above)")
    profile = sc.Profile.build(rec.counts, rec.arch, base_names)
    print(profile.summary(seconds, base_what), file=sys.stderr)
    _check(profile)
    _print(profile, output, rec.name, rec.namespace)
    sys.exit(rec.code)


@dataclass
class Recorded:
    counts: Dict[int, int]
    arch: str
    code: int
    namespace: Optional[str]
    name: str  # of the SeccompProfile resource


def _record_cluster(target, container, seconds, cr_name, image, pull_policy, tracer_namespace, kube) -> Recorded:
    if target is None:
        raise click.UsageError("give a target: pod/NAME (-c CONTAINER), a workload, or --local")
    from kubectl_pytrace.k8s import guard as kguard

    rec = kguard.record_syscalls(kube, target, container, seconds, image, pull_policy, tracer_namespace)
    name = cr_name or (target.split("/", 1)[-1] + (f"-{container}" if container else ""))
    return Recorded(rec.counts, rec.arch, rec.code, rec.namespace, name)
