"""kubectl_pytrace.kernel.tracefs: fake trees for the parsers, then the real tracefs and kallsyms."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubectl_pytrace.kernel import tracefs as T
from kubectl_pytrace.kernel.tracefs import TpField, TracefsError

COMMON = """\
name: {name}
ID: {id}
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

"""

FAKE = {
    ("sched", "sched_process_exec"): """\
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
""",
    ("sched", "sched_switch"): """\
\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
""",
    ("tcp", "tcp_probe"): """\
\tfield:__u8 saddr[sizeof(struct sockaddr_in6)];\toffset:8;\tsize:28;\tsigned:0;
\tfield:const void * skaddr;\toffset:40;\tsize:8;\tsigned:0;
\tfield:struct sk_buff *skb;\toffset:48;\tsize:8;\tsigned:0;
\tfield:unsigned long call_site;\toffset:56;\tsize:8;\tsigned:0;
""",
    ("syscalls", "sys_enter_openat"): """\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
""",
    ("syscalls", "sys_enter_open"): "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n",
    ("syscalls", "sys_exit_open"): "\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n",
}


@pytest.fixture
def fake_tracefs(tmp_path) -> str:
    root = tmp_path / "tracing"
    for i, ((cat, name), body) in enumerate(sorted(FAKE.items())):
        d = root / "events" / cat / name
        d.mkdir(parents=True)
        (d / "format").write_text(COMMON.format(name=name, id=100 + i) + body +
                                  '\nprint fmt: "whatever", REC->x\n')
        (d / "enable").write_text("0\n")
    (root / "events" / "enable").write_text("0\n")       # files beside categories are ignored
    (root / "events" / "header_page").write_text("")
    (root / "available_events").write_text("".join(f"{c}:{n}\n" for c, n in FAKE))
    return str(root)


def test_fake_listing_wildcards(fake_tracefs):
    assert T.list_tracepoints("syscalls", "sys_enter_open*", root=fake_tracefs) == [
        ("syscalls", "sys_enter_open"), ("syscalls", "sys_enter_openat")]
    assert T.list_tracepoints("s*", "*_open", root=fake_tracefs) == [
        ("syscalls", "sys_enter_open"), ("syscalls", "sys_exit_open")]
    assert len(T.list_tracepoints(root=fake_tracefs)) == len(FAKE)
    assert T.list_tracepoints("syscalls", "sys_enter_open?t", root=fake_tracefs) == []  # ? is literal
    assert T.list_tracepoints("sched", "sched_switch", root=fake_tracefs) == [("sched", "sched_switch")]


def test_fake_listing_falls_back_to_available_events(fake_tracefs):
    shutil.rmtree(Path(fake_tracefs) / "events")
    assert T.list_tracepoints("sched", "*", root=fake_tracefs) == [
        ("sched", "sched_process_exec"), ("sched", "sched_switch")]


def test_fake_formats(fake_tracefs):
    exec_ = T.tracepoint_format("sched", "sched_process_exec", root=fake_tracefs)
    assert exec_.fields == (TpField("filename", "char", 8, 4, False, None, True),
                            TpField("pid", "pid_t", 12, 4, True))
    assert [f.name for f in exec_.common_fields] == ["common_type", "common_flags",
                                                     "common_preempt_count", "common_pid"]
    assert exec_.fields[0].decl == "__data_loc char[] filename"
    switch = T.tracepoint_format("sched", "sched_switch", root=fake_tracefs)
    assert switch.field("prev_comm") == TpField("prev_comm", "char", 8, 16, False, 16)
    assert switch.field("prev_comm").decl == "char prev_comm[16]"
    probe = T.tracepoint_format("tcp", "tcp_probe", root=fake_tracefs)
    assert [(f.name, f.c_type, f.array_len) for f in probe.fields] == [
        ("saddr", "__u8", 28), ("skaddr", "const void *", None), ("skb", "struct sk_buff *", None),
        ("call_site", "unsigned long", None)]
    openat = T.tracepoint_format("syscalls", "sys_enter_openat", root=fake_tracefs)
    assert [(f.name, f.sized_type) for f in openat.fields] == [
        ("__syscall_nr", "int"), ("dfd", "s64"), ("filename", "const char *")]


def test_fake_missing_tracepoint_messages(fake_tracefs):
    with pytest.raises(TracefsError, match=r"^tracepoint not found: syscalls:sys_enter_opnat "
                                           r"\(did you mean syscalls:sys_enter_openat\?\)$"):
        T.tracepoint_format("syscalls", "sys_enter_opnat", root=fake_tracefs)
    with pytest.raises(TracefsError, match=r"^tracepoint not found: syscall:sys_enter_openat \(no "
                                           r"category 'syscall'; did you mean syscalls:sys_enter_openat\?\)$"):
        T.tracepoint_format("syscall", "sys_enter_openat", root=fake_tracefs)
    with pytest.raises(TracefsError, match=r"^tracepoint not found: zzz:yyy \(no category 'zzz'\)$"):
        T.tracepoint_format("zzz", "yyy", root=fake_tracefs)


def test_fake_kernel_functions(tmp_path):
    (tmp_path / "available_filter_functions").write_text(
        "vfs_read\nvfs_write\nvfs_read\nfoo.part.0\nehci_disable_ASE [ehci_hcd]\n")
    assert T.kernel_functions("vfs_*", root=str(tmp_path)) == ["vfs_read", "vfs_write"]
    assert T.kernel_functions("*ASE", root=str(tmp_path)) == ["ehci_disable_ASE"]
    (tmp_path / "available_filter_functions").unlink()
    with pytest.raises(TracefsError, match="cannot list kernel functions: .*No such file"):
        T.kernel_functions(root=str(tmp_path))


def test_fake_ensure_tracefs(tmp_path, fake_tracefs):
    empty = tmp_path / "unmounted"
    empty.mkdir()
    assert T.ensure_tracefs([str(empty), fake_tracefs]) == fake_tracefs
    with pytest.raises(TracefsError, match=rf"^tracefs is not mounted \(looked at {empty}\); as root "
                                           rf"run: mount -t tracefs nodev {empty}$"):
        T.ensure_tracefs([str(empty)], mount=False)


def test_fake_kallsyms(tmp_path):
    ks = tmp_path / "kallsyms"
    ks.write_text(textwrap.dedent("""\
        ffffffff81000100 T second
        ffffffff81000000 T _stext
        ffffffff81000000 T first_alias
        ffffffff82000000 D some_data
        ffffffffc0201000 t mod_func\t[mymod]
        ffffffff81000200 W weak_one
        """))
    k = T.KernelSymbols(str(ks))
    assert len(k) == 5                               # data symbol skipped, as BCC does
    assert k.ksym(0xFFFFFFFF81000150) == "second"
    assert k.ksym_offset(0xFFFFFFFF81000150) == "second+80"
    assert k.ksym_offset(0xFFFFFFFF81000000) in ("_stext+0", "first_alias+0")
    assert k.ksym(0xFFFFFFFFC0201010) == "mod_func"   # module name dropped
    assert k.ksym(0x1000) == "0x1000"
    assert k.address("weak_one") == 0xFFFFFFFF81000200 and k.address("nope") is None
    ks.write_text("0000000000000000 T hidden\n0000000000000000 t hidden2\n")
    with pytest.raises(TracefsError, match="no symbol addresses"):
        T.KernelSymbols(str(ks))


# ---------------------------------------------------------------------------------------------
# The real kernel

def real_tracefs() -> str:
    try:
        return T.ensure_tracefs()
    except TracefsError as e:
        pytest.skip(f"no tracefs: {e}")


def test_real_listing():
    root = real_tracefs()
    found = T.list_tracepoints("syscalls", "sys_enter_open*", root=root)
    assert ("syscalls", "sys_enter_openat") in found and ("syscalls", "sys_enter_close") not in found
    assert found == sorted(found) and all(n.startswith("sys_enter_open") for _, n in found)


def test_real_sys_enter_openat():
    fmt = T.tracepoint_format("syscalls", "sys_enter_openat", root=real_tracefs())
    assert fmt.id > 0
    filename = fmt.field("filename")
    assert (filename.c_type, filename.offset, filename.size) == ("const char *", 24, 8)
    assert [f.name for f in fmt.fields] == ["__syscall_nr", "dfd", "filename", "flags", "mode"]
    assert fmt.field("dfd").sized_type == "s64"
    assert fmt.common_fields[-1].name == "common_pid"


def test_real_data_loc():
    fmt = T.tracepoint_format("sched", "sched_process_exec", root=real_tracefs())
    f = fmt.field("filename")
    assert f.data_loc and f.c_type == "char" and f.size == 4 and f.decl == "__data_loc char[] filename"


def test_real_missing_tracepoint():
    root = real_tracefs()
    with pytest.raises(TracefsError) as e:
        T.tracepoint_format("syscalls", "sys_enter_nope_nope", root=root)
    assert str(e.value).startswith("tracepoint not found: syscalls:sys_enter_nope_nope")
    with pytest.raises(TracefsError) as e:
        T.tracepoint_format("syscall", "sys_enter_openat", root=root)
    assert str(e.value).endswith("did you mean syscalls:sys_enter_openat?)")


def test_real_kernel_functions_or_clear_reason():
    root = real_tracefs()
    try:
        funcs = T.kernel_functions("vfs_*", root=root)
    except TracefsError as e:  # this 6.18 VM: no kprobes, the file answers EPERM
        assert str(e).startswith("cannot list kernel functions: ")
    else:
        assert "vfs_read" in funcs


@pytest.mark.bpftrace
def test_real_listing_and_fields_match_bpftrace():
    if shutil.which("bpftrace") is None or os.geteuid() != 0:
        pytest.skip("needs bpftrace (apt-get install bpftrace) and root")
    root = real_tracefs()
    out = subprocess.run(["bpftrace", "-l", "tracepoint:syscalls:sys_enter_open*"],
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert out == [f"tracepoint:{c}:{n}" for c, n in T.list_tracepoints("syscalls", "sys_enter_open*", root)]
    for tp in ("syscalls:sys_enter_openat", "sched:sched_process_exec", "sched:sched_switch"):
        lines = subprocess.run(["bpftrace", "-lv", f"tracepoint:{tp}"], capture_output=True,
                               text=True, timeout=60).stdout.splitlines()[1:]
        fmt = T.tracepoint_format(*tp.split(":"), root=root)
        assert [ln.strip() for ln in lines] == [f.decl for f in fmt.fields]


@pytest.mark.root
def test_real_mounts_tracefs_when_missing():
    """In a private mount namespace: unmount tracefs/debugfs, then ensure_tracefs() mounts them."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1)")
    code = textwrap.dedent("""
        import os, subprocess
        for m in ("/sys/kernel/debug/tracing", "/sys/kernel/debug", "/sys/kernel/tracing"):
            subprocess.run(["umount", m], capture_output=True)
        assert not os.path.isdir("/sys/kernel/tracing/events"), "still mounted"
        from kubectl_pytrace.kernel.tracefs import ensure_tracefs
        print(ensure_tracefs())
        print(os.path.isdir("/sys/kernel/tracing/events"), os.path.ismount("/sys/kernel/debug"))
    """)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "still mounted" in r.stderr:
        pytest.skip("tracefs could not be unmounted in a private namespace here")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["/sys/kernel/tracing", "True", "True"]


def test_real_kallsyms():
    try:
        k = T.kallsyms()
    except TracefsError as e:
        pytest.skip(str(e))
    with open(T.KALLSYMS) as f:
        m = re.search(r"^([0-9a-f]+) [Tt] (schedule)$", f.read(), re.M)
    assert m, "no schedule in /proc/kallsyms"
    addr = int(m.group(1), 16)
    assert k.ksym(addr) == "schedule"
    assert k.ksym_offset(addr + 7) == "schedule+7"
    assert k.address("schedule") == addr
    assert T.kallsyms() is k
