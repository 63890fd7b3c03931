"""--local registrations (guard/state.py): what a SIGKILLed firewall or shaper leaves in the state
directory is removed by the next one that starts, whatever its interface; a live one's stays."""
from __future__ import annotations

import json
import os
import subprocess
import time

from kubectl_pytrace.guard import state
from kubectl_pytrace.guard.netns import NetTarget


def _registration(root, name: str, pid: int, start, age: float) -> str:
    path = os.path.join(root, name)
    os.makedirs(path)
    with open(os.path.join(path, "owner.json"), "w") as f:
        json.dump({"pid": pid, "start": start}, f)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_a_new_registration_removes_dead_ones(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    root = str(tmp_path)
    dead = _registration(root, "firewall-1-veth9", gone.pid, "12345", age=60)
    reused = _registration(root, "shape-2-veth8", os.getpid(), "1", age=60)  # this PID, another start
    alive = _registration(root, "firewall-3-veth7", os.getpid(), state._start_ticks(os.getpid()), age=60)
    young = _registration(root, "shape-4-veth6", gone.pid, "12345", age=0)  # maybe being made now
    reg = state.Registration.create("firewall", NetTarget.host(), {"interface": "lo", "generation": 1}, root=root)
    assert not os.path.exists(dead) and not os.path.exists(reused)
    assert os.path.exists(alive) and os.path.exists(young) and os.path.exists(reg.path)
    reg.remove()
    assert sorted(os.listdir(root)) == ["firewall-3-veth7", "shape-4-veth6"]
