"""kubectl pytrace run: compile a bpftrace program and trace a pod, a workload, a node, or this host."""

from __future__ import annotations

import shlex
import sys
from typing import List, Optional, Tuple

import click

from kubectl_pytrace.cli.completion import complete_targets
from kubectl_pytrace.cli.options import kube_options, parse_duration, tracer_namespace_option

EXAMPLES = """
\b
Examples:
  # the calls of handle() in a pod's container, with their first argument, until Ctrl-C
  kubectl pytrace run pod/web-7d9 -c server -e 'uprobe:/app/server:handle { printf("%d\\n", arg0); }' --attach
\b
  # which processes of every replica of a deployment open files, for a minute
  kubectl pytrace run deploy/web -e 'tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }' \\
      --deadline 60s --attach
\b
  # a node, with a program from a file; the trace runs on until deleted
  kubectl pytrace run node/worker-1 -f programs/tcpretrans.bt
\b
  # pods by label, events as JSON, the maps of all nodes merged into one
  kubectl pytrace run -l app=web -n shop -e '...' -o json --attach --merge
\b
  # this host, no cluster (as bpftrace)
  kubectl pytrace run --local -e 'tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }'
"""


def read_program(program: Optional[str], program_file: Optional[str], name: Optional[str] = None,
                 params: Tuple[str, ...] = ()) -> Tuple[str, str, List[str]]:
    """(text, the name diagnostics show, the parameters): from -e, -f or --program NAME."""
    if sum(x is not None for x in (program, program_file, name)) != 1:
        raise click.UsageError("give the program with exactly one of -e PROGRAM, -f FILE or --program NAME")
    if name is not None:
        from kubectl_pytrace import catalog

        found = catalog.find(name)
        return found.text, f"{name}.bt", found.arguments(catalog.parse_params(list(params)))
    if params:
        raise click.UsageError("--param goes with --program (give a file's own parameters after it: $1, --name=value)")
    return _read_text(program, program_file) + ([],)  # type: ignore[return-value]


