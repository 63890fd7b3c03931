"""kubectl pytrace version: the client and the tracer image it uses."""

from __future__ import annotations

import click

from kubectl_pytrace import __version__


@click.command()
def version() -> None:
    """Print the client version and the default tracer image."""
    from kubectl_pytrace.k8s.manifests import default_image

    click.echo(f"Client Version: v{__version__}")
    click.echo(f"Tracer Image: {default_image()}")
