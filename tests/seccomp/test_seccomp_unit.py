"""The profile builder without a kernel: names per architecture, the base, the output forms."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_pytrace.guard import seccomp as sc
from kubectl_pytrace.guard import syscall_names

REPO = Path(__file__).resolve().parents[2]


def test_a_profile_allows_what_was_seen_and_the_base_and_refuses_the_rest():
    p = sc.Profile.build({0: 10, 1: 5, 257: 2, 999: 1}, "amd64", {"exit_group"})
    assert p.names == ["exit_group", "openat", "read", "write"]
    assert p.unknown == [999]
    oci = p.oci()
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO"
    assert oci["architectures"] == ["SCMP_ARCH_X86_64"]
    assert oci["syscalls"] == [{"names": ["exit_group", "openat", "read", "write"], "action": "SCMP_ACT_ALLOW"}]
    assert "999" in p.summary(60, "x")
    assert p.without(["read"]).names == ["exit_group", "openat", "write"]


def test_arm64_numbers_are_arm64_names():
    p = sc.Profile.build({56: 1, 63: 1, 64: 1, 93: 1}, "arm64")  # the generic table: openat, read, write, exit
    assert p.arch == "SCMP_ARCH_AARCH64"
    assert p.names == ["exit", "openat", "read", "write"]
    with pytest.raises(sc.ProfileError, match="no system call table for architecture 's390x'"):
        sc.Profile.build({0: 1}, "s390x")


def test_the_security_profiles_operator_resource():
    cr = sc.Profile.build({0: 1}, "x86_64").custom_resource("web-server", "shop")
    assert cr["apiVersion"] == "security-profiles-operator.x-k8s.io/v1beta1"
    assert cr["kind"] == "SeccompProfile"
    assert cr["metadata"] == {"name": "web-server", "namespace": "shop"}
    assert cr["spec"]["defaultAction"] == "SCMP_ACT_ERRNO" and cr["spec"]["syscalls"][0]["names"] == ["read"]
    for bad in ("Web_Server", "-web", "web-", "a" * 254, "web server", "web\nkind: Pod"):
        with pytest.raises(sc.UsageError, match="invalid name for a SeccompProfile"):
            sc.Profile.build({0: 1}, "x86_64").custom_resource(bad, "shop")
    assert sc.resource_name("web-1.server") == "web-1.server"


def test_bases(tmp_path):
    assert sc.read_base("none") == ("nothing", set())
    what, names = sc.read_base("runtime")
    assert {"execve", "exit_group", "capset", "rt_sigreturn"} <= names and "runc" in what
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}, {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}))
    assert sc.read_base(str(profile))[1] == {"read", "write"}
    names_file = tmp_path / "n.json"
    names_file.write_text('["futex"]')
    assert sc.read_base(str(names_file))[1] == {"futex"}
    with pytest.raises(sc.UsageError, match="no such file|No such file"):
        sc.read_base(str(tmp_path / "missing.json"))
    names_file.write_text('{"x": 1')
    with pytest.raises(sc.UsageError):
        sc.read_base(str(names_file))


def test_counts_come_from_the_syscalls_map():
    from kubectl_pytrace.output.values import MapDump

    dumps = [MapDump("@syscalls", "count", [((0,), 3), ((1,), 4)]), MapDump("@other", "count", [((0,), 99)]),
             MapDump("@syscalls", "count", [((0,), 2)])]  # a second node
    assert sc.syscall_counts(dumps) == {0: 5, 1: 4}


def test_the_name_tables_are_libseccomps():
    seccomp = pytest.importorskip("seccomp", reason="python3-seccomp is not installed (hack/install.sh --test)")
    for table, arch in ((syscall_names.X86_64, seccomp.Arch.X86_64), (syscall_names.AARCH64, seccomp.Arch.AARCH64)):
        for nr, name in table.items():
            try:
                assert seccomp.resolve_syscall(arch, nr).decode() == name
            except ValueError:
                assert nr >= 457  # newer than this libseccomp: from the kernel's table
    p = subprocess.run([sys.executable, str(REPO / "hack" / "gen-syscall-names.py"), "--check"])
    assert p.returncode == 0, "kubectl_pytrace/guard/syscall_names.py is not what hack/gen-syscall-names.py writes"


def test_libseccomp_compiles_a_profile_and_names_what_it_does_not_know():
    pytest.importorskip("seccomp", reason="python3-seccomp is not installed (hack/install.sh --test)")
    p = sc.Profile.build({0: 1, 1: 1}, "amd64", {"exit_group", "no_such_call"})
    result = sc.check(p)
    assert result.rules == 3 and result.unknown == ["no_such_call"]
    assert result.instructions > 3
    arm = sc.check(sc.Profile.build({63: 1}, "arm64"))
    assert arm.rules == 1 and not arm.unknown
