"""Find kernel headers for BCC, and say which ones when they are not the running kernel's own.

BCC compiles C against a kernel header tree: it reads the environment variable
BCC_KERNEL_SOURCE (one directory holding the whole tree) or else /lib/modules/$(uname -r)/build.
Struct layouts come from BTF (kernel/btf.py), so headers of another kernel still work for
everything else, but the user is told. The order (the project's rule):

1. $BCC_KERNEL_SOURCE, if set: it must exist.
2. <modules>/<release>/build (+ /source beside it, Debian's split).
3. /sys/kernel/kheaders.tar.xz (CONFIG_IKHEADERS; `modprobe kheaders` is tried when it is a
   module), unpacked into <cache>/kheaders/<release>/.
4. The newest /usr/src/linux-headers-* (or /usr/src/kernels/*), with a warning.

Debian splits a header package in two, and BCC_KERNEL_SOURCE takes a single directory:

    /usr/src/linux-headers-6.1.0-56-amd64/Makefile:  include /usr/src/linux-headers-6.1.0-56-common/Makefile
    /usr/src/linux-headers-6.1.0-56-amd64/include/generated/utsrelease.h:  #define UTS_RELEASE "6.1.0-56-amd64"

so the two halves are overlaid in a symlink farm, <cache>/headers/linux-headers-6.1.0-56-amd64/:
a directory only one half has becomes one symlink, a directory both have is merged, and the
arch half wins for files both have. It is built once, atomically, and reused while complete.
Nothing is ever written under the host's /lib/modules or /usr/src.

In a pod the host's trees are mounted elsewhere: pass modules_dir/src_dir; absolute symlinks such
as /lib/modules/X/build -> /usr/src/linux-headers-X are followed inside src_dir.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Tuple

from kubectl_pytrace.errors import KernelError
from kubectl_pytrace import files

KCONFIG_H = "include/linux/kconfig.h"          # BCC's own test for a usable tree (source half)
AUTOCONF_H = "include/generated/autoconf.h"     # the configured (arch/flavor) half
UTSRELEASE_H = "include/generated/utsrelease.h"
KHEADERS = "/sys/kernel/kheaders.tar.xz"
_MARKER = ".kubectl-pytrace-headers.json"


class HeadersNotFound(KernelError):
    """No usable header tree; the message lists every place looked at and how to fix it."""


@dataclass(frozen=True)
class KernelHeaders:
    """A header tree for BCC: set BCC_KERNEL_SOURCE=path (see env()).

    source is one of "BCC_KERNEL_SOURCE", "modules", "kheaders", "fallback"; release is the
    release the headers were made for ('' if they do not say); trees are the directories the
    path is made of; warning, when set, is for the caller to print on stderr.
    """
    path: str
    source: str
    release: str
    matches_running_kernel: bool
    warning: Optional[str] = None
    trees: Tuple[str, ...] = ()

    def env(self) -> dict:
        return {"BCC_KERNEL_SOURCE": self.path}


def find_headers(release: Optional[str] = None, env: Mapping[str, str] = os.environ,
                 modules_dir: str = "/lib/modules", src_dir: str = "/usr/src",
                 kheaders: str = KHEADERS, cache_dir: Optional[str] = None,
                 modprobe: bool = True) -> KernelHeaders:
    """Headers for `release` (default: the running kernel), searched in the documented order."""
    running = release or os.uname().release
    cache = cache_dir or default_cache_dir(env)
    looked: List[str] = []

    # 1. BCC_KERNEL_SOURCE
    forced = env.get("BCC_KERNEL_SOURCE")
    if forced:
        if not os.path.isdir(forced):
            raise HeadersNotFound(f"BCC_KERNEL_SOURCE={forced}: no such directory")
        if not os.path.isfile(os.path.join(forced, KCONFIG_H)):
            raise HeadersNotFound(f"BCC_KERNEL_SOURCE={forced} is not a kernel header tree "
                                  f"(it has no {KCONFIG_H}); unset it or point it at one")
        return _result(forced, "BCC_KERNEL_SOURCE", running, (forced,))
    looked.append("$BCC_KERNEL_SOURCE: not set")

    # 2. <modules>/<release>/build and /source
    kdir = os.path.join(modules_dir, running)
    build = _reroot(os.path.join(kdir, "build"), src_dir)
    source = _reroot(os.path.join(kdir, "source"), src_dir)
    if build and _has(build, KCONFIG_H):
        return _result(build, "modules", running, (build,))
    if build and source and _has(source, KCONFIG_H):
        return _result(_farm(source, build, cache), "modules", running, (source, build))
    looked.append(f"{kdir}/build: " + ("does not exist" if not build else f"has no {KCONFIG_H}"
                                       + (" and no usable source/ beside it" if not source else "")))

    # 3. kheaders
    note = _load_kheaders(kheaders, modules_dir, running) if modprobe else ""
    if os.path.isfile(kheaders):
        path = _unpack_kheaders(kheaders, os.path.join(cache, "kheaders", running))
        return KernelHeaders(path, "kheaders", running, True, None, (kheaders,))
    looked.append(f"{kheaders}: does not exist (kernel option CONFIG_IKHEADERS{note})")

    # 4. the newest installed headers of any release
    for flavor, base in _installed(src_dir):
        if _has(flavor, KCONFIG_H):
            return _result(flavor, "fallback", running, (flavor,))
        if base:
            return _result(_farm(base, flavor, cache), "fallback", running, (base, flavor))
    looked.append(f"{src_dir}/linux-headers-*, {src_dir}/kernels/*: none installed")

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    raise HeadersNotFound(
        f"no kernel headers found for kernel {running}. Looked at:\n"
        + "".join(f"  - {line}\n" for line in looked)
        + "Fix: install the headers of the running kernel (Debian/Ubuntu: apt-get install "
        f"linux-headers-$(uname -r), or linux-headers-{arch} for the newest; Fedora: dnf install "
        "kernel-devel-$(uname -r)), set BCC_KERNEL_SOURCE to a header tree, or, in the tracer "
        "pod, mount the host's /lib/modules and /usr/src.")


def default_cache_dir(env: Mapping[str, str] = os.environ) -> str:
    """files.cache_dir() as `env` says."""
    return files.cache_dir(env=env)


def headers_release(tree: str) -> str:
    """'6.1.0-56-amd64' from include/generated/utsrelease.h: #define UTS_RELEASE "6.1.0-56-amd64"."""
    try:
        with open(os.path.join(tree, UTSRELEASE_H)) as f:
            m = re.search(r'UTS_RELEASE\s+"([^"]+)"', f.read())
    except OSError:
        return ""
    return m.group(1) if m else ""


