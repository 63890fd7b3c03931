"""Paths and libraries inside a container (fake root file systems), and ld.so.cache against ldconfig."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kubectl_pytrace.containers import fs as F
from kubectl_pytrace.containers import resolve as C

from fakeproc import FakeHost, cid

LDCONFIG = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
MACHINE = os.uname().machine


@pytest.fixture
def host(tmp_path):
    """Container A (PID 100) with root file system `ra`; the host's own root file system has a
    /etc/passwd and /app/server of its own, which the container's paths must never reach."""
    h = FakeHost(tmp_path)
    ra = h.rootfs("a")
    for d in ("app", "usr/bin", "usr/lib", "etc", "opt/lib", "lib"):
        (ra / d).mkdir(parents=True, exist_ok=True)
    (ra / "app/server").write_text("container server")
    (ra / "etc/passwd").write_text("container passwd")
    (ra / "usr/bin/tool").write_text("tool")
    os.symlink("/app/server", ra / "usr/bin/server-abs")          # absolute: inside the container
    os.symlink("../../app/server", ra / "usr/bin/server-rel")     # relative
    os.symlink("../../../../../../etc/passwd", ra / "app/escape")  # climbs to the container's /
    os.symlink("/usr/bin", ra / "bin")                            # symlinked directory
    os.symlink("loop2", ra / "app/loop1")
    os.symlink("loop1", ra / "app/loop2")
    os.symlink("/nonexistent", ra / "app/dangling")
    hostfs = h.rootfs("host")
    (hostfs / "app").mkdir(parents=True, exist_ok=True)
    (hostfs / "app/only-on-host").write_text("host")
    a = cid("aaaa")
    h.add(100, [f"0::/docker/{a}"], pidns="pa", mntns="ma", nspid=[100, 1], root=ra)
    c = C.resolve_container(a, proc_root=str(h.proc), cgroup2_mount=h.mount)
    return h, c, ra


def test_plain_path(host):
    h, c, ra = host
    p = F.resolve_path(c, "/app/server")
    assert p == f"{h.proc}/100/root/app/server"
    assert Path(p).read_text() == "container server"


@pytest.mark.parametrize("given,inside", [
    ("/usr/bin/server-abs", "/app/server"),
    ("/usr/bin/server-rel", "/app/server"),
    ("/app/escape", "/etc/passwd"),
    ("/bin/tool", "/usr/bin/tool"),
    ("/bin/../../app/server", "/app/server"),      # ".." after a symlinked directory: its target's parent
    ("/../../../etc/passwd", "/etc/passwd"),
    ("//app/./server", "/app/server"),
])
def test_symlinks_stay_inside(host, given, inside):
    h, c, ra = host
    assert F.resolve_in_root(c.root, given) == inside
    p = F.resolve_path(c, given)
    assert p == f"{h.proc}/100/root{inside}"
    assert Path(p).read_text() == (ra / inside.lstrip("/")).read_text()


def test_errors_name_container_and_path(host):
    h, c, ra = host
    short = c.short_id
    cases = {
        "/app/missing": f"/app/missing: no such file in container {short} (docker)",
        "/app/only-on-host": f"/app/only-on-host: no such file in container {short} (docker)",
        "/app/server/x": f"/app/server/x: no such file in container {short} (docker)",
        "/app/dangling": f"/app/dangling: no such file in container {short} (docker)",
        "/app/loop1": f"/app/loop1: cannot be resolved in container {short} (docker): Too many levels of symbolic links",
        "/app": f"/app: is a directory in container {short} (docker), not a program or library",
        "app/server": f"app/server: not an absolute path (give a path inside container {short} (docker) "
                      f"starting with /, or a library name)",
    }
    for path, msg in cases.items():
        with pytest.raises(C.PathNotInContainer) as e:
            F.resolve_path(c, path)
        assert str(e.value) == msg, path


def test_process_gone(host):
    h, c, ra = host
    h.remove(100)
    with pytest.raises(C.PathNotInContainer) as e:
        F.resolve_path(c, "/app/server")
    assert str(e.value) == f"/app/server: cannot look inside container {c.short_id} (docker): its process 100 exited"


# ------------------------------------------------------------------------------------------------
# Library names

@pytest.mark.parametrize("basename,name,score", [
    ("libfoo.so", "libfoo.so", 0), ("libfoo.so.1", "libfoo.so", 1), ("libfoo.so.1", "libfoo.so.1", 0),
    ("libfoo.so.1.2", "libfoo.so.1", 1), ("libfoo.so.1", "libfoo", 1), ("libfoo.so.1", "foo", 1),
    ("libc-2.31.so", "libc", 1), ("libc.so.6", "c", 1), ("libcap.so.2", "libc", -1),
    ("libfoobar.so", "libfoo", -1), ("libfoo.so.10", "libfoo.so.1", -1), ("libfoo.a", "libfoo", -1),
])
def test_library_name_matches(basename, name, score):
    assert F.library_name_matches(basename, name) == score


def _lib(root: Path, path: str) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\x7fELF")


def test_library_from_maps_first(host):
    h, c, ra = host
    _lib(ra, "/opt/lib/libfoo.so.2")
    _lib(ra, "/usr/lib/libfoo.so.1")
    h.add(100, [f"0::/docker/{c.id}"], pidns="pa", mntns="ma", nspid=[100, 1], root=ra,
          maps=["/app/server", "/opt/lib/libfoo.so.2"])
    assert F.find_library(c, "libfoo") == ("/opt/lib/libfoo.so.2", f"{h.proc}/100/root/opt/lib/libfoo.so.2")
    assert F.resolve_binary(c, "foo") == f"{h.proc}/100/root/opt/lib/libfoo.so.2"
    assert F.resolve_binary(c, "/app/server") == f"{h.proc}/100/root/app/server"


