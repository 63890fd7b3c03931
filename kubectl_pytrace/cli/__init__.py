"""The kubectl-pytrace command line: one module per subcommand, wired here."""

from __future__ import annotations

import click

from kubectl_pytrace import __version__
from kubectl_pytrace.cli.run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubectl-pytrace")
def cli() -> None:
    """Trace Kubernetes pods and hosts with eBPF, using the bpftrace language."""


cli.add_command(run)


def main() -> None:
    cli(prog_name="kubectl-pytrace")
