"""Compiled BPF objects: made by BCC in a subprocess (bcc_compile.py), cached by content.

The cache key covers everything the bytes depend on: the C text, the USDT probes enabled (and the
identity of their binaries, whose argument locations BCC compiles in), the kernel headers, BCC's
version and the running kernel. A cache hit skips clang entirely (~0.3 s and ~150 MB).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.files import atomic_write, cache_dir

CFLAGS = ["-Wno-unused-value", "-Wno-incompatible-pointer-types", "-w"]
FORMAT_VERSION = "2"


class CompileFailed(Exception):
    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


@dataclass
class MapDef:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


@dataclass
class ProgDef:
    insns: bytes
    relocs: List[Tuple[int, str]]
    subprogs: List[int] = field(default_factory=list)  # instruction index of each callback


@dataclass
class BpfObject:
    maps: Dict[str, MapDef]
    progs: Dict[str, ProgDef]
    cached: bool = False

    @staticmethod
    def from_json(d: dict, cached: bool = False) -> "BpfObject":
        maps = {m["name"]: MapDef(**m) for m in d["maps"]}
        progs = {n: ProgDef(base64.b64decode(p["insns"]), [tuple(r) for r in p["relocs"]],  # type: ignore[misc]
                            p.get("subprogs", []))
                 for n, p in d["progs"].items()}
        return BpfObject(maps, progs, cached)


def _bcc_version() -> str:
    # read without importing bcc (importing it maps LLVM into this process)
    for d in sys.path:
        p = os.path.join(d, "bcc", "version.py")
        if os.path.exists(p):
            with open(p) as f:
                return f.read().strip()
    return "unknown"


def cache_key(text: str, functions: Sequence[str], headers: str, callbacks: Sequence[str] = (),
              map_refs: Optional[Dict[int, str]] = None) -> str:
    parts = {
        "callbacks": list(callbacks), "map_refs": {str(k): v for k, v in (map_refs or {}).items()},
        "format": FORMAT_VERSION, "text": text, "functions": list(functions),
        "headers": headers,
        "bcc": _bcc_version(), "kernel": os.uname().release, "cflags": CFLAGS,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def compile_bpf(text: str, functions: Sequence[str], headers: str = "", use_cache: bool = True,
                callbacks: Sequence[str] = (), map_refs: Optional[Dict[int, str]] = None) -> BpfObject:
    """BPF object for C text; `callbacks` and `map_refs` name what the C's marker constants stand
    for (bcc_compile.py). USDT arguments are read by the C itself (lang/usdt.py): BCC's USDT
    support, which needs a process for a probe guarded by a semaphore, is not used."""
    map_refs = map_refs or {}
    key = cache_key(text, functions, headers, callbacks, map_refs)
    path = cache_dir("bpf", key[:2], key + ".json")
    if use_cache:
        try:
            with open(path) as f:
                return BpfObject.from_json(json.load(f), cached=True)
        except (OSError, ValueError, KeyError):
            pass
    req = {"text": text, "functions": list(functions), "cflags": CFLAGS,
           "callbacks": list(callbacks), "map_refs": {str(k): v for k, v in map_refs.items()}}
    import subprocess  # only on a cache miss: start-up is measured

    proc = subprocess.run([sys.executable, "-m", "kubectl_pytrace.bpf.bcc_compile"],
                          input=json.dumps(req).encode(), capture_output=True)
    log = proc.stderr.decode("utf-8", "replace")
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise CompileFailed(f"the BCC compiler process failed (exit {proc.returncode})", log) from None
    if "error" in result:
        raise CompileFailed(result["error"], log)
    if use_cache:
        atomic_write(path, json.dumps(result).encode())
    return BpfObject.from_json(result)
