"""The scale tests' workloads, built with gcc into a cache directory keyed by their sources:

    paths = build()    # {"libwide": .so, "wide": its driver, "syscalls": ..., "vecfirst": ...}

libwide.so has FUNCTIONS generated functions w0000..wNNNN (and two aliases of w0001, as libraries
export one function under several names); `wide ROUNDS [SLEEP_MS]` calls wK (K % 5 + 1) times per
round through the library, then sleeps SLEEP_MS (what the leak check's "is a uprobe still armed"
needs: a live process that maps the library). syscalls.c and vecfirst.c say what they do.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
FUNCTIONS = 300
ALIASES = ("w0001_alias_a", "w0001_alias_b")
CFLAGS = ["-O0", "-g", "-fno-omit-frame-pointer", "-Wall", "-Werror"]


def library_source() -> str:
    lines = [f"__attribute__((noinline)) int w{k:04d}(int x) {{ return x + {k}; }}" for k in range(FUNCTIONS)]
    lines += [f'int {a}(int x) __attribute__((alias("w0001")));' for a in ALIASES]
    return "\n".join(lines) + "\n"


def driver_source() -> str:
    decls = "\n".join(f"int w{k:04d}(int);" for k in range(FUNCTIONS))
    table = ", ".join(f"w{k:04d}" for k in range(FUNCTIONS))
    return f"""#include <stdlib.h>
#include <unistd.h>
{decls}
static int (*const table[])(int) = {{{table}}};
int main(int argc, char **argv)
{{
    int rounds = argc > 1 ? atoi(argv[1]) : 1, s = 0;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < {FUNCTIONS}; k++)
            for (int c = 0; c < k % 5 + 1; c++)
                s += table[k](c);
    if (argc > 2)
        usleep(atoi(argv[2]) * 1000);
    return s == -1;
}}
"""


def _gcc(*args: str) -> None:
    r = subprocess.run(["gcc", *CFLAGS, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"gcc {' '.join(args)} failed:\n{r.stderr}")


def build() -> Dict[str, Path]:
    sources = {"libwide.c": library_source(), "wide.c": driver_source(),
               "syscalls.c": (HERE / "syscalls.c").read_text(), "vecfirst.c": (HERE / "vecfirst.c").read_text()}
    key = hashlib.sha256(repr(sorted(sources.items())).encode() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / "kubectl-pytrace-scale" / key
    paths = {"libwide": out / "libwide.so", "wide": out / "wide", "syscalls": out / "syscalls",
             "vecfirst": out / "vecfirst"}
    if all(p.exists() for p in paths.values()):
        return paths
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
    for name, text in sources.items():
        (tmp / name).write_text(text)
    _gcc("-shared", "-fPIC", "-o", str(tmp / "libwide.so"), str(tmp / "libwide.c"))
    _gcc("-o", str(tmp / "wide"), str(tmp / "wide.c"), f"-L{tmp}", "-lwide", f"-Wl,-rpath,{out}")
    _gcc("-o", str(tmp / "syscalls"), str(tmp / "syscalls.c"))
    _gcc("-mavx2", "-o", str(tmp / "vecfirst"), str(tmp / "vecfirst.c"))
    try:
        os.rename(tmp, out)
    except OSError:  # built meanwhile by another run
        pass
    return paths
