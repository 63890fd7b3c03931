"""kubectl pytrace logs / attach: a trace's output, from the logs of its tracer pods."""

from __future__ import annotations

import sys

import click

from kubectl_pytrace.cli.completion import complete_traces
from kubectl_pytrace.cli.options import kube_options, tracer_namespace_option


@click.command()
@click.argument("name", shell_complete=complete_traces)
@click.option("-f", "--follow", is_flag=True, help="Go on printing while the trace runs.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--merge", is_flag=True, help="One set of maps for all the trace's nodes.")
@tracer_namespace_option
@kube_options
def logs(name, follow, output, merge, tracer_namespace, kube) -> None:
    """Print a trace's output (-f: until it ends; Ctrl-C stops reading, not the trace)."""
    from kubectl_pytrace.k8s import session

    sys.exit(session.logs(kube, name, tracer_namespace, output, merge, follow))


@click.command()
@click.argument("name", shell_complete=complete_traces)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--merge", is_flag=True, help="One set of maps for all the trace's nodes.")
@tracer_namespace_option
@kube_options
def attach(name, output, merge, tracer_namespace, kube) -> None:
    """Follow a running trace; Ctrl-C stops it (END and the maps are printed) and deletes it."""
    from kubectl_pytrace.k8s import session

    sys.exit(session.attach(kube, name, tracer_namespace, output, merge))