# ---------------------------------------------------------------------------------------------

def _result(path: str, source: str, running: str, trees: Tuple[str, ...]) -> KernelHeaders:
    made_for = headers_release(path)
    matches = made_for == running
    warning = None
    if not matches:
        which = " + ".join(trees)
        warning = (f"kubectl-pytrace: no kernel headers for the running kernel {running}; "
                   f"compiling with the headers of {made_for or 'an unknown release'} ({which}). "
                   "Kernel struct layouts come from the running kernel's BTF; install "
                   f"linux-headers-{running} to use its own headers.")
    return KernelHeaders(path, source, made_for, matches, warning, trees)


def _has(tree: str, rel: str) -> bool:
    return os.path.isfile(os.path.join(tree, rel))


def _reroot(path: str, src_dir: str) -> Optional[str]:
    """The directory `path` names; an absolute link into /usr/src/ is followed inside src_dir."""
    if os.path.islink(path):
        target = os.readlink(path)
        if os.path.isabs(target):
            return _host_path(target, src_dir)
    return path if os.path.isdir(path) else None


def _host_path(path: str, src_dir: str) -> Optional[str]:
    """/usr/src/X as the host sees it: src_dir/X when that exists (the host's tree mounted
    elsewhere wins over the tracer image's own /usr/src), else /usr/src/X itself."""
    if path.startswith("/usr/src/"):
        moved = os.path.join(src_dir, path[len("/usr/src/"):])
        if os.path.isdir(moved):
            return moved
    return path if os.path.isdir(path) else None


def _installed(src_dir: str) -> List[Tuple[str, Optional[str]]]:
    """(configured tree, its source half or None), newest release first.

    Debian's arch half names its other half in its Makefile:
        include /usr/src/linux-headers-6.1.0-56-common/Makefile
    """
    found = []
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "")
    pattern = [os.path.join(src_dir, "linux-headers-*"), os.path.join(src_dir, "kernels", "*")]
    for tree in [t for p in pattern for t in glob.glob(p)]:
        if not _has(tree, AUTOCONF_H):
            continue  # a source half (…-common) or something else
        base = None
        try:
            with open(os.path.join(tree, "Makefile")) as f:
                m = re.search(r"^include\s+(\S+)/Makefile\s*$", f.read(), re.M)
            if m:
                base = _host_path(os.path.join(tree, m.group(1)), src_dir)
        except OSError:
            pass
        if base is None and tree.endswith("-" + arch):
            guess = tree[: -len(arch)] + "common"
            base = guess if os.path.isdir(guess) else None
        if base is not None and not _has(base, KCONFIG_H):
            base = None
        if base is None and not _has(tree, KCONFIG_H):
            continue
        name = headers_release(tree) or os.path.basename(tree)
        found.append((_version_key(name), name.endswith("-" + arch), tree, base))
    found.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [(tree, base) for _, _, tree, base in found]


