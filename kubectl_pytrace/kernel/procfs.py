"""Read what the tracer needs from a procfs tree whose root is a parameter.

In a tracer pod the host's /proc is mounted elsewhere (e.g. /host/proc); every function takes
``proc_root``, whose default is ``$HOST_PROC`` or else ``/proc``. Nothing here raises for a process
that exits while it is being read: readers return None, and callers decide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

ENV_PROC = "HOST_PROC"


def default_proc_root() -> str:
    return os.environ.get(ENV_PROC) or "/proc"


def pid_dir(proc_root: str, pid: int) -> str:
    return os.path.join(proc_root, str(pid))


def list_pids(proc_root: str) -> List[int]:
    """The process (thread-group) IDs in proc_root, ascending."""
    try:
        names = os.listdir(proc_root)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
        return None
    except OSError:
        return None


def exists(proc_root: str, pid: int) -> bool:
    return os.path.isdir(pid_dir(proc_root, pid))


@dataclass(frozen=True)
class NsId:
    """A namespace as stat(2) of /proc/<pid>/ns/<kind> shows it: the nsfs device and the inode."""
    dev: int
    ino: int

    @property
    def kernel_dev(self) -> int:
        """The device in the kernel's internal dev_t encoding (MAJOR << 20 | MINOR).

        bpf_get_ns_current_pid_tgid(dev, ino, ...) compares dev with the nsfs superblock's s_dev,
        which is in this encoding; stat's st_dev is the user-space encoding. The two agree for the
        small anonymous device numbers nsfs usually gets (0:4 here), but not in general.
        """
        return (os.major(self.dev) << 20) | os.minor(self.dev)


def ns_id(proc_root: str, pid: int, kind: str) -> Optional[NsId]:
    """The namespace of `kind` ("pid", "mnt", "cgroup", ...) that process pid is in."""
    try:
        st = os.stat(os.path.join(pid_dir(proc_root, pid), "ns", kind))
    except OSError:
        return None
    return NsId(st.st_dev, st.st_ino)


def host_ns_id(proc_root: str, kind: str) -> Optional[NsId]:
    """The host's (initial) namespace of `kind`: that of kthreadd (PID 2), a kernel thread and so
    always in the initial namespaces and readable (PID 1 may refuse, as a non-dumpable init does),
    else that of PID 1."""
    st = status_fields(proc_root, 2)
    if st is not None and st.get("Name") == "kthreadd" and st.get("PPid") == "0":
        ns = ns_id(proc_root, 2, kind)
        if ns is not None:
            return ns
    return ns_id(proc_root, 1, kind)


def status_fields(proc_root: str, pid: int) -> Optional[dict]:
    """/proc/<pid>/status as a dict of raw values."""
    text = read_text(os.path.join(pid_dir(proc_root, pid), "status"))
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k] = v.strip()
    return out


def ns_pids(proc_root: str, pid: int) -> Optional[Tuple[int, ...]]:
    """The process's PID in each nested pid namespace, outermost (the reader's) first (NSpid)."""
    st = status_fields(proc_root, pid)
    if st is None:
        return None
    raw = st.get("NSpid") or st.get("Tgid")
    if not raw:
        return None
    try:
        return tuple(int(x) for x in raw.split())
    except ValueError:
        return None


def environ(proc_root: str, pid: int) -> Optional[dict]:
    try:
        with open(os.path.join(pid_dir(proc_root, pid), "environ"), "rb") as f:
            data = f.read()
    except OSError:
        return None
    out = {}
    for item in data.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
    return out


@dataclass(frozen=True)
class Mapping:
    """One file-backed line of /proc/<pid>/maps:

        55d0c1a3e000-55d0c1a3f000 r-xp 00001000 fe:01 1311862    /usr/bin/calls
        start        end          perms offset dev  inode        path (may hold spaces)
    """
    start: int
    end: int
    offset: int
    path: str  # as the process sees it, without a " (deleted)" suffix
    deleted: bool = False


def read_maps(proc_root: str, pid: int) -> List[Mapping]:
    """The file-backed mappings of a process, sorted by address ([] when it is gone)."""
    text = read_text(os.path.join(pid_dir(proc_root, pid), "maps"))
    if text is None:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        path, deleted = parts[5], parts[5].endswith(" (deleted)")
        if deleted:
            path = path[: -len(" (deleted)")]
        out.append(Mapping(start, end, int(parts[2], 16), path, deleted))
    out.sort(key=lambda m: m.start)
    return out


def mapped_files(proc_root: str, pid: int) -> List[str]:
    """Paths of the files a process has mapped (as the process sees them), each once, deleted
    files left out, in the order of their first mapping."""
    out: List[str] = []
    seen = set()
    for m in read_maps(proc_root, pid):
        if not m.deleted and m.path not in seen:
            seen.add(m.path)
            out.append(m.path)
    return out


@dataclass(frozen=True)
class Mount:
    mount_point: str
    root: str       # the path inside the filesystem that is mounted there
    fstype: str


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and all(c in "01234567" for c in s[i + 1:i + 4]):
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> List[Mount]:
    """Mounts from a /proc/<pid>/mountinfo text:

        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        id parent dev root mount-point options [optional fields...] - fstype source super-options
    """
    out: List[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split()
        rf = right.split()
        if len(lf) < 5 or not rf:
            continue
        out.append(Mount(_unescape(lf[4]), _unescape(lf[3]), rf[0]))
    return out


def find_cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Optional[Mount]:
    """The cgroup2 mount the tracer itself sees (/sys/fs/cgroup on v2 hosts, /sys/fs/cgroup/unified
    on hybrid ones); the last one mounted wins, as path lookup would."""
    text = read_text(mountinfo)
    if text is None:
        return None
    found = None
    for m in parse_mountinfo(text):
        if m.fstype == "cgroup2":
            found = m
    return found


def iter_pid_cgroups(proc_root: str) -> Iterator[Tuple[int, str]]:
    """(pid, text of /proc/<pid>/cgroup) for every process that still exists."""
    for pid in list_pids(proc_root):
        text = read_text(os.path.join(pid_dir(proc_root, pid), "cgroup"))
        if text is not None:
            yield pid, text
