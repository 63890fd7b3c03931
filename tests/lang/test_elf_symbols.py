"""Symbols uprobes see (host/elf.py, host/env.py): a library's own tables, its separate debug
file (found by build id or .gnu_debuglink, as BCC finds it), and the libraries it loads."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from kubectl_pytrace.host.elf import ELF
from kubectl_pytrace.host.env import HostEnvironment, _function_symbols

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("objcopy")),
                                reason="needs gcc and objcopy (binutils) to build test libraries")

SOURCE = """
static int hidden_helper(int x) { return x * 3; }
__attribute__((noinline)) static int big_fragment(int x) { return hidden_helper(x) + 1; }
int exported(int x) { return big_fragment(x); }
"""


def run(*argv):
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def libs(tmp_path):
    """libdep.so (exported) and libstub.so, which defines nothing and loads libdep.so; libdep.so is
    stripped, its full symbol table in a separate debug file."""
    d = tmp_path
    (d / "dep.c").write_text(SOURCE)
    (d / "stub.c").write_text("int placeholder;\n")
    run("gcc", "-shared", "-fPIC", "-O1", "-Wl,--build-id", "-o", str(d / "libdep.so"), str(d / "dep.c"))
    run("gcc", "-shared", "-fPIC", "-o", str(d / "libstub.so"), str(d / "stub.c"), "-L", str(d),
        "-Wl,--no-as-needed", "-ldep")
    run("objcopy", "--only-keep-debug", str(d / "libdep.so"), str(d / "libdep.so.debug"))
    run("objcopy", "--strip-all", str(d / "libdep.so"))
    run("objcopy", "--add-gnu-debuglink=" + str(d / "libdep.so.debug"), str(d / "libdep.so"))
    return d


def test_debuglink_file_next_to_the_library(libs):
    elf = ELF(str(libs / "libdep.so"), debug_dir=str(libs / "no-debug-dir"))
    assert elf.debug_file() == str(libs / "libdep.so.debug")
    names = elf.function_names()
    assert "exported" in names and "big_fragment" in names  # a static function: only in the debug file
    assert ELF(str(libs / "libdep.so"), debug_dir=None).function_names() == ["exported"]


def test_debuglink_with_a_wrong_crc_is_ignored(libs):
    with open(libs / "libdep.so.debug", "ab") as f:
        f.write(b"changed")
    assert ELF(str(libs / "libdep.so"), debug_dir=str(libs / "x")).debug_file() is None


def test_build_id_directory(libs):
    elf = ELF(str(libs / "libdep.so"), debug_dir=str(libs / "debug"))
    bid = elf.build_id()
    assert bid and len(bid) == 40
    target = libs / "debug" / ".build-id" / bid[:2] / (bid[2:] + ".debug")
    target.parent.mkdir(parents=True)
    shutil.move(str(libs / "libdep.so.debug"), target)
    assert elf.debug_file() == str(target)


def test_needed_libraries_and_where_a_function_is(libs):
    assert ELF(str(libs / "libstub.so")).needed()[:1] == ["libdep.so"]
    env = HostEnvironment(resolve_path=lambda p: p)
    assert env.user_function_elsewhere(str(libs / "libstub.so"), "exported") == str(libs / "libdep.so")
    assert env.user_function_elsewhere(str(libs / "libstub.so"), "nothing") is None


@pytest.mark.skipif(not os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"), reason="no x86-64 glibc")
def test_partial_inlining_fragments_are_not_listed():
    names = _function_symbols("/lib/x86_64-linux-gnu/libc.so.6")
    assert "malloc" in names and not any(".part." in n for n in names)
