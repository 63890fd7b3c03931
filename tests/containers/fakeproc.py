"""Fake /proc trees (and cgroup2 mounts and container root file systems) in a temp dir.

A namespace is a regular file: /proc/<pid>/ns/<kind> is a symlink to it, so stat() gives each
namespace its own (dev, inode) and processes that share one share the inode, as nsfs does. A
namespace named "real-cgroup" links to the test process's own cgroup namespace, for the check that
the tracer sees absolute cgroup paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

from kubectl_pytrace.kernel.procfs import Mount

HEX = "0123456789abcdef"


def cid(seed: str) -> str:
    """A 64-hex-digit container ID starting with `seed` (hex digits)."""
    return (seed + HEX * 8)[:64]


class FakeHost:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proc = tmp / "proc"
        self.cgroup2 = tmp / "cgroup2"
        self.ns_dir = tmp / "ns"
        self.host_root = tmp / "hostroot"
        for d in (self.proc, self.cgroup2, self.ns_dir, self.host_root):
            d.mkdir(parents=True, exist_ok=True)
        # The kernel's kthreadd: the host's namespaces.
        self.add(2, ["0::/"], name="kthreadd", ppid=0, pidns="host", mntns="host",
                 cgroupns="real-cgroup")

    @property
    def mount(self) -> Mount:
        return Mount(str(self.cgroup2), "/", "cgroup2")

    def ns(self, name: str) -> str:
        if name == "real-cgroup":
            return f"/proc/{os.getpid()}/ns/cgroup"
        p = self.ns_dir / name
        if not p.exists():
            p.write_text(name)
        return str(p)

    def rootfs(self, name: str) -> Path:
        r = self.tmp / "rootfs" / name
        r.mkdir(parents=True, exist_ok=True)
        return r

    def add(self, pid: int, cgroup_lines: Sequence[str], *, name: str = "app", ppid: int = 1,
            pidns: str = "host", mntns: str = "host", cgroupns: str = "real-cgroup",
            nspid: Optional[Iterable[int]] = None, root: Optional[Path] = None,
            maps: Sequence[str] = (), environ: Optional[Dict[str, str]] = None,
            make_cgroup_dirs: bool = True) -> Path:
        d = self.proc / str(pid)
        (d / "ns").mkdir(parents=True, exist_ok=True)
        (d / "cgroup").write_text("".join(line + "\n" for line in cgroup_lines))
        ns_pids = list(nspid) if nspid is not None else [pid]
        (d / "status").write_text(
            f"Name:\t{name}\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\n"
            f"NSpid:\t{' '.join(map(str, ns_pids))}\n")
        for kind, nsname in (("pid", pidns), ("mnt", mntns), ("cgroup", cgroupns)):
            link = d / "ns" / kind
            if link.is_symlink():
                link.unlink()
            link.symlink_to(self.ns(nsname))
        rl = d / "root"
        if rl.is_symlink():
            rl.unlink()
        rl.symlink_to(root if root is not None else self.rootfs("host"))
        lines = [f"7f0000{i:06x}000-7f0000{i:06x}fff r-xp 00000000 fe:01 {1000 + i} {p}"
                 for i, p in enumerate(maps)]
        (d / "maps").write_text("".join(line + "\n" for line in lines))
        env = environ or {}
        (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
        if make_cgroup_dirs:
            for line in cgroup_lines:
                if line.startswith("0::") and not line[3:].startswith("/.."):
                    (self.cgroup2 / line[3:].lstrip("/")).mkdir(parents=True, exist_ok=True)
        return d

    def remove(self, pid: int) -> None:
        d = self.proc / str(pid)
        for p in sorted(d.rglob("*"), key=lambda p: -len(p.parts)):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        d.rmdir()

    def cgroup_ino(self, path: str) -> int:
        return os.stat(self.cgroup2 / path.lstrip("/")).st_ino

    def ns_ino(self, name: str) -> int:
        return os.stat(self.ns(name)).st_ino
