"""What a trace can leave behind, read from the kernel and /proc (tests/runtime/test_lifecycle.py).

    watch = LeakWatch(traced=[binary])      # before the test: the BPF object ids already there
    ...                                     # the test's processes run with env[MARK] = watch.mark
    problems = watch.leftovers()            # after it: [] or what is left, waiting up to `grace`
    watch.kill_leftovers()                  # and then no process of the test runs on

Ours, among whatever else runs on the machine (other tests load BPF objects concurrently):
  - a process whose environment carries the mark: the tracer, its BCC compiler subprocess,
    the -c command and anything they started;
  - a BPF program, map or link that did not exist before and is held by one of those, or by no
    process at all while bearing one of our names (our programs and maps named by the compiler);
  - a uprobe still armed on a binary (or library) the test traced: a new process of it would run
    an int3 (uprobes attached through the PMU leave nothing in tracefs; their breakpoints are the
    trace). A library is checked in a process that maps it: traced=[(library, command)].
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

MARK = "PYTRACE_TEST_RUN"
OUR_NAMES = re.compile(r"^(probe_\d+|pytrace_\w*|map_\d+)$")  # lang/codegen.py's names
KINDS = ("prog", "map", "link")
_FDINFO_ID = re.compile(r"^(prog|map|link)_id:\s*(\d+)$", re.M)

Obj = Tuple[str, int]  # ("prog", 42)


def marked_pids(mark: str) -> Dict[int, str]:
    """{pid: command line} of the live processes whose environment holds MARK=mark."""
    needle = f"{MARK}={mark}".encode()
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass  # gone meanwhile
    return found


def bpf_objects() -> Dict[Obj, str]:
    """{(kind, id): name} of every BPF program, map and link in the kernel (bpftool)."""
    tool = shutil.which("bpftool")
    assert tool, "bpftool is needed to list BPF objects (hack/install.sh installs it)"
    objs = {}
    for kind in KINDS:
        for o in json.loads(_bpftool_show(tool, kind) or "[]"):
            objs[(kind, o["id"])] = o.get("name") or f"{o.get('type', '?')} of prog {o.get('prog_id', '?')}"
    return objs


def _bpftool_show(tool: str, kind: str, attempts: int = 5) -> str:
    """`bpftool KIND show -j`, again when it fails: it does when an object it listed is gone
    before it opens it (other tests and other users load and unload BPF objects meanwhile)."""
    for _ in range(attempts - 1):
        p = subprocess.run([tool, kind, "show", "-j"], capture_output=True, text=True)
        if p.returncode == 0:
            return p.stdout
        time.sleep(0.05)
    return subprocess.run([tool, kind, "show", "-j"], capture_output=True, text=True, check=True).stdout


def holders() -> Dict[Obj, Set[int]]:
    """{(kind, id): pids holding a file descriptor of it}, from /proc/*/fdinfo."""
    held: Dict[Obj, Set[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            infos = list((d / "fdinfo").iterdir())
        except OSError:
            continue
        for info in infos:
            try:
                text = info.read_text()
            except OSError:
                continue
            for kind, oid in _FDINFO_ID.findall(text):
                held.setdefault((kind, int(oid)), set()).add(int(d.name))
    return held


def armed_uprobes(binary: Path, command: Optional[Sequence[str]] = None) -> List[int]:
    """File offsets where a new process of `binary` (or `command`, which maps it) runs an int3 the
    file does not have."""
    proc = subprocess.Popen(list(command or [str(binary), "0", "2000"]), env=dict(os.environ, **{MARK: ""}))
    try:
        time.sleep(0.1)  # mapped and sleeping: every armed uprobe is in its text now
        return _text_differences(proc.pid, binary)
    finally:
        proc.kill()
        proc.wait()


def _text_differences(pid: int, binary: Path) -> List[int]:
    real = os.path.realpath(binary)
    data = binary.read_bytes()
    diffs = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or fields[5] != real or "x" not in fields[1]:
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            off = int(fields[2], 16)
            if off >= len(data):
                continue
            mem.seek(lo)
            live = mem.read(min(hi - lo, len(data) - off))
            diffs += [off + i for i, (a, b) in enumerate(zip(live, data[off:])) if a != b]
    return diffs


Traced = Union[Path, Tuple[Path, Sequence[str]]]  # a binary, or a library and a command that maps it


class LeakWatch:
    def __init__(self, traced: Iterable[Traced] = (), grace: float = 5.0):
        self.mark = uuid.uuid4().hex
        self.traced = [t if isinstance(t, tuple) else (t, None) for t in traced]
        self.grace = grace
        self.before = set(bpf_objects())

    def leftovers(self) -> List[str]:
        """What is still there after `grace` seconds (processes exit, the kernel frees BPF
        objects a little after their last descriptor closes); [] when nothing."""
        deadline = time.monotonic() + self.grace
        while True:
            problems = self.problems_now()
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(0.2)

    def kill_leftovers(self) -> None:
        """SIGKILLs the marked processes still running (after a failure: the next test starts clean)."""
        for pid in marked_pids(self.mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def problems_now(self) -> List[str]:
        procs = marked_pids(self.mark)
        out = [f"process {pid} still running: {cmd}" for pid, cmd in sorted(procs.items())]
        out += self._bpf_problems(set(procs))
        for binary, command in self.traced:
            offsets = armed_uprobes(binary, command)
            if offsets:
                out.append(f"uprobe breakpoints still armed in {binary} at file offsets "
                           f"{', '.join(hex(o) for o in offsets[:8])}")
        return out

    def _bpf_problems(self, ours: Set[int]) -> List[str]:
        objs, held = bpf_objects(), holders()
        out = []
        for obj, name in sorted(objs.items()):
            pids = held.get(obj, set())
            if obj in self.before or (pids and not pids & ours):
                continue  # there before, or someone else's
            if pids or OUR_NAMES.match(name):
                who = f"held by {sorted(pids)}" if pids else "held by no process"
                out.append(f"BPF {obj[0]} {obj[1]} ({name}) still loaded, {who}")
        return out