def test_library_from_ld_library_path(host):
    h, c, ra = host
    _lib(ra, "/srv/lib/libbar.so.3")
    _lib(ra, "/usr/lib/libbar.so.3")
    h.add(100, [f"0::/docker/{c.id}"], pidns="pa", mntns="ma", nspid=[100, 1], root=ra,
          environ={"LD_LIBRARY_PATH": "relative:/srv/lib"})
    assert F.find_library(c, "libbar.so")[0] == "/srv/lib/libbar.so.3"


def test_library_from_default_dirs(host):
    h, c, ra = host
    _lib(ra, "/usr/lib/libbaz.so.1.0")
    os.symlink("libbaz.so.1.0", ra / "usr/lib/libbaz.so.1")
    assert F.find_library(c, "libbaz")[0] == "/usr/lib/libbaz.so.1.0"   # the symlink, resolved


def test_library_not_found(host):
    h, c, ra = host
    with pytest.raises(C.PathNotInContainer) as e:
        F.find_library(c, "libnothere")
    dirs = " ".join(F._default_dirs(MACHINE))
    assert str(e.value) == (f"library libnothere: not found in container {c.short_id} (docker) "
                            f"(looked in the memory maps of its processes, {dirs})")


@pytest.mark.skipif(LDCONFIG is None, reason="ldconfig (libc-bin) is not installed")
def test_library_from_the_containers_ld_so_cache(host, tmp_path):
    h, c, ra = host
    # A real library in a directory only the container's ld.so.conf names; the host's ldconfig
    # builds the container's cache (-r: as if chrooted).
    src = tmp_path / "q.c"
    src.write_text("int q(void) { return 1; }\n")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    (ra / "srv/qlib").mkdir(parents=True)
    subprocess.run([gcc, "-shared", "-fPIC", "-Wl,-soname,libq.so.1", "-o", str(ra / "srv/qlib/libq.so.1.0.0"),
                    str(src)], check=True)
    (ra / "etc/ld.so.conf").write_text("/srv/qlib\n")
    subprocess.run([LDCONFIG, "-r", str(ra)], check=True)
    assert (ra / "etc/ld.so.cache").exists()
    inside, hostp = F.find_library(c, "libq")
    assert inside == "/srv/qlib/libq.so.1.0.0"        # the cache names the soname link; resolved
    assert hostp == f"{h.proc}/100/root/srv/qlib/libq.so.1.0.0"
    with pytest.raises(C.PathNotInContainer, match=r"looked in the memory maps of its processes, /etc/ld.so.cache, "):
        F.find_library(c, "libnothere")


# ------------------------------------------------------------------------------------------------
# ld.so.cache formats, checked against glibc's own reader (ldconfig -p)

def _ldconfig_p(cache: Path):
    out = subprocess.run([LDCONFIG, "-p", "-C", str(cache)], capture_output=True, text=True, check=True).stdout
    entries = []
    for line in out.splitlines()[1:]:
        m = re.match(r"^\s+(\S+) \((.*?)\) => (.*)$", line)
        if m:
            entries.append((m.group(1), m.group(3)))
    return entries


@pytest.mark.skipif(LDCONFIG is None, reason="ldconfig (libc-bin) is not installed")
def test_host_ld_so_cache_matches_ldconfig():
    data = Path("/etc/ld.so.cache").read_bytes()
    ours = [(e.name, e.path) for e in F.parse_ld_so_cache(data)]
    assert ours == _ldconfig_p(Path("/etc/ld.so.cache"))
    assert any(n == "libc.so.6" for n, _ in ours)


@pytest.mark.skipif(LDCONFIG is None, reason="ldconfig (libc-bin) is not installed")
@pytest.mark.parametrize("fmt", ["new", "old", "compat"])
def test_cache_formats(tmp_path, fmt):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "lib1").mkdir()
    (root / "lib2").mkdir()
    src = tmp_path / "x.c"
    src.write_text("int x(void) { return 0; }\n")
    for d, soname, fname in (("lib1", "libone.so.1", "libone.so.1.0"), ("lib1", "libtwo.so.2", "libtwo.so.2.5"),
                             ("lib2", "libthree.so.3", "libthree.so.3")):
        subprocess.run([gcc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(root / d / fname), str(src)],
                       check=True)
    (root / "etc/ld.so.conf").write_text("/lib1\n/lib2\n")
    subprocess.run([LDCONFIG, "-r", str(root), "-c", fmt], check=True, capture_output=True)
    cache = root / "etc/ld.so.cache"
    data = cache.read_bytes()
    assert data.startswith(F.NEW_MAGIC if fmt == "new" else F.OLD_MAGIC)
    ours = [(e.name, e.path) for e in F.parse_ld_so_cache(data)]
    assert ours == _ldconfig_p(cache)
    assert sorted(ours) == [("libone.so.1", "/lib1/libone.so.1"), ("libthree.so.3", "/lib2/libthree.so.3"),
                            ("libtwo.so.2", "/lib1/libtwo.so.2")]
    assert all(F._arch_ok(e.flags, MACHINE) for e in F.parse_ld_so_cache(data))


def test_cache_garbage():
    with pytest.raises(F.LdCacheError, match="unknown magic"):
        F.parse_ld_so_cache(b"not a cache")
    with pytest.raises(F.LdCacheError):
        F.parse_ld_so_cache(F.NEW_MAGIC + b"\xff\xff\xff\x7f" + b"\0" * 30)
    with pytest.raises(F.LdCacheError):
        F.parse_ld_so_cache(F.OLD_MAGIC + b"\0" + b"\xff\xff\xff\x7f")
