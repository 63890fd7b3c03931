"""bpftrace's own tools (/usr/sbin/*.bt from Debian's bpftrace package) compile and run.

Compiled with the real HostEnvironment of this machine (tracefs, BTF, headers, ELF symbols, kallsyms)
and then through BCC; a tool may only fail to compile for a fact of this kernel that bpftrace 0.17
trips over too, and that fact is checked here. Then each tool runs for a second.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from pathlib import Path

import pytest

from kubectl_pytrace.lang import CodegenOptions, CompileError, compile_program

TOOLS = sorted(glob.glob("/usr/sbin/*.bt"))
REPO = Path(__file__).resolve().parent.parent.parent
PYTRACE = os.environ.get("PYTRACE") or str(REPO / ".venv" / "bin" / "kubectl-pytrace")

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not TOOLS, reason="bpftrace's tools are not installed (apt-get install bpftrace)")]


def _kallsyms_has(name: str) -> bool:
    with open("/proc/kallsyms", "rb") as f:
        return re.search(rb"^[0-9a-f]+ \S " + re.escape(name.encode()) + rb"(\t|$)", f.read(), re.M) is not None


def _btf_member(struct: str, member: str) -> bool:
    from kubectl_pytrace.kernel.btf import BTF, BTFError, find_member

    s = BTF.load().struct(struct)
    try:
        return s is not None and find_member(s, member) is not None
    except BTFError:
        return False


# Failures bpftrace 0.17 reports too, each with the kernel fact that explains it.
KERNEL_FACTS = {
    "loads.bt": (r'kaddr\("avenrun"\): no kernel symbol named', lambda: not _kallsyms_has("avenrun")),
    "runqlen.bt": (r"struct cfs_rq has no member 'nr_running'", lambda: not _btf_member("struct cfs_rq", "nr_running")),
}


def _compile(path: str):
    from kubectl_pytrace.host.env import HostEnvironment

    env = HostEnvironment()
    options = CodegenOptions(kprobe_mode="kprobe" if env.kprobes_available else "fentry")
    return compile_program(Path(path).read_text(), path, env, options)


@pytest.mark.parametrize("path", TOOLS, ids=os.path.basename)
def test_stock_tool_compiles(path):
    name = os.path.basename(path)
    try:
        compiled = _compile(path)
    except CompileError as e:
        fact = KERNEL_FACTS.get(name)
        assert fact is not None and re.search(fact[0], str(e)) and fact[1](), str(e)
        return
    from kubectl_pytrace.bpf import objects as bpfobj
    from kubectl_pytrace.tracer.engine import setup_headers

    found = setup_headers(open(os.devnull, "w"))
    functions = sorted({a.fn_name for a in compiled.c.attachments})
    obj = bpfobj.compile_bpf(compiled.c.text, functions, (), f"{found.path}:{found.release}")
    assert set(functions) <= set(obj.progs)


@pytest.mark.bpf
@pytest.mark.parametrize("path", [t for t in TOOLS if os.path.basename(t) not in KERNEL_FACTS] or TOOLS[:1],
                         ids=os.path.basename)
def test_stock_tool_runs(path):
    """A second of tracing; a kprobe the kernel cannot attach is the one accepted failure."""
    p = subprocess.run([PYTRACE, "run", "--local", "-f", path, "--deadline", "1s"], capture_output=True,
                       timeout=120)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        assert re.search(r"^error: cannot attach k(ret)?probe:\S+: this kernel has no kprobes", err, re.M), err
        assert not os.path.exists("/sys/kernel/tracing/kprobe_events"), err
    assert "Traceback" not in err, err
