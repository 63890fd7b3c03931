"""How `--update` reaches a firewall or shaper running on this host (`--local`).

    /run/kubectl-pytrace/guard/<kind>-<netns inode>-<interface>/
        owner.json      {"pid": N, "start": ticks}: the process that runs it
        settings.json   the settings, with a "generation" that each update increases
        applied         the generation the running process has applied

The running process polls settings.json (Registration.poll); `kubectl pytrace firewall --local
... --update` writes it (send_update) and waits for `applied`. In a cluster the trace's ConfigMap
plays the part of settings.json (k8s/guard.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

from kubectl_pytrace.errors import TraceError
from kubectl_pytrace.files import atomic_write
from kubectl_pytrace.guard.netns import NetTarget

STATE_DIR = "/run/kubectl-pytrace/guard"
APPLY_TIMEOUT = 10.0
PRUNE_AFTER = 10.0  # seconds: a registration without a live owner older than this is a dead one's


def _dir(kind: str, target: NetTarget, interface: str, root: str) -> str:
    return os.path.join(root, f"{kind}-{target.inode}-{interface}")


def _start_ticks(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _write_json(path: str, value: Any) -> None:
    if not atomic_write(path, json.dumps(value).encode(), mode=0o700):
        raise TraceError(f"cannot write {path}")


@dataclass
class Registration:
    path: str
    generation: int

    @staticmethod
    def create(kind: str, target: NetTarget, settings: Dict[str, Any], root: str = STATE_DIR) -> "Registration":
        prune(root)  # what killed processes left, on any interface
        path = _dir(kind, target, settings["interface"], root)
        shutil.rmtree(path, ignore_errors=True)  # a killed process's
        _write_json(os.path.join(path, "owner.json"), {"pid": os.getpid(), "start": _start_ticks(os.getpid())})
        _write_json(os.path.join(path, "settings.json"), settings)
        return Registration(path, int(settings.get("generation", 1)))

    def poll(self) -> Optional[Dict[str, Any]]:
        """New settings written by an update, once."""
        try:
            with open(os.path.join(self.path, "settings.json")) as f:
                settings = json.load(f)
        except (OSError, ValueError):
            return None
        generation = int(settings.get("generation", 0))
        if generation <= self.generation:
            return None
        self.generation = generation
        return settings

    def applied(self) -> None:
        atomic_write(os.path.join(self.path, "applied"), str(self.generation).encode(), mode=0o700)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def prune(root: str = STATE_DIR, settle: float = PRUNE_AFTER) -> None:
    """Removes the registrations of processes that are gone (a SIGKILL leaves its own behind);
    one younger than `settle` seconds may be another process's being made, and stays."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        path = os.path.join(root, name)
        try:
            young = time.time() - os.stat(path).st_mtime < settle
        except OSError:
            continue
        if not young and not _owner_alive(path):
            shutil.rmtree(path, ignore_errors=True)


def _owner_alive(path: str) -> bool:
    try:
        with open(os.path.join(path, "owner.json")) as f:
            owner = json.load(f)
    except (OSError, ValueError):
        return False
    return _start_ticks(int(owner["pid"])) == owner.get("start")


def send_update(kind: str, target: NetTarget, settings: Dict[str, Any], root: str = STATE_DIR,
                timeout: float = APPLY_TIMEOUT) -> int:
    """Hands new settings to the process running `kind` on that interface; returns their
    generation once it has applied them."""
    path = _dir(kind, target, settings["interface"], root)
    what = f"{kind} on interface {settings['interface']} in {target.place()}"
    if not _owner_alive(path):
        raise TraceError(f"no {what} runs on this host (nothing to --update)",
                         hint=f"start one: the same command without --update")
    with open(os.path.join(path, "settings.json")) as f:
        generation = int(json.load(f).get("generation", 1)) + 1
    _write_json(os.path.join(path, "settings.json"), dict(settings, generation=generation))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(os.path.join(path, "applied")) as f:
                if int(f.read() or 0) >= generation:
                    return generation
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise TraceError(f"the {what} did not apply the update within {timeout:.0f} s")