def _version_key(release: str) -> Tuple[int, ...]:
    """'6.1.0-56-amd64' -> (6, 1, 0, 56): the first four numbers, for sorting."""
    return tuple(int(n) for n in re.findall(r"\d+", release)[:4])


def _farm(base: str, overlay: str, cache: str) -> str:
    """One directory showing `overlay` over `base`, made of symlinks; reused when complete."""
    dest = os.path.join(cache, "headers", os.path.basename(os.path.normpath(overlay)))
    lower, upper = os.path.abspath(base), os.path.abspath(overlay)
    return _cached_tree(dest, {"base": lower, "overlay": upper}, (KCONFIG_H, AUTOCONF_H),
                        lambda tmp: _overlay(tmp, lower, upper))


def _overlay(dest: str, lower: str, upper: str) -> None:
    names = set(os.listdir(lower)) | set(os.listdir(upper))
    for name in sorted(names):
        lo, up = os.path.join(lower, name), os.path.join(upper, name)
        lo_dir = os.path.isdir(lo) and not os.path.islink(lo)
        up_dir = os.path.isdir(up) and not os.path.islink(up)
        if lo_dir and up_dir:
            os.mkdir(os.path.join(dest, name))
            _overlay(os.path.join(dest, name), lo, up)
        else:
            os.symlink(up if os.path.lexists(up) else lo, os.path.join(dest, name))


def _built(dest: str, stamp: dict, needs: Tuple[str, ...]) -> bool:
    try:
        with open(os.path.join(dest, _MARKER)) as f:
            return json.load(f) == stamp and all(_has(dest, n) for n in needs)
    except (OSError, ValueError):
        return False


def _cached_tree(dest: str, stamp: dict, needs: Tuple[str, ...],
                 build: Callable[[str], None]) -> str:
    """`dest` if built from `stamp` and complete; else build it in a temporary directory and
    move that into place. A complete tree is never replaced: another tracer may be using it."""
    if _built(dest, stamp, needs):
        return dest
    import shutil
    import tempfile  # here, not at the top: the warm path (every start-up) needs neither

    parent = os.path.dirname(dest)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    except OSError as e:
        raise HeadersNotFound(f"cannot write the header cache {parent}: {e.strerror}; set "
                              "PYTRACE_CACHE_DIR to a writable directory") from None
    try:
        build(tmp)
        with open(os.path.join(tmp, _MARKER), "w") as f:
            json.dump(stamp, f)
        if not _built(dest, stamp, needs):  # nobody finished first
            if os.path.lexists(dest):
                old = f"{dest}.old-{os.getpid()}"
                os.rename(dest, old)
                shutil.rmtree(old, ignore_errors=True)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not _built(dest, stamp, needs):
                    raise
    except OSError as e:
        raise HeadersNotFound(f"cannot build kernel headers in {dest}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _load_kheaders(path: str, modules_dir: str, release: str) -> str:
    """Try `modprobe kheaders` when the module exists; return a note for the error message."""
    if os.path.isfile(path):
        return ""
    kos = glob.glob(os.path.join(modules_dir, release, "kernel", "kernel", "kheaders.ko*"))
    if not kos:
        return "; no kheaders module to load"
    if os.geteuid() != 0 or not any(os.access(os.path.join(d, "modprobe"), os.X_OK)
                                    for d in os.environ.get("PATH", "/sbin:/usr/sbin").split(":")):
        return "; kheaders module not loaded: needs root and modprobe"
    import subprocess

    cmd = ["modprobe"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(modules_dir)))
    if os.path.abspath(modules_dir) != "/lib/modules":
        cmd += ["-d", root]
    try:
        r = subprocess.run(cmd + ["kheaders"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"; modprobe kheaders failed: {e}"
    return "" if r.returncode == 0 else f"; modprobe kheaders failed: {r.stderr.strip()}"


def _unpack_kheaders(tarball: str, dest: str) -> str:
    """Unpack /sys/kernel/kheaders.tar.xz once (stamp: the tarball's size)."""
    def unpack(tmp: str) -> None:
        import tarfile

        try:
            with tarfile.open(tarball, "r:*") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python without extraction filters: refuse paths leaving the directory
                    for member in tar.getmembers():
                        if member.name.startswith("/") or ".." in member.name.split("/"):
                            raise HeadersNotFound(f"{tarball}: unsafe path {member.name!r}")
                    tar.extractall(tmp)
        except tarfile.TarError as e:
            raise HeadersNotFound(f"cannot unpack {tarball}: {e}") from None

    return _cached_tree(dest, {"kheaders": os.stat(tarball).st_size}, (KCONFIG_H,), unpack)
