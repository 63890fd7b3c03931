"""kubectl-pytrace tracer: the tracer pod's own command (what the Jobs run), not for users."""

from __future__ import annotations

import os
import sys

import click


@click.command(hidden=True)
@click.option("--config", "config_dir", required=True, type=click.Path(file_okay=False),
              help="The mounted ConfigMap of the trace.")
@click.option("--node", envvar="NODE_NAME", required=True, help="This node's name (default: $NODE_NAME).")
def tracer(config_dir: str, node: str) -> None:
    """Run the trace's part on this node; output records on stdout (output/wire.py)."""
    from kubectl_pytrace.tracer import node as node_tracer

    sys.exit(node_tracer.run(config_dir, node))
