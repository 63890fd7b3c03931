"""The trace's configuration: written by the plugin into the trace's ConfigMap
(k8s/manifests.py), read by the tracer pod on every node (tracer/node.py).

    trace.json   {"config_version": 1, "client_version": "0.1.0", "name": "pytrace-1a2b3c4d",
                  "command": "trace" (the default) | "ps",
                  "filename": "prog.bt", "params": [...], "deadline": 60.0 | null, "ns_pids": false,
                  "unsafe": false,
                  "nodes": {"worker-1": [{"namespace": "shop", "pod": "web-1", "container": "server",
                                          "container_id": "containerd://...", "pod_uid": "..."}],
                            "worker-2": []}}      (no container: the whole node)
    program.bt   the program text

Imports nothing of the package (both sides use it).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

CONFIG_VERSION = 1
COMMANDS = ("trace", "ps")  # what a tracer pod runs on its node
CONFIG_FILE = "trace.json"
PROGRAM_FILE = "program.bt"


def read(directory: str) -> Dict[str, Any]:
    """The configuration in a directory (the mounted ConfigMap); ValueError/OSError when unreadable."""
    with open(os.path.join(directory, CONFIG_FILE)) as f:
        cfg = json.load(f)
    if not isinstance(cfg, dict):
        raise ValueError(f"{CONFIG_FILE} is not an object")
    if cfg.get("config_version") != CONFIG_VERSION:
        raise ValueError(f"{CONFIG_FILE} is version {cfg.get('config_version')}, this tracer reads "
                         f"version {CONFIG_VERSION}")
    with open(os.path.join(directory, PROGRAM_FILE), encoding="utf-8") as f:
        cfg["program"] = f.read()
    return cfg
