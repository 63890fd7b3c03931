"""kubectl pytrace get: the traces, as kubectl lists objects."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import List, Optional

import click

from kubectl_pytrace.cli.completion import complete_traces
from kubectl_pytrace.cli.options import kube_options


def age(created: str, now: Optional[datetime] = None) -> str:
    """kubectl's AGE column from a creation timestamp."""
    if not created:
        return "<unknown>"
    t = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return format_age(((now or datetime.now(timezone.utc)) - t).total_seconds())


def format_age(seconds: float) -> str:
    """45s, 12m, 5h, 3d, as kubectl writes ages."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 120 * 60:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def table(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"


@click.command()
@click.argument("name", required=False, shell_complete=complete_traces)
@click.option("-A", "--all-namespaces", is_flag=True, help="Traces in every namespace.")
@click.option("-o", "--output", type=click.Choice(["wide", "json", "yaml", "name"]), help="Output format.")
@click.option("--tracer-namespace", metavar="NS", default="kubectl-pytrace", show_default=True,
              help="The namespace of the tracer Jobs.")
@kube_options
def get(name, all_namespaces, output, tracer_namespace, kube) -> None:
    """List traces (one line per tracer Job: a trace has one per node)."""
    from kubectl_pytrace.k8s import traces
    from kubectl_pytrace.k8s.client import Kube

    k = Kube.connect(kube)
    found = traces.jobs(k, None if all_namespaces else tracer_namespace, name)
    if name and not found:
        from kubectl_pytrace.k8s.errors import NotFound

        raise NotFound(f"trace {name!r} not found in namespace {tracer_namespace!r}")
    if output in ("json", "yaml"):
        # list items come without their kind: put it back, as kubectl does
        doc = {"apiVersion": "v1", "kind": "List",
               "items": [{"apiVersion": "batch/v1", "kind": "Job", **j.job} for j in found]}
        if output == "json":
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            import yaml

            sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
        return
    if output == "name":
        for n in dict.fromkeys(j.trace for j in found):
            click.echo(f"trace/{n}")
        return
    if not found:
        where = "any namespace" if all_namespaces else f"{tracer_namespace} namespace"
        click.echo(f"No traces found in {where}.", err=True)
        return
    header = ["NAMESPACE", "NAME", "TARGET", "NODE", "STATUS", "AGE"]
    if output == "wide":
        header += ["PODS", "JOB", "IMAGE"]
    rows = [header]
    for j in found:
        row = [j.namespace, j.trace, j.target, j.node, j.status(), age(j.created)]
        if output == "wide":
            row += [_pods(j), j.name, j.job["spec"]["template"]["spec"]["containers"][0]["image"]]
        rows.append(row)
    sys.stdout.write(table(rows))


def _pods(j) -> str:
    from kubectl_pytrace.k8s.manifests import PODS_ANNOTATION

    try:
        pods = json.loads(j.job["metadata"].get("annotations", {}).get(PODS_ANNOTATION, "[]"))
    except ValueError:
        return "?"
    return ",".join(f"{p['namespace']}/{p['pod']}" for p in pods) or "<node>"
