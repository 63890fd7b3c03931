"""Compiled programs cached between runs, so a repeated trace starts without the compiler.

An entry is keyed by everything the compiler reads that cannot change under it within one boot of
one kernel (the program, its options, the compiler's own source) and lists the files it read
(binaries whose symbols or USDT notes it looked up): a changed file, a new boot or another kernel
misses. Entries are pickles in a root-only directory: only the tracer itself writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from typing import Iterable, List, Optional, Tuple

from kubectl_pytrace import __version__
from kubectl_pytrace.lang.program import CProgram
from kubectl_pytrace.files import atomic_write, cache_dir, file_identity

FORMAT = 2


def _compiler_identity() -> List:
    lang = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lang")
    out = []
    for e in os.scandir(lang):
        if e.name.endswith((".py", ".lark")):
            st = e.stat()
            out.append((e.name, st.st_mtime_ns, st.st_size))
    return sorted(out)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def key(*parts: object, tracefs_root: str = "/sys/kernel/tracing") -> str:
    events = file_identity(os.path.join(tracefs_root, "events"))  # nlink moves when tracepoints come and go
    try:
        nlink = os.stat(os.path.join(tracefs_root, "events")).st_nlink
    except OSError:
        nlink = 0
    data = [FORMAT, __version__, _compiler_identity(), os.uname().release,
            _read("/proc/sys/kernel/random/boot_id"), events and nlink, [repr(p) for p in parts]]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def _path(k: str) -> str:
    return cache_dir("bpf", "programs", k[:2], k + ".pickle")


def load(k: str) -> Optional[Tuple[CProgram, str]]:
    try:
        with open(_path(k), "rb") as f:
            entry = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError):
        return None
    for path, ident in entry["deps"]:
        if file_identity(path) != ident:
            return None
    return entry["program"], entry["warnings"]


def store(k: str, program: CProgram, warnings: str, deps: Iterable[str]) -> None:
    path = _path(k)
    entry = {"program": program, "warnings": warnings,
             "deps": [(d, file_identity(d)) for d in sorted(set(deps))]}
    atomic_write(path, pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL), mode=0o700)
