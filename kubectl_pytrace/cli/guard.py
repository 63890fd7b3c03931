"""What `firewall` and `shape` share: their target flags, and running on this host or in a cluster.

On this host (--local) the target is a network namespace (--netns NAME, as `ip netns` names it),
a container (--container-id ID), the namespace of a process (--pid N), or this host's own; in a
cluster a pod (its own network namespace) or a node (its host interfaces).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Optional

import click

from kubectl_pytrace.cli.options import kube_options, parse_duration, tracer_namespace_option


def target_options(f: Callable) -> Callable:
    """The flags of where to attach, on this host or in a cluster, and for how long."""
    options = [
        click.argument("target", required=False),
        click.option("-i", "--interface", metavar="IFACE",
                     help="The interface (default for pods and --netns/--container-id/--pid: eth0; a node or "
                          "this host needs one)."),
        click.option("--interval", default="5s", show_default=True, metavar="DURATION",
                     help="How often the counters are printed (and once more at the end)."),
        click.option("--deadline", metavar="DURATION", help="Stop after this long (30s, 5m, 1h)."),
        click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True),
        click.option("--force", is_flag=True, help="Replace a program of this kind already on the interface."),
        click.option("--update", is_flag=True, help="Change the settings of the one running on the target."),
        click.option("--local", is_flag=True, help="This host: --netns, --container-id, --pid or its own "
                     "network namespace."),
        click.option("--netns", metavar="NAME", help="With --local: a network namespace of `ip netns`."),
        click.option("--container-id", metavar="ID", help="With --local: a container's network namespace."),
        click.option("--pid", "target_pid", type=int, metavar="PID",
                     help="With --local: the network namespace of that process."),
        click.option("-c", "--container", metavar="NAME", help="In a cluster: the pod's container whose "
                     "process leads to the pod's network namespace (any one does)."),
        click.option("--image", metavar="IMAGE", help="The tracer image (default: the one of this version)."),
        click.option("--image-pull-policy", type=click.Choice(["Always", "IfNotPresent", "Never"]),
                     default="IfNotPresent", show_default=True),
        tracer_namespace_option,
        kube_options,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def local_target(netns: Optional[str], container_id: Optional[str], pid: Optional[int]):
    from kubectl_pytrace.guard.netns import NetTarget

    if sum(x is not None for x in (netns, container_id, pid)) > 1:
        raise click.UsageError("give at most one of --netns, --container-id and --pid")
    if netns is not None:
        return NetTarget.from_netns(netns)
    if container_id is not None:
        return NetTarget.from_container(container_id)
    if pid is not None:
        return NetTarget.from_pid(pid)
    return NetTarget.host()


def default_interface(interface: Optional[str], local: bool, target: Optional[str], inside: bool) -> str:
    """eth0 in a pod or another namespace; a node or this host's own namespace must say which."""
    if interface:
        return interface
    node = target is not None and target.partition("/")[0].lower() in ("node", "nodes", "no")
    if (local and not inside) or node:
        raise click.UsageError("give the interface with -i/--interface (a host has several: "
                               "`ip -br link` lists them)")
    return "eth0"


class LocalPrinter:
    """Records of guard/runner as the user reads them: reports on stdout, notes on stderr."""

    def __init__(self, kind: str, output: str):
        self.kind, self.output = kind, output

    def emit(self, rec: Dict[str, Any]) -> None:
        from kubectl_pytrace.guard import report

        if "stderr" in rec:
            print(rec["stderr"], file=sys.stderr, flush=True)
        elif self.kind in rec:
            r = rec[self.kind]
            sys.stdout.write(report.as_json(self.kind, r) if self.output == "json" else report.text(self.kind, r))
            sys.stdout.flush()


def run_local(kind: str, settings: Dict[str, Any], target, output: str, deadline: Optional[float],
              update: bool) -> None:
    from kubectl_pytrace.guard import commands, state

    if update:
        generation = state.send_update(kind, target, settings)
        print(f"kubectl-pytrace: {kind} on {settings['interface']} ({target.description}) updated "
              f"(generation {generation})", file=sys.stderr)
        return
    printer = LocalPrinter(kind, output)
    reg: Dict[str, Any] = {}

    def started() -> None:
        reg["r"] = state.Registration.create(kind, target, settings)

    try:
        commands.run(kind, settings, [target], printer.emit, deadline,
                     updates=lambda: reg["r"].poll() if reg else None,
                     applied=lambda new: reg["r"].applied(), started=started)
    finally:
        if reg:
            reg["r"].remove()


def run_cluster(kind: str, settings: Dict[str, Any], target: Optional[str], container: Optional[str],
                output: str, deadline: Optional[float], update: bool, image: Optional[str], pull_policy: str,
                tracer_namespace: str, kube) -> None:
    if target is None:
        raise click.UsageError("give a target: pod/NAME or node/NAME (or --local)")
    from kubectl_pytrace.k8s import guard as kguard

    req = kguard.GuardRequest(kube=kube, kind=kind, target=target, container=container, settings=settings,
                              output=output, deadline=deadline, image=image, pull_policy=pull_policy,
                              tracer_namespace=tracer_namespace)
    sys.exit(kguard.update(req) if update else kguard.run(req))


def dispatch(kind: str, settings_of: Callable[[str], Dict[str, Any]], target, interface, interval, deadline,
             output, force, update, local, netns, container_id, target_pid, container, image,
             image_pull_policy, tracer_namespace, kube) -> None:
    """Everything after the command's own flags: --local or the cluster."""
    seconds = parse_duration(deadline) if deadline else None
    every = parse_duration(interval)
    if every <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--interval")
    inside = any(x is not None for x in (netns, container_id, target_pid))
    if not local and inside:
        raise click.UsageError("--netns, --container-id and --pid go with --local")
    if local and target is not None:
        raise click.UsageError("--local takes no TARGET: use --netns, --container-id or --pid")
    iface = default_interface(interface, local, target, inside)
    settings = dict(settings_of(iface), interval=every, force=force)
    if local:
        run_local(kind, settings, local_target(netns, container_id, target_pid), output, seconds, update)
        return
    run_cluster(kind, settings, target, container, output, seconds, update, image, image_pull_policy,
                tracer_namespace, kube)

