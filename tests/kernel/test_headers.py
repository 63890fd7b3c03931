"""kubectl_pytrace.kernel.headers: each branch on fake trees, then the real host and a real BCC compile."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from kubectl_pytrace.kernel.headers import HeadersNotFound, find_headers

REL = "6.18.0-test"


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def source_half(root: Path) -> Path:
    """What linux-headers-*-common holds: the unconfigured tree."""
    write(root / "Makefile", "# top Makefile\n")
    write(root / "include/linux/kconfig.h", "/* kconfig */\n")
    write(root / "include/linux/sched.h", "/* sched */\n")
    write(root / "arch/x86/include/asm/ptrace.h", "/* common ptrace */\n")
    return root


def arch_half(root: Path, release: str, common: str) -> Path:
    """What linux-headers-*-amd64 holds: config, generated headers, a Makefile naming -common."""
    write(root / "Makefile", f"include {common}/Makefile\n")
    write(root / "include/generated/autoconf.h", "#define CONFIG_X86 1\n")
    write(root / "include/generated/utsrelease.h", f'#define UTS_RELEASE "{release}"\n')
    write(root / "include/config/X86", "")
    write(root / "arch/x86/include/generated/asm/unistd_64_x32.h", "/* generated */\n")
    write(root / "arch/x86/include/asm/ptrace.h", "/* arch ptrace */\n")
    return root


def full_tree(root: Path, release: str) -> Path:
    source_half(root)
    write(root / "include/generated/autoconf.h", "")
    write(root / "include/generated/utsrelease.h", f'#define UTS_RELEASE "{release}"\n')
    return root


@pytest.fixture
def roots(tmp_path):
    """Empty host roots: (modules_dir, src_dir, kheaders path, cache dir)."""
    return dict(modules_dir=str(tmp_path / "lib/modules"), src_dir=str(tmp_path / "usr/src"),
                kheaders=str(tmp_path / "sys/kheaders.tar.xz"), cache_dir=str(tmp_path / "cache"),
                modprobe=False)


def test_env_var_wins(tmp_path, roots):
    tree = full_tree(tmp_path / "mine", REL)
    full_tree(Path(roots["modules_dir"]) / REL / "build", REL)
    h = find_headers(REL, env={"BCC_KERNEL_SOURCE": str(tree)}, **roots)
    assert (h.path, h.source, h.release, h.matches_running_kernel, h.warning) == \
        (str(tree), "BCC_KERNEL_SOURCE", REL, True, None)
    assert h.env() == {"BCC_KERNEL_SOURCE": str(tree)}


def test_env_var_other_release_warns(tmp_path, roots):
    tree = full_tree(tmp_path / "old", "5.10.0-9-amd64")
    h = find_headers(REL, env={"BCC_KERNEL_SOURCE": str(tree)}, **roots)
    assert not h.matches_running_kernel and h.release == "5.10.0-9-amd64"
    assert h.warning.startswith(f"kubectl-pytrace: no kernel headers for the running kernel {REL}; "
                                f"compiling with the headers of 5.10.0-9-amd64 ({tree})")


def test_env_var_must_exist(tmp_path, roots):
    with pytest.raises(HeadersNotFound, match=rf"^BCC_KERNEL_SOURCE={tmp_path}/nope: no such directory$"):
        find_headers(REL, env={"BCC_KERNEL_SOURCE": str(tmp_path / "nope")}, **roots)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeadersNotFound, match="is not a kernel header tree"):
        find_headers(REL, env={"BCC_KERNEL_SOURCE": str(tmp_path / "empty")}, **roots)


def test_modules_build(roots):
    build = full_tree(Path(roots["modules_dir"]) / REL / "build", REL)
    h = find_headers(REL, env={}, **roots)
    assert (h.path, h.source, h.matches_running_kernel, h.warning) == (str(build), "modules", True, None)


def test_modules_build_and_source_through_absolute_links(tmp_path, roots):
    """Debian's /lib/modules/R/{build,source} -> /usr/src/..., with /usr/src mounted elsewhere."""
    src = Path(roots["src_dir"])
    common = source_half(src / f"linux-headers-{REL}-common")
    arch = arch_half(src / f"linux-headers-{REL}-amd64", REL, f"/usr/src/{common.name}")
    kdir = Path(roots["modules_dir"]) / REL
    kdir.mkdir(parents=True)
    os.symlink(f"/usr/src/{arch.name}", kdir / "build")    # dangling here: /usr/src is elsewhere
    os.symlink(f"/usr/src/{common.name}", kdir / "source")
    h = find_headers(REL, env={}, **roots)
    assert h.source == "modules" and h.matches_running_kernel and h.warning is None
    assert h.trees == (str(common), str(arch))
    farm = Path(h.path)
    assert farm.parent == Path(roots["cache_dir"]) / "headers"
    assert (farm / "include/linux/kconfig.h").read_text() == "/* kconfig */\n"
    assert (farm / "include/generated/autoconf.h").exists()
    assert (farm / "arch/x86/include/asm/ptrace.h").read_text() == "/* arch ptrace */\n"  # arch wins
    assert (farm / "arch/x86/include/generated/asm/unistd_64_x32.h").exists()
    assert not any(p.is_symlink() for p in Path(roots["modules_dir"]).rglob("*") if p.parent != kdir)


