"""Build the deterministic host workloads (C programs of this directory) with gcc.

    from build import build_workloads      # or load this file with importlib
    paths = build_workloads()              # {"calls": Path, "usdt_probes": Path, "sysload": Path}

    python3 tests/workloads/host/build.py [DIR]   # builds and prints "name path" lines

Binaries go to a cache directory keyed by the sources' hash (default
$XDG_CACHE_HOME/kubectl-pytrace/workloads or /tmp/kubectl-pytrace-workloads), never into the
repository. Built with -O0 -g and frame pointers, so every function of interest is a real call
with a symbol uprobes can attach to. Needs gcc and sys/sdt.h (Debian: gcc, systemtap-sdt-dev).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

HERE = Path(__file__).resolve().parent
SOURCES = {"calls": "calls.c", "usdt_probes": "usdt_probes.c", "sysload": "sysload.c"}
CFLAGS = ["-O0", "-g", "-fno-omit-frame-pointer", "-Wall", "-Werror"]


class WorkloadBuildError(RuntimeError):
    pass


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "kubectl-pytrace" / "workloads"
    return Path(tempfile.gettempdir()) / "kubectl-pytrace-workloads"


def build_workloads(dest: Optional[Path] = None) -> Dict[str, Path]:
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        raise WorkloadBuildError("gcc not found (Debian: apt-get install gcc)")
    h = hashlib.sha256()
    for src in sorted(SOURCES.values()):
        h.update(src.encode() + b"\0" + (HERE / src).read_bytes())
    h.update(" ".join(CFLAGS).encode())
    out = Path(dest) if dest else _cache_root() / h.hexdigest()[:16]
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, src in SOURCES.items():
        exe = out / name
        if not exe.exists():
            tmp = out / (".%s.%d" % (name, os.getpid()))
            r = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(HERE / src)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise WorkloadBuildError("building %s failed:\n%s" % (src, r.stderr))
            os.replace(tmp, exe)
        paths[name] = exe
    return paths


if __name__ == "__main__":
    for n, p in build_workloads(Path(sys.argv[1]) if len(sys.argv) > 1 else None).items():
        print(n, p)
