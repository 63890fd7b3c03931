"""`firewall` and `shape` in a tracer pod: what tracer/node.py runs for a configuration whose
"command" is one of them.

    run(cfg, targets, emit, config_dir)

The targets are the pods on this node (their container IDs, resolved through the host's /proc at
$HOST_PROC); their network namespaces are entered through /proc/<pid>/ns/net. A node target has
no pods: the tracer pod runs with hostNetwork, so its own namespace is the node's. Updates come
through the mounted ConfigMap (k8s/guard.py changes it): its "options" with a higher "generation"
are applied, and a {"updated": generation} record says so.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional

from kubectl_pytrace import traceconfig
from kubectl_pytrace.errors import TraceError
from kubectl_pytrace.guard import commands
from kubectl_pytrace.guard.netns import NetTarget
from kubectl_pytrace.guard.runner import Emit
from kubectl_pytrace.kernel import procfs

CONFIG_POLL = 1.0


def net_targets(targets: List[Dict[str, str]]) -> List[NetTarget]:
    if not targets:
        return [replace(NetTarget.host(), description=f"node {os.environ.get('NODE_NAME', '')}".strip())]
    root = procfs.default_proc_root()
    return [NetTarget.from_container(t["container_id"], root, what=f"pod {t['namespace']}/{t['pod']}")
            for t in targets]


def _config_updates(config_dir: str, generation: int) -> Callable[[], Optional[Dict[str, Any]]]:
    state = {"generation": generation, "next": 0.0}

    def poll() -> Optional[Dict[str, Any]]:
        if time.monotonic() < state["next"]:
            return None
        state["next"] = time.monotonic() + CONFIG_POLL
        try:
            options = traceconfig.read(config_dir).get("options") or {}
        except (OSError, ValueError):
            return None  # being replaced by the kubelet: read it next time
        if int(options.get("generation", 0)) <= state["generation"]:
            return None
        state["generation"] = int(options["generation"])
        return options
    return poll


def run(cfg: Dict[str, Any], targets: List[Dict[str, str]], emit: Emit, config_dir: str) -> None:
    kind = cfg.get("command")
    if kind not in commands.KINDS:
        raise TraceError(f"this tracer does not know the command {kind!r}")
    options = cfg.get("options") or {}
    commands.run(kind, options, net_targets(targets), emit, cfg.get("deadline"),
                 updates=_config_updates(config_dir, int(options.get("generation", 1))),
                 applied=lambda new: emit({"updated": int(new.get("generation", 0))}))