def test_kheaders_tarball(tmp_path, roots):
    tar_path = Path(roots["kheaders"])
    tar_path.parent.mkdir(parents=True)
    with tarfile.open(tar_path, "w:xz") as tar:
        for name, data in [("./include/linux/kconfig.h", b"/* k */\n"),
                           ("./include/generated/utsrelease.h", f'#define UTS_RELEASE "{REL}"\n'.encode()),
                           ("./arch/x86/include/asm/ptrace.h", b"/* p */\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    h = find_headers(REL, env={}, **roots)
    assert (h.source, h.matches_running_kernel, h.warning) == ("kheaders", True, None)
    assert h.path == str(Path(roots["cache_dir"]) / "kheaders" / REL)
    assert (Path(h.path) / "include/linux/kconfig.h").read_text() == "/* k */\n"
    before = os.stat(Path(h.path) / "include/linux/kconfig.h").st_ino
    assert find_headers(REL, env={}, **roots).path == h.path            # unpacked once, reused
    assert os.stat(Path(h.path) / "include/linux/kconfig.h").st_ino == before


def test_debian_split_fallback_takes_newest_and_reuses_farm(roots):
    src = Path(roots["src_dir"])
    for rel in ("5.10.0-30-amd64", "6.1.0-56-amd64", "6.1.0-9-amd64"):
        ver = rel.rsplit("-", 1)[0]
        common = source_half(src / f"linux-headers-{ver}-common")
        arch_half(src / f"linux-headers-{rel}", rel, f"/usr/src/{common.name}")
    h = find_headers(REL, env={}, **roots)
    assert (h.source, h.release, h.matches_running_kernel) == ("fallback", "6.1.0-56-amd64", False)
    assert h.trees == (str(src / "linux-headers-6.1.0-56-common"), str(src / "linux-headers-6.1.0-56-amd64"))
    assert "headers of 6.1.0-56-amd64" in h.warning and f"linux-headers-{REL}" in h.warning
    farm = Path(h.path)
    assert farm == Path(roots["cache_dir"]) / "headers" / "linux-headers-6.1.0-56-amd64"
    stamp = os.stat(farm).st_ino
    assert find_headers(REL, env={}, **roots).path == h.path
    assert os.stat(farm).st_ino == stamp                                  # complete: reused
    os.unlink(farm / "include" / "linux")                                  # broken: rebuilt
    assert (Path(find_headers(REL, env={}, **roots).path) / "include/linux/kconfig.h").exists()


def test_nothing_found_names_every_place(roots):
    src = Path(roots["src_dir"])
    source_half(src / "linux-headers-6.1.0-56-common")  # a lone source half is not enough
    with pytest.raises(HeadersNotFound) as e:
        find_headers(REL, env={}, **roots)
    msg = str(e.value)
    assert msg.startswith(f"no kernel headers found for kernel {REL}. Looked at:\n"
                          "  - $BCC_KERNEL_SOURCE: not set\n"
                          f"  - {roots['modules_dir']}/{REL}/build: does not exist\n"
                          f"  - {roots['kheaders']}: does not exist (kernel option CONFIG_IKHEADERS)\n"
                          f"  - {src}/linux-headers-*, {src}/kernels/*: none installed\n")
    assert "apt-get install linux-headers-$(uname -r)" in msg
    assert "mount the host's /lib/modules and /usr/src" in msg


# ---------------------------------------------------------------------------------------------

def test_this_host(tmp_path):
    """Here: no headers for the running kernel, Debian's 6.1 split headers as the fallback."""
    release = os.uname().release
    if os.path.isdir(f"/lib/modules/{release}/build"):
        pytest.skip(f"this host has headers for {release}; the fallback is not exercised")
    if not list(Path("/usr/src").glob("linux-headers-*-common")):
        pytest.skip("no Debian linux-headers-* installed (apt-get install linux-headers-amd64)")
    h = find_headers(env={}, cache_dir=str(tmp_path))
    assert h.source in ("fallback", "kheaders")
    if h.source == "fallback":
        assert not h.matches_running_kernel and release in h.warning
        assert len(h.trees) == 2 and h.trees[0].endswith("-common")


@pytest.mark.root
@pytest.mark.bpf
def test_bcc_compiles_with_the_farm(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to load a BPF program")
    pytest.importorskip("bcc", reason="BCC's Python module (apt-get install python3-bpfcc)")
    h = find_headers(env={}, cache_dir=str(tmp_path))
    prog = textwrap.dedent(r'''
        import sys
        from bcc import BPF
        b = BPF(text="""
        #include <linux/sched.h>
        #include <net/sock.h>
        TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
            u64 n = sizeof(struct sock) + TASK_COMM_LEN;
            bpf_trace_printk("%llu\\n", n);
            return 0;
        }
        """)
        print("loaded")
    ''')
    env = dict(os.environ, **h.env())
    r = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "loaded", r.stderr[-2000:]


def test_unwritable_cache_is_a_clear_error(tmp_path, roots):
    src = Path(roots["src_dir"])
    common = source_half(src / "linux-headers-6.1.0-56-common")
    arch_half(src / "linux-headers-6.1.0-56-amd64", "6.1.0-56-amd64", f"/usr/src/{common.name}")
    (tmp_path / "not-a-dir").write_text("")
    roots["cache_dir"] = str(tmp_path / "not-a-dir" / "cache")
    with pytest.raises(HeadersNotFound, match=r"^cannot write the header cache .*not-a-dir/cache/headers: "
                                              r".*; set PYTRACE_CACHE_DIR to a writable directory$"):
        find_headers(REL, env={}, **roots)


def test_default_cache_dir():
    from kubectl_pytrace.kernel.headers import default_cache_dir
    assert default_cache_dir({"PYTRACE_CACHE_DIR": "/x"}) == "/x"
    if os.geteuid() == 0:
        assert default_cache_dir({}) == "/var/cache/kubectl-pytrace"
