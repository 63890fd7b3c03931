"""The reference bpftrace the compatibility tests compare kubectl-pytrace with: the current one.

Debian sid's bpftrace (0.27 when written), run from a chroot that hack/bpftrace-sid.sh builds on
first use and caches under $PYTRACE_CACHE (default /var/cache/kubectl-pytrace), like the base
image. BPFTRACE=/path/to/bpftrace overrides it (e.g. a bpftrace installed on the host).

    argv = reference.command() + ["-e", program]       # -> ["/repo/hack/bpftrace-sid.sh", ...]
    reference.unavailable()                            # None, or why it cannot run here
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parent.parent.parent
SID = REPO / "hack" / "bpftrace-sid.sh"


def command() -> List[str]:
    override = os.environ.get("BPFTRACE")
    return [override] if override else [str(SID)]


@lru_cache(maxsize=1)
def unavailable() -> Optional[str]:
    """None when the reference runs (building the chroot the first time: ~1 min), else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if os.environ.get("BPFTRACE"):
        return None if Path(os.environ["BPFTRACE"]).exists() else "BPFTRACE=%s does not exist" % os.environ["BPFTRACE"]
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "neither debootstrap nor apt-get to build the reference bpftrace"
    p = subprocess.run([str(SID), "--root"], capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        return "cannot build the reference bpftrace (hack/bpftrace-sid.sh): " + p.stderr.strip()[-500:]
    return None


@lru_cache(maxsize=1)
def version() -> str:
    p = subprocess.run(command() + ["--version"], capture_output=True, text=True, timeout=120)
    return p.stdout.strip()