def _read_text(program: Optional[str], program_file: Optional[str]) -> Tuple[str, str]:
    if program_file is None:
        return program, "stdin"  # type: ignore[return-value]
    try:
        with click.open_file(program_file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise click.UsageError(f"cannot read {program_file}: {e.strerror}")
    except UnicodeDecodeError as e:
        raise click.UsageError(f"{program_file} is not UTF-8 text (byte {e.start}: {e.reason})")
    return text, "stdin" if program_file == "-" else program_file


@click.command(epilog=EXAMPLES, context_settings={"ignore_unknown_options": False})
@click.argument("target", required=False, shell_complete=complete_targets)
@click.argument("params", nargs=-1)
@click.option("-e", "program", metavar="PROGRAM", help="Program text.")
@click.option("-f", "program_file", type=click.Path(dir_okay=False, allow_dash=True), help="Program file.")
@click.option("--program", "program_name", metavar="NAME", help="A program of `kubectl pytrace programs`.")
@click.option("--param", "program_params", metavar="KEY=VALUE", multiple=True,
              help="A parameter of the --program (repeat for several).")
@click.option("-l", "--selector", metavar="SELECTOR", help="Trace the pods with these labels (app=web).")
@click.option("-c", "container_or_command", metavar="NAME|CMD",
              help="The container to trace in a pod (as kubectl -c); with --local, a command to run once "
                   "the probes are attached, the trace ending with it (as bpftrace -c).")
@click.option("--container", "container", metavar="NAME", help="The container to trace in a pod.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default=None,
              help="text (default) or json for the trace's output; yaml or json for --dry-run.")
@click.option("--deadline", metavar="DURATION", help="Stop after this long (30s, 5m, 1h).")
@click.option("-a", "--attach", is_flag=True, help="Stream the trace's output until it ends; Ctrl-C "
              "stops it (END and the maps are printed) and deletes it.")
@click.option("--merge", is_flag=True, help="With several tracers (nodes): one set of maps for all of them.")
@click.option("--name", metavar="NAME", help="The trace's name (default: pytrace-<random>).")
@click.option("--image", metavar="IMAGE", help="The tracer image (default: the one of this version).")
@click.option("--image-pull-policy", type=click.Choice(["Always", "IfNotPresent", "Never"]),
              default="IfNotPresent", show_default=True)
@click.option("--service-account", metavar="NAME", help="The service account of the tracer pods.")
@tracer_namespace_option
@click.option("--patch", "patch_file", type=click.Path(dir_okay=False, exists=True),
              help="A JSON merge patch (YAML or JSON) applied to every tracer Job: resources, "
                   "priorityClassName, labels...")
@click.option("--ttl", metavar="DURATION", default="1h", show_default=True,
              help="How long a finished trace's objects (and logs) are kept.")
@click.option("--dry-run", type=click.Choice(["none", "client", "server"]), is_flag=False, flag_value="client",
              default="none", help="Print the objects instead of creating them (server: validated by the "
              "API server).")
@click.option("--local", is_flag=True, help="Trace this host, without a cluster.")
@click.option("--dump", type=click.Choice(["ast", "c"]), help="With --local: print the parsed tree or the "
              "generated C and exit.")
@click.option("--container-id", "container_ids", metavar="ID", multiple=True,
              help="With --local: trace only this container (docker://ID, containerd://ID or a unique "
                   "prefix of 12+ hex digits); repeat for several.")
@click.option("--pid", "target_pid", type=int, metavar="PID",
              help="With --local: trace only the container PID is in (or PID itself if it is in none).")
@click.option("--ns-pids", is_flag=True, help="Print pid/tid as seen inside the traced container.")
@click.option("--unsafe", is_flag=True, help="Allow system(), signal() and override(), as bpftrace --unsafe.")
@click.option("-v", "--verbose", is_flag=True, help="With --attach: when each step happened, and the "
              "tracers' peak memory; with --local: how the probes were attached, and how long attaching "
              "and detaching took.")
@kube_options
def run(target, params, program, program_file, program_name, program_params, selector, container_or_command, container, output, deadline,
        attach, merge, name, image, image_pull_policy, service_account, tracer_namespace, patch_file, ttl,
        dry_run, local, dump, container_ids, target_pid, ns_pids, unsafe, verbose, kube) -> None:
    """Run a trace: TARGET is pod/NAME, deploy/NAME, statefulset/NAME, daemonset/NAME, job/NAME or
    node/NAME (or -l SELECTOR, or --local for this host). PARAMS are the program's $1, $2, ..."""
    text, filename, preset = read_program(program, program_file, program_name, program_params)
    params = tuple(preset) + params
    seconds = parse_duration(deadline) if deadline else None
    if local or dump is not None:
        if target is not None:
            params = (target,) + params
        _local(text, filename, params, output or "text", seconds, container_or_command, dump, container_ids,
               target_pid, ns_pids, unsafe, verbose)
        return
    _no_local_flags(container_ids, target_pid)
    if container_or_command and container and container_or_command != container:
        raise click.UsageError("-c and --container name different containers")
    from kubectl_pytrace.k8s import session  # not at import: `--help` stays fast

    spec = session.ClusterTrace(
        kube=kube, program=text, filename=filename, target=target, selector=selector,
        container=container or container_or_command, params=list(params), deadline=seconds,
        output=output or ("yaml" if dry_run != "none" else "text"), merge=merge, attach=attach, name=name,
        image=image, pull_policy=image_pull_policy, service_account=service_account,
        tracer_namespace=tracer_namespace, patch=_read_patch(patch_file), ttl=int(parse_duration(ttl)),
        dry_run=None if dry_run == "none" else dry_run, ns_pids=ns_pids, unsafe=unsafe, verbose=verbose)
    if spec.output == "yaml" and spec.dry_run is None:
        raise click.UsageError("-o yaml prints the objects of --dry-run; a trace's output is text or json")
    sys.exit(session.run(spec))


def _no_local_flags(container_ids, target_pid) -> None:
    if container_ids or target_pid is not None:
        raise click.UsageError("--container-id and --pid go with --local; in a cluster, name the pod "
                               "(pod/NAME -c CONTAINER)")


def _local(text, filename, params, output, seconds, command, dump, container_ids, target_pid, ns_pids,
           unsafe, verbose=False) -> None:
    if output == "yaml":
        raise click.UsageError("-o yaml is for --dry-run; a trace's output is text or json")
    if container_ids and target_pid is not None:
        raise click.UsageError("give at most one of --container-id and --pid")
    if ns_pids and not container_ids and target_pid is None:
        raise click.UsageError("--ns-pids needs --container-id or --pid")
    from kubectl_pytrace.tracer import session  # not at import: `--help` stays fast

    spec = session.TraceSpec(
        text=text, filename=filename, output=output, deadline=seconds,
        command=shlex.split(command) if command else None, params=list(params),
        container_ids=list(container_ids), pid=target_pid, ns_pids=ns_pids, unsafe=unsafe,
        verbose=verbose)
    if dump is not None:
        session.dump(spec, dump)
    else:
        result = session.run(spec)
        if result.exit_code:  # the program's exit(code)
            sys.exit(result.exit_code)


def _read_patch(path: Optional[str]):
    if path is None:
        return None
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise click.UsageError(f"--patch {path}: {e}")
