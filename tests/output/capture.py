"""Capture the reference bpftrace's stdout (tests/compat/reference.py: Debian sid's, 0.27) for every
case of cases.py into golden_bpftrace.json.

    .venv/bin/python -m tests.output.capture [NAME...]

Needs root. The attached_probes message (JSON; text mode writes "Attached N probes" on stderr) is
dropped: it is not the output layer's business.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.compat import reference

from .cases import CASES

GOLDEN = Path(__file__).with_name("golden_bpftrace.json")


def run_bpftrace(program: str, json_out: bool = False, unsafe: bool = False) -> str:
    cmd = reference.command()
    if json_out:
        cmd += ["-f", "json"]
    if unsafe:
        cmd.append("--unsafe")
    cmd += ["-e", program]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("bpftrace failed (%d): %s" % (p.returncode, p.stderr.decode(errors="replace")))
    out = p.stdout.decode("utf-8", "surrogateescape")
    if json_out:
        first, _, rest = out.partition("\n")
        if not first.startswith('{"type": "attached_probes"'):
            raise RuntimeError("unexpected first line: %r" % first)
        return rest
    return out


def main(argv):
    data = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    for c in CASES:
        if argv and c.name not in argv:
            continue
        try:
            entry = {"program": c.program, "text": run_bpftrace(c.program, False, c.unsafe)}
            if c.json:
                entry["json"] = run_bpftrace(c.program, True, c.unsafe)
        except RuntimeError as e:
            print("FAILED", c.name, e, file=sys.stderr)
            continue
        data[c.name] = entry
        print("captured", c.name, file=sys.stderr)
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
