"""Files inside a container, by the paths a user knows from inside it.

A container's file system is reachable from the host at /proc/<pid>/root of one of its processes.
Through that magic link the kernel resolves *relative* steps inside the container, but an absolute
symlink found on the way (``/app/server -> /opt/app/server``) is followed from the *tracer's* root,
and ``..`` can climb out. So paths are resolved here one component at a time, reading symlinks and
applying them relative to the container's root, never above it; the host path returned has no
symlink left but the magic link itself.

    resolve_path(c, "/app/server")       -> "/proc/4242/root/app/server"
    resolve_binary(HOST, "libc")         -> "/usr/lib/x86_64-linux-gnu/libc.so.6" (the host is a root too)
    find_library(c, "libpytracetest")    -> ("/opt/pytrace/lib/libpytracetest.so.1.0.0", "/proc/4242/root/opt/...")
    resolve_binary(c, spec)              -> host path for a probe target: a path, or else a library name

Library names (``libfoo.so.1``, ``libfoo.so``, ``libfoo`` or ``foo``) are searched as the
container's own dynamic linker would find them: first the files its processes have mapped
(/proc/<pid>/maps: the library actually in use), then the directories of the process's
LD_LIBRARY_PATH, then the container's /etc/ld.so.cache (parsed here: the old "ld.so-1.7.0" format,
the new "glibc-ld.so.cache1.1" one, and the two combined), then the default directories.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections import deque
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple, Union

from kubectl_pytrace.containers.resolve import Container, PathNotInContainer
from kubectl_pytrace.kernel import procfs

MAX_SYMLINKS = 40   # as the kernel's path walk


@dataclass(frozen=True)
class HostFiles:
    """The host's own files as a root for the functions below (a Container is the other kind):
    no process to read library maps or LD_LIBRARY_PATH from, and paths as they are."""

    root: str = "/"
    pid: Optional[int] = None
    pids: Tuple[int, ...] = ()
    proc_root: str = "/proc"

    def describe(self) -> str:
        return "this host"


HOST = HostFiles()
Root = Union[Container, HostFiles]


def _in(c: Root) -> str:
    """' in container 3f2a9c1e0b7d (docker)' for messages; nothing for the host."""
    return "" if isinstance(c, HostFiles) else f" in {c.describe()}"

# ------------------------------------------------------------------------------------------------
# Paths


def _split(path: str) -> List[str]:
    return [p for p in path.split("/") if p and p != "."]


def resolve_in_root(root: str, path: str, *, follow_last: bool = True) -> str:
    """The symlink-free absolute path that `path` names inside the tree rooted at `root`.

    Symlinks are read and applied inside root (an absolute target restarts at root, ".." stops at
    root). Raises FileNotFoundError (a missing component, or a non-directory in the middle) or
    OSError(ELOOP).
    """
    todo = deque(_split(path))
    done: List[str] = []
    links = 0
    while todo:
        comp = todo.popleft()
        if comp == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(root, *done, comp)
        st = os.lstat(host)          # FileNotFoundError / NotADirectoryError propagate
        if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(40, "Too many levels of symbolic links", path)
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            todo.extendleft(reversed(_split(target)))
            continue
        if todo and not stat.S_ISDIR(st.st_mode):
            raise FileNotFoundError(20, "Not a directory", path)
        done.append(comp)
    return "/" + "/".join(done)


def host_path(c: Root, container_path: str) -> str:
    """The host path of an already resolved (symlink-free) path inside the container."""
    return os.path.join(c.root, container_path.lstrip("/"))


def resolve_path(c: Root, path: str, *, want_file: bool = True) -> str:
    """The host path of `path` as the container sees it, for BCC and the uprobe API.

    Raises PathNotInContainer naming the container and the path.
    """
    if not path.startswith("/"):
        if isinstance(c, HostFiles):
            path = os.path.abspath(path)
        else:
            raise PathNotInContainer(
                f"{path}: not an absolute path (give a path inside {c.describe()} starting with /, "
                f"or a library name)")
    try:
        inside = resolve_in_root(c.root, path)
        st = os.stat(host_path(c, inside))
    except FileNotFoundError:
        if not os.path.isdir(c.root):
            raise PathNotInContainer(
                f"{path}: cannot look inside {c.describe()}: its process {c.pid} exited") from None
        raise PathNotInContainer(f"{path}: no such file{_in(c)}") from None
    except OSError as e:
        raise PathNotInContainer(f"{path}: cannot be resolved{_in(c)}: {e.strerror}") from None
    if want_file and stat.S_ISDIR(st.st_mode):
        raise PathNotInContainer(f"{path}: is a directory{_in(c)}, not a program or library")
    return host_path(c, inside)


# ------------------------------------------------------------------------------------------------
# /etc/ld.so.cache

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_HEADER = 16          # char magic[11]; (pad); uint32 nlibs
_OLD_ENTRY = 12           # int32 flags; uint32 key, value
_NEW_HEADER = 48          # magic+version[20]; uint32 nlibs, len_strings; uint8 flags; pad[3]; uint32 ext; uint32 unused[3]
_NEW_ENTRY = 24           # int32 flags; uint32 key, value; uint32 osversion; uint64 hwcap

FLAG_TYPE_MASK = 0x00FF
FLAG_ELF_LIBC6 = 0x0003
FLAG_REQUIRED_MASK = 0xFF00
# glibc's sysdeps/generic/ldconfig.h: the ABI of a 64-bit library on each architecture.
_ARCH_FLAGS = {"x86_64": 0x0300, "aarch64": 0x0A00, "ppc64le": 0x0500, "ppc64": 0x0500,
               "s390x": 0x0400, "i686": 0x0000, "i386": 0x0000}


class LdCacheError(ValueError):
    pass


@dataclass(frozen=True)
class LdCacheEntry:
    name: str       # the soname, e.g. libc.so.6
    path: str       # where it is, e.g. /lib/x86_64-linux-gnu/libc.so.6
    flags: int
    hwcap: int = 0


def _cstr(data: bytes, off: int) -> str:
    if off < 0 or off >= len(data):
        raise LdCacheError(f"string offset {off} outside the file")
    end = data.find(b"\0", off)
    if end < 0:
        raise LdCacheError(f"unterminated string at {off}")
    return data[off:end].decode("utf-8", "surrogateescape")


def _parse_new(data: bytes, base: int) -> List[LdCacheEntry]:
    if len(data) < base + _NEW_HEADER:
        raise LdCacheError("truncated header")
    endian_flag = data[base + 28]
    e = {2: "<", 3: ">"}.get(endian_flag, "=")
    nlibs, = struct.unpack_from(e + "I", data, base + 20)
    if base + _NEW_HEADER + nlibs * _NEW_ENTRY > len(data):
        raise LdCacheError(f"{nlibs} entries do not fit in {len(data)} bytes")
    out = []
    for i in range(nlibs):
        flags, key, value, _osv, hwcap = struct.unpack_from(e + "iIIIQ", data, base + _NEW_HEADER + i * _NEW_ENTRY)
        out.append(LdCacheEntry(_cstr(data, base + key), _cstr(data, base + value), flags, hwcap))
    return out


def parse_ld_so_cache(data: bytes) -> List[LdCacheEntry]:
    """The entries of an ld.so.cache file, in the file's (the dynamic linker's search) order.

    Formats: new (glibc >= 2.32 default), old (libc5/glibc 2 era), and old+new combined ("compat":
    the new table hidden in the old one's string area, which is read then).
    """
    if data.startswith(NEW_MAGIC):
        return _parse_new(data, 0)
    if not data.startswith(OLD_MAGIC):
        raise LdCacheError("not an ld.so.cache file (unknown magic)")
    if len(data) < _OLD_HEADER:
        raise LdCacheError("truncated header")
    nlibs, = struct.unpack_from("=I", data, 12)
    strings = _OLD_HEADER + nlibs * _OLD_ENTRY
    if strings > len(data):
        raise LdCacheError(f"{nlibs} entries do not fit in {len(data)} bytes")
    new_base = (strings + 7) & ~7
    if data[new_base:new_base + len(NEW_MAGIC)] == NEW_MAGIC:
        return _parse_new(data, new_base)
    out = []
    for i in range(nlibs):
        flags, key, value = struct.unpack_from("=iII", data, _OLD_HEADER + i * _OLD_ENTRY)
        out.append(LdCacheEntry(_cstr(data, strings + key), _cstr(data, strings + value), flags))
    return out


def _arch_ok(flags: int, machine: str) -> bool:
    want = _ARCH_FLAGS.get(machine)
    if want is None:
        return True
    return (flags & FLAG_REQUIRED_MASK) == want and (flags & FLAG_TYPE_MASK) == FLAG_ELF_LIBC6


# ------------------------------------------------------------------------------------------------
# Libraries

def library_name_matches(basename: str, name: str) -> int:
    """0 for an exact match of a file name with a library name, 1 for a versioned one, -1 for none.

    "libfoo.so" matches libfoo.so (0) and libfoo.so.1 (1); "libfoo" and "foo" match libfoo.so,
    libfoo.so.1 and libfoo-2.36.so (1), not libfoobar.so.
    """
    if basename == name:
        return 0
    if ".so" in name:
        return 1 if basename.startswith(name + ".") else -1
    stem = name if name.startswith("lib") else "lib" + name
    return 1 if re.match(re.escape(stem) + r"(-[0-9][0-9.]*)?\.so(\.|$)", basename) else -1


def _default_dirs(machine: str) -> List[str]:
    multiarch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(machine)
    dirs = []
    if multiarch:
        dirs += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    return dirs + ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]


def _mapped_libraries(c: Root, max_procs: int = 16) -> Iterable[str]:
    if c.pid is None:
        return
    pids = [c.pid] + [p for p in c.pids if p != c.pid][:max_procs - 1]
    for pid in pids:
        for path in procfs.mapped_files(c.proc_root, pid):
            yield path


def find_library(c: Root, name: str, machine: Optional[str] = None) -> Tuple[str, str]:
    """(path inside the container, host path) of shared library `name` in container c.

    Raises PathNotInContainer when none is found, saying where it looked.
    """
    if "/" in name or not name:
        raise ValueError(f"not a library name: {name!r}")
    machine = machine or os.uname().machine

    def usable(inside: str) -> Optional[Tuple[str, str]]:
        try:
            real = resolve_in_root(c.root, inside)
            return real, resolve_path(c, real)
        except (OSError, PathNotInContainer):
            return None

    # 1. What the container's processes have loaded: exact file names first.
    best: Optional[Tuple[int, str]] = None
    for path in _mapped_libraries(c):
        score = library_name_matches(os.path.basename(path), name)
        if score >= 0 and (best is None or score < best[0]):
            best = (score, path)
            if score == 0:
                break
    if best is not None:
        found = usable(best[1])
        if found:
            return found

    # 2. LD_LIBRARY_PATH of the container's process.
    env = (procfs.environ(c.proc_root, c.pid) if c.pid is not None else None) or {}
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d.startswith("/")]
    found = _search_dirs(c, dirs, name)
    if found:
        return found

    # 3. The container's ld.so.cache.
    looked = [] if c.pid is None else ["the memory maps of its processes"]
    if dirs:
        looked.append("LD_LIBRARY_PATH " + ":".join(dirs))
    try:
        with open(resolve_path(c, "/etc/ld.so.cache"), "rb") as f:
            entries = parse_ld_so_cache(f.read())
        looked.append("/etc/ld.so.cache")
    except (PathNotInContainer, OSError, LdCacheError):
        entries = []
    for want in (0, 1):
        for e in entries:
            if _arch_ok(e.flags, machine) and library_name_matches(e.name, name) == want:
                found = usable(e.path)
                if found:
                    return found

    # 4. The default directories.
    defaults = _default_dirs(machine)
    found = _search_dirs(c, defaults, name)
    if found:
        return found
    looked.append(" ".join(defaults))
    raise PathNotInContainer(f"library {name}: not found{_in(c) or ' on ' + c.describe()} (looked in {', '.join(looked)})")


def _search_dirs(c: Root, dirs: List[str], name: str) -> Optional[Tuple[str, str]]:
    for d in dirs:
        try:
            inside = resolve_in_root(c.root, d)
            names = sorted(os.listdir(host_path(c, inside)))
        except OSError:
            continue
        hits = sorted((library_name_matches(n, name), n) for n in names)
        for score, n in hits:
            if score < 0:
                continue
            try:
                found = resolve_in_root(c.root, inside + "/" + n), resolve_path(c, inside + "/" + n)
            except (OSError, PathNotInContainer):
                continue
            if _is_elf(found[1]):  # libc.so itself is a linker script
                return found
    return None


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def resolve_binary(c: Root, spec: str) -> str:
    """The host path of a probe target given as in the program: a path inside the root
    (``uprobe:/app/server:handle``; relative ones on the host) or a library name
    (``uprobe:libc:malloc``); on the host also an executable found in $PATH (``uprobe:bash:readline``)."""
    if "/" in spec:
        return resolve_path(c, spec)
    try:
        return find_library(c, spec)[1]
    except PathNotInContainer:
        if isinstance(c, HostFiles):
            exe = _in_path(spec)
            if exe is not None:
                return exe
        raise


def _in_path(name: str) -> Optional[str]:
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
