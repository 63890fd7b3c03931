#!/usr/bin/env python3
"""Runs upstream bpftrace's tools with kubectl-pytrace and with the reference bpftrace (Debian
sid's, hack/bpftrace-sid.sh) at the same time, on the same workload, and compares what they print.

    hack/compare-upstream-tools.py TOOLS_DIR [tool ...]

TOOLS_DIR is upstream's tools/ (e.g. from `git show` of a bpftrace checkout). Both tracers see the
same kernel events, but not from the same instant and not in the same process: a line is compared
after masking what differs between any two runs (times, durations, PIDs, addresses), and only the
lines the workload caused (its distinctive command name) plus the tool's own header are compared.
Prints, per tool: "identical", "differs" (with a diff), or why it was not compared.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTRACE = ROOT / ".venv" / "bin" / "kubectl-pytrace"
BPFTRACE = ROOT / "hack" / "bpftrace-sid.sh"
RUN_SECONDS = 16
COMM = "pytrace-wl"  # the workload's processes are named so (a copy of /bin/sh)

# what each tool needs to see, run by a shell named COMM
WORKLOAD = r"""
for i in 1 2 3; do
  /bin/true; cat /etc/hostname > /dev/null; stat /etc/passwd > /dev/null 2>&1; ls /nonexistent 2>/dev/null
  kill -0 $$; sleep 0.2; sync
  dd if=/dev/zero of=$DIR/blk bs=64k count=16 oflag=direct 2>/dev/null
done
"""

# tools whose probes are uprobes of system libraries: the reference runs in its own root (other
# libraries at the same paths), so it never sees the workload's calls
UPROBE_TOOLS = {"bashreadline", "gethostlatency", "ssllatency", "sslsnoop", "threadsnoop"}
# tools that only print a summary at exit (histograms, counts): their values depend on the moment
# each tracer attached, so only the lines that do not hold a count are compared
SUMMARY_TOOLS = {"biolatency", "biostacks", "bitesize", "cpuwalk", "runqlat", "runqlen", "syscount",
                 "pidpersec", "vfscount", "vfsstat", "writeback", "naptime"}

MASKS = [
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(\.\d+)?\b"), "HH:MM:SS"),
    (re.compile(r"0x[0-9a-f]+"), "0xADDR"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "N"),
    (re.compile(r"[ \t]+"), " "),
]


def mask(line: str) -> str:
    for rx, rep in MASKS:
        line = rx.sub(rep, line)
    return line.strip()


def interesting(lines, summary: bool):
    """The tool's header (its first lines without a digit), the workload's lines, and for a
    summary the lines that hold no count."""
    out, header = [], True
    for line in lines:
        header = header and not re.search(r"\d", line)
        if header or COMM in line or (summary and not re.search(r"\d", line)):
            out.append(mask(line))
    return out


def run(tool: Path, workdir: str):
    env = dict(os.environ, DIR=workdir)
    ours = subprocess.Popen([str(PYTRACE), "run", "--local", "--deadline", f"{RUN_SECONDS}s", "-f", str(tool)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    theirs = subprocess.Popen(["timeout", "-s", "INT", str(RUN_SECONDS + 2), str(BPFTRACE), str(tool)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(9)  # both attached (compiling takes each a few seconds)
    shell = Path(workdir) / COMM
    if not shell.exists():
        shell.write_bytes(Path("/bin/sh").read_bytes())
        shell.chmod(0o755)
    subprocess.run([str(shell), "-c", WORKLOAD], env=env, timeout=60)
    out_ours, err_ours = ours.communicate(timeout=120)
    out_theirs, err_theirs = theirs.communicate(timeout=120)
    return out_ours.decode(errors="replace"), err_ours.decode(errors="replace"), \
        out_theirs.decode(errors="replace"), err_theirs.decode(errors="replace")


def main(argv) -> int:
    tools_dir = Path(argv[1])
    names = argv[2:] or sorted(p.stem for p in tools_dir.glob("*.bt"))
    counts = {"identical": 0, "differs": 0, "skipped": 0}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as workdir:
        for name in names:
            tool = tools_dir / f"{name}.bt"
            if name in UPROBE_TOOLS:
                print(f"{name}: not compared (uprobes of system libraries: the reference's root has its own)")
                counts["skipped"] += 1
                continue
            ours, ours_err, theirs, theirs_err = run(tool, workdir)
            if "Attached" not in ours_err or not theirs.strip():
                why = ours_err.strip().splitlines()[-1:] if "Attached" not in ours_err else \
                    theirs_err.strip().splitlines()[-1:]
                print(f"{name}: not compared (did not attach: {' '.join(why)})")
                counts["skipped"] += 1
                continue
            lost = re.search(r"Lost (\d+) events", theirs_err + ours_err)
            a = interesting(theirs.splitlines(), name in SUMMARY_TOOLS)
            b = interesting(ours.splitlines(), name in SUMMARY_TOOLS)
            if a == b:
                print(f"{name}: identical ({len(a)} lines compared)")
                counts["identical"] += 1
            elif lost:
                print(f"{name}: inconclusive (events were lost: {lost.group(0)}; this host is busy)")
                counts["skipped"] += 1
            else:
                print(f"{name}: differs")
                sys.stdout.writelines("    " + d + "\n" for d in difflib.unified_diff(a, b, "bpftrace", "pytrace",
                                                                                      lineterm="", n=1))
                counts["differs"] += 1
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
