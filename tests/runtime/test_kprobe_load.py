"""kprobe-mode C through the kernel's verifier, on any kernel, kprobes or not.

Where CONFIG_KPROBES is off the tracer compiles kprobes as fentry programs, so the kprobe code
(struct pt_regs, registers, kretprobe return values) would never meet a verifier. BPF_PROG_LOAD
runs the verifier without attaching anything: every kprobe/kretprobe function of these programs,
compiled with CodegenOptions(kprobe_mode="kprobe") and built by BCC, is loaded as a kprobe program.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Dict, List

import pytest

from kubectl_pytrace.bpf import objects as bpfobj
from kubectl_pytrace.bpf import syscalls as bpfsys
from kubectl_pytrace.bpf.loader import Loader
from kubectl_pytrace.kernel import tracefs
from kubectl_pytrace.lang import CodegenOptions, compile_program

REPO = Path(__file__).resolve().parent.parent.parent
KPROBE_LINE = re.compile(r"^k(ret)?probe:", re.M)

pytestmark = [pytest.mark.root, pytest.mark.bpf]

PROGRAMS = {
    "args_and_builtins": r'kprobe:do_nanosleep { @[comm, pid, tid, uid, cpu] = count(); '
                         r'printf("%d %d %d %d %d %d %s %s\n", arg0, arg1, arg2, arg3, arg4, arg5, func, probe); }',
    "retval_aggregations": 'kretprobe:do_nanosleep { @h = hist(retval); @l = lhist(retval, 0, 100, 10); '
                           '@s = stats(retval); @m = max(retval); }',
    "stacks": "kprobe:do_nanosleep { @[kstack] = count(); @u[ustack(3)] = count(); }",
    "kernel_structs": "kprobe:vfs_read { $f = (struct file *)arg0; "
                      "@[str($f->f_path.dentry->d_name.name), curtask->real_parent->pid] = count(); }",
    "entry_to_return": "kprobe:do_nanosleep { @start[tid] = nsecs; } "
                       "kretprobe:do_nanosleep /@start[tid]/ { @us = hist((nsecs - @start[tid]) / 1000); "
                       "delete(@start[tid]); }",
    "wildcard": "kprobe:vfs_read*, kretprobe:vfs_write* { @[probe, func] = count(); }",
}
BAD = "kprobe:do_nanosleep { $i = 0; while ($i < 1000000) { $i += 1 + rand % 2; } }"


def tool_programs() -> Dict[str, str]:
    """bpftrace's stock tools and ours that use kprobes."""
    paths = sorted(glob.glob("/usr/sbin/*.bt")) + sorted(str(p) for p in (REPO / "programs").glob("*.bt"))
    return {f"{Path(p).parent.name}/{Path(p).name}": Path(p).read_text()
            for p in paths if KPROBE_LINE.search(Path(p).read_text())}


@pytest.fixture(scope="module")
def headers() -> str:
    from kubectl_pytrace.tracer.engine import setup_headers

    with open(os.devnull, "w") as quiet:
        found = setup_headers(quiet)
    return f"{found.path}:{found.release}"


def kprobe_object(text: str, name: str, headers: str):
    """(BpfObject, [kprobe function names]) of a program compiled in kprobe mode."""
    from kubectl_pytrace.host.env import HostEnvironment

    c = compile_program(text, name, HostEnvironment(), CodegenOptions(kprobe_mode="kprobe")).c
    kfns = sorted({a.fn_name for a in c.attachments if a.spec.provider in ("kprobe", "kretprobe")})
    assert kfns, f"{name}: no kprobe left after expansion"
    for fn in kfns:
        assert f"int {fn}(struct pt_regs *ctx)" in c.text, f"{name}: {fn} is not kprobe-mode C"
    obj = bpfobj.compile_bpf(c.text, sorted({a.fn_name for a in c.attachments}), headers)
    return obj, kfns


def load_kprobes(obj, kfns: List[str]) -> Dict[str, str]:
    """{function: verifier log} of the functions the kernel refuses as kprobe programs."""
    loader = Loader(obj, tracefs.ensure_tracefs())
    refused = {}
    try:
        loader.create_maps()
        for fn in kfns:
            try:
                loader.load(fn, bpfsys.PROG_TYPES["kprobe"])
            except bpfsys.VerifierError as e:
                refused[fn] = f"{e.strerror}\n{e.log[-2000:]}"
    finally:
        loader.close()
    return refused


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_kprobe_program_passes_the_verifier(name, headers):
    obj, kfns = kprobe_object(PROGRAMS[name], name, headers)
    assert load_kprobes(obj, kfns) == {}


TOOLS = tool_programs()


@pytest.mark.skipif(not TOOLS, reason="no tool with kprobes (apt-get install bpftrace for its tools)")
@pytest.mark.parametrize("name", sorted(TOOLS) or ["none"])
def test_tool_kprobes_pass_the_verifier(name, headers):
    obj, kfns = kprobe_object(TOOLS[name], name, headers)
    assert load_kprobes(obj, kfns) == {}


def test_verifier_rejects_a_bad_kprobe_with_its_log(headers):
    """The verifier really runs on these loads: a loop it cannot bound is refused, with its log."""
    obj, kfns = kprobe_object(BAD, "bad", headers)
    refused = load_kprobes(obj, kfns)
    assert list(refused) == kfns
    assert re.search(r"processed \d{7,} insns|BPF program is too large", refused[kfns[0]]), refused[kfns[0]]
