"""Flags several commands share: kubectl's connection flags, the tracer namespace, durations."""

from __future__ import annotations

import functools
import re
from typing import Callable

import click

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_duration(text: str) -> float:
    """'30s', '5m', '1h', '500ms' or plain seconds -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 500ms)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def kube_options(f: Callable) -> Callable:
    """kubectl's flags; the command gets `kube` (a k8s.client.KubeOptions, built without importing
    the kubernetes client)."""

    @click.option("--kubeconfig", metavar="PATH", help="Path to the kubeconfig file (default: $KUBECONFIG, "
                  "else ~/.kube/config).")
    @click.option("--context", metavar="NAME", help="The kubeconfig context to use.")
    @click.option("-n", "--namespace", metavar="NS", help="The namespace of the target (default: the "
                  "context's).")
    @click.option("--as", "as_user", metavar="USER", help="Username to impersonate for the operation.")
    @click.option("--as-group", "as_groups", metavar="GROUP", multiple=True,
                  help="Group to impersonate (repeat for several).")
    @functools.wraps(f)
    def wrapper(*args, kubeconfig, context, namespace, as_user, as_groups, **kwargs):
        from kubectl_pytrace.k8s.client import KubeOptions

        kwargs["kube"] = KubeOptions(kubeconfig=kubeconfig, context=context, namespace=namespace,
                                     as_user=as_user, as_groups=tuple(as_groups))
        return f(*args, **kwargs)

    return wrapper


def tracer_namespace_option(f: Callable) -> Callable:
    return click.option("--tracer-namespace", metavar="NS", default="kubectl-pytrace", show_default=True,
                        help="The namespace of the tracer Jobs (it must allow privileged pods).")(f)
