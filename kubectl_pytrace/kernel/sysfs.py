"""What the kernel says about the machine in /sys, and its cgroup hierarchies (cgroupid(),
cgroup_path())."""

from __future__ import annotations

import ctypes
import fnmatch
import os
from functools import lru_cache
from typing import Dict, List, Tuple

from kubectl_pytrace.errors import LookupFailed


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """Number of possible CPUs: the size of every per-CPU map value array (ncpus)."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class _CgroupHandle(ctypes.Structure):
    # struct file_handle with room for the 8 bytes of a kernfs handle: the cgroup's id
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("cgid", ctypes.c_uint64)]


def cgroup_id(path: str) -> int:
    """A cgroup's id, as the kernel gives it in the file handle of its directory (what
    bpf_get_current_cgroup_id() returns for a task in it); LookupFailed with errno's text."""
    libc = ctypes.CDLL(None, use_errno=True)
    handle = _CgroupHandle(handle_bytes=8)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(handle), ctypes.byref(mount_id), 0) < 0:
        raise LookupFailed(os.strerror(ctypes.get_errno()))  # AT_FDCWD above
    return handle.cgid


def cgroup_roots(mounts: str = "/proc/mounts") -> Tuple[List[str], List[str]]:
    """The mount points of the cgroup v1 hierarchies and of cgroup2, in /proc/mounts' order."""
    v1: List[str] = []
    v2: List[str] = []
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return v1, v2
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[2] not in ("cgroup", "cgroup2") or not os.path.isdir(fields[1]):
            continue
        (v1 if fields[2] == "cgroup" else v2).append(fields[1])
    return v1, v2


_found: Dict[Tuple[int, str], str] = {}  # (cgroup id, hierarchy root) -> path in it


def _path_in(root: str, ident: int) -> str:
    """The cgroup's path within one hierarchy ("/" for its root), or "" when it is not there."""
    cached = _found.get((ident, root))
    if cached is not None:
        try:
            if os.stat(root + cached if cached != "/" else root).st_ino == ident:
                return cached
        except OSError:
            pass
    try:
        if os.stat(root).st_ino == ident:
            _found[(ident, root)] = "/"
            return "/"
    except OSError:
        return ""
    for parent, dirs, _files in os.walk(root):
        for d in dirs:
            full = os.path.join(parent, d)
            try:
                if os.stat(full).st_ino == ident:
                    _found[(ident, root)] = full[len(root):]
                    return _found[(ident, root)]
            except OSError:
                continue
    return ""


def cgroup_paths(ident: int, pattern: str = "*") -> str:
    """As bpftrace 0.27 prints cgroup_path(): "name:path" for the cgroup2 hierarchy ("unified")
    then each v1 hierarchy (named by its mount point, in name order) whose name matches the
    pattern and that holds the cgroup, joined by ","."""
    v1, v2 = cgroup_roots()
    named = [("unified", r) for r in v2] + sorted((os.path.basename(r), r) for r in v1)
    out = []
    for name, root in named:
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        path = _path_in(root, ident)
        if path:
            out.append(f"{name}:{path}")
    return ",".join(out)
