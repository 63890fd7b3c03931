"""kubectl pytrace delete: traces and everything they created."""

from __future__ import annotations

import click

from kubectl_pytrace.cli.completion import complete_traces
from kubectl_pytrace.cli.options import kube_options, tracer_namespace_option


@click.command()
@click.argument("names", nargs=-1, shell_complete=complete_traces)
@click.option("--all", "all_", is_flag=True, help="Every trace in the tracer namespace.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the objects are gone.")
@click.option("--now", is_flag=True, help="No time for END and the maps: stop the tracers at once.")
@tracer_namespace_option
@kube_options
def delete(names, all_, wait, now, tracer_namespace, kube) -> None:
    """Delete traces (their Jobs, pods and ConfigMaps)."""
    if bool(names) == all_:
        raise click.UsageError("name the traces to delete, or give --all")
    from kubectl_pytrace.k8s import traces
    from kubectl_pytrace.k8s.client import Kube

    k = Kube.connect(kube)
    for name in names or [None]:
        if name is not None:
            traces.find(k, tracer_namespace, name)
        traces.delete(k, tracer_namespace, name, grace_seconds=0 if now else None, wait=60 if wait else 0)
        click.echo(f"trace/{name} deleted" if name else f"every trace in namespace {tracer_namespace} deleted")
