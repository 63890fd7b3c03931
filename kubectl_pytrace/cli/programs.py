"""kubectl pytrace programs: the programs shipped with kubectl-pytrace, run with --program NAME."""

from __future__ import annotations

import json
import sys
from typing import Optional

import click

from kubectl_pytrace.cli.get import table


@click.command()
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["wide", "json"]), help="Output format.")
def programs(name: Optional[str], output: Optional[str]) -> None:
    """List the programs (NAME: one program, its parameters and its text).

    \b
    Run one with: kubectl pytrace run TARGET --program NAME [--param KEY=VALUE ...]
    """
    from kubectl_pytrace import catalog

    found = [catalog.find(name)] if name else catalog.programs()
    if output == "json":
        sys.stdout.write(json.dumps([{"name": p.name, "description": p.description, "needs": p.needs,
                                      "args": [vars(a) for a in p.args], "params": [vars(x) for x in p.params]}
                                     for p in found], indent=2) + "\n")
        return
    if name:
        p = found[0]
        click.echo(f"{p.name}: {p.description}")
        for kind, items in (("arguments", p.args), ("parameters", p.params)):
            if items:
                click.echo(f"\n{kind} (--param NAME=VALUE):")
                for x in items:
                    click.echo(f"  {x.name} ({x.type}, {'required' if x.required else 'default ' + x.default}): {x.help}")
        if p.needs:
            click.echo("\nneeds: " + "; ".join(p.needs))
        click.echo("\n" + p.text.rstrip())
        return
    rows = [["NAME", "DESCRIPTION"] + (["PARAMETERS", "NEEDS"] if output == "wide" else [])]
    for p in found:
        row = [p.name, p.description or "-"]
        if output == "wide":
            row += [",".join(f"{x.name}={x.default}" for x in p.args + p.params) or "-", "; ".join(p.needs) or "-"]
        rows.append(row)
    sys.stdout.write(table(rows))
