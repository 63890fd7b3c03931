"""Small file helpers shared by the caches: where they live, atomic writes, file identity.

Imports nothing of the package (every layer may use it).
"""

from __future__ import annotations

import os
from typing import List, Mapping, Optional


def cache_dir(*parts: str, env: Mapping[str, str] = os.environ) -> str:
    """$PYTRACE_CACHE_DIR, else /var/cache/kubectl-pytrace for root, else ~/.cache/kubectl-pytrace
    (then `parts` below it)."""
    base = env.get("PYTRACE_CACHE_DIR")
    if not base:
        base = "/var/cache/kubectl-pytrace" if os.geteuid() == 0 else os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kubectl-pytrace")
    return os.path.join(base, *parts)


def atomic_write(path: str, data: bytes, mode: int = 0o755) -> bool:
    """Writes data to path through a temporary file and a rename, so that a reader sees the old
    file or the whole new one. Returns False when the directory cannot be written: a cache that
    cannot be written only costs time."""
    try:
        import tempfile  # only on a cache miss: start-up is measured

        os.makedirs(os.path.dirname(path), mode=mode, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return True
    except OSError:
        return False


def file_identity(path: str) -> Optional[List[int]]:
    """What says a file is unchanged without reading it: device, inode, size, mtime (None: missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def process_start() -> float:
    """When this process started (wall clock, from /proc/self/stat): start-up includes the
    interpreter's own, which a clock read at the first line of Python would miss."""
    import time

    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()
