"""kubectl pytrace ps: the BPF programs loaded on nodes (or this host), and who holds them."""

from __future__ import annotations

import json
import sys
import time
from typing import List

import click

from kubectl_pytrace.cli.get import format_age, table
from kubectl_pytrace.cli.options import kube_options, tracer_namespace_option


@click.command()
@click.option("--local", is_flag=True, help="This host, without a cluster.")
@click.option("--node", metavar="NAME", help="Only this node (default: every node).")
@click.option("-o", "--output", type=click.Choice(["wide", "json"]), help="Output format.")
@click.option("--image", metavar="IMAGE", help="The tracer image (default: the one of this version).")
@tracer_namespace_option
@kube_options
def ps(local, node, output, image, tracer_namespace, kube) -> None:
    """List the BPF programs loaded on each node: type, name, where attached, the process (and pod)
    that holds them; kubectl-pytrace's own tracers are marked."""
    if local:
        from kubectl_pytrace.tracer import ps as host

        rows = [("", p.to_json()) for p in host.snapshot()]
    else:
        from kubectl_pytrace.k8s import ps as cluster

        rows = cluster.run(kube, node, tracer_namespace, image)
    if output == "json":
        sys.stdout.write(json.dumps([dict(p, node=n) if n else p for n, p in rows], indent=2) + "\n")
        return
    sys.stdout.write(table(_rows(rows, wide=output == "wide", cluster=not local)))


def _rows(rows, wide: bool, cluster: bool) -> List[List[str]]:
    header = (["NODE"] if cluster else []) + ["ID", "TYPE", "NAME", "ATTACHED", "PID", "COMM",
                                              "POD" if cluster else "CONTAINER", "AGE", "TRACER"]
    if wide:
        header += ["MAPS", "RUNS", "RUN TIME"]
    out = [header]
    now = time.time()
    for n, p in rows:
        holders = p["holders"] or [{"pid": "-", "comm": "-", "container_id": "", "pod": ""}]
        attached = p["attached"] if wide else p["attached"][:1] + (["..."] if len(p["attached"]) > 1 else [])
        for h in holders:
            where = h.get("pod") if cluster else h["container_id"][:12]
            row = ([n] if cluster else []) + [str(p["id"]), p["type"], p["name"], ",".join(attached) or "-",
                                              str(h["pid"]), h["comm"], where or "-",
                                              format_age(now - p["loaded_at"]), "yes" if p["ours"] else ""]
            if wide:
                row += [",".join(map(str, p["map_ids"])) or "-", str(p["run_count"]),
                        f"{p['run_time_ns'] / 1e6:.1f} ms"]
            out.append(row)
    return out
