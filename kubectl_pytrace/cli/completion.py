"""Shell completion: of commands and flags (from click, no API call), and of trace names and
targets (from the API server).

    kubectl pytrace completion bash|zsh|fish    a script to source
    kubectl_complete-pytrace ARGS... WORD      kubectl's plugin completion (kubectl >= 1.26 runs it
                                               for `kubectl pytrace <TAB>`): one candidate a line,
                                               then cobra's ":4" (no file completion)
"""

from __future__ import annotations

import os
import sys
from typing import List

import click
from click.shell_completion import CompletionItem

TARGET_TYPES = ("pod/", "deploy/", "statefulset/", "daemonset/", "job/", "node/")


def _kube_from(ctx: click.Context):
    from kubectl_pytrace.k8s.client import Kube, KubeOptions

    p = ctx.params
    return Kube.connect(KubeOptions(kubeconfig=p.get("kubeconfig"), context=p.get("context"),
                                    namespace=p.get("namespace")))


def complete_traces(ctx: click.Context, param, incomplete: str) -> List[CompletionItem]:
    try:
        from kubectl_pytrace.k8s import traces

        names = {j.trace for j in traces.jobs(_kube_from(ctx), ctx.params.get("tracer_namespace") or "kubectl-pytrace")}
    except Exception:  # completion never fails loudly
        return []
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def complete_targets(ctx: click.Context, param, incomplete: str) -> List[CompletionItem]:
    if "/" not in incomplete:
        return [CompletionItem(t) for t in TARGET_TYPES if t.startswith(incomplete)]
    kind, _, prefix = incomplete.partition("/")
    try:
        from kubectl_pytrace.k8s.client import apps, batch, core
        from kubectl_pytrace.k8s.targets import KINDS

        kube = _kube_from(ctx)
        full = KINDS.get(kind)
        path = {"pod": lambda: core("pods", kube.namespace), "node": lambda: core("nodes"),
                "deployment": lambda: apps("deployments", kube.namespace),
                "statefulset": lambda: apps("statefulsets", kube.namespace),
                "daemonset": lambda: apps("daemonsets", kube.namespace),
                "job": lambda: batch("jobs", kube.namespace)}[full]()
        names = [o["metadata"]["name"] for o in kube.list(path)]
    except Exception:
        return []
    return [CompletionItem(f"{kind}/{n}") for n in sorted(names) if n.startswith(prefix)]


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a completion script for SHELL (source it: `source <(kubectl pytrace completion bash)`)."""
    from click.shell_completion import get_completion_class

    from kubectl_pytrace.cli import cli

    comp = get_completion_class(shell)(cli, {}, "kubectl-pytrace", "_KUBECTL_PYTRACE_COMPLETE")
    click.echo(comp.source())


def kubectl_complete() -> None:
    """Entry point of `kubectl_complete-pytrace`: kubectl's plugin completion protocol."""
    from click.shell_completion import ShellComplete

    from kubectl_pytrace.cli import cli

    args = sys.argv[1:]
    incomplete = args.pop() if args else ""
    comp = ShellComplete(cli, {}, "kubectl-pytrace", "_KUBECTL_PYTRACE_COMPLETE")
    for item in comp.get_completions(args, incomplete):
        print(item.value)
    print(":4")
    sys.stdout.flush()
    os._exit(0)
