"""BCC as a compiler, in a process of its own: C text in, BPF object (JSON) out.

    python -m kubectl_pytrace.bpf.bcc_compile < request.json > object.json

The request: {"text": C, "functions": [names],
              "callbacks": [names], "map_refs": {"id": map name}}.
The object: {"maps": [{name, type, key_size, value_size, max_entries, flags}],
             "progs": {fn: {"insns": base64, "relocs": [[insn index, map name], ...]}}}
or {"error": message}; the compiler's own messages are on stderr.

Callbacks (bpf_loop, bpf_for_each_map_elem): BCC neither links subprograms nor resolves a function's
address, so the C names a callback with a marker constant, (void *)(FUNC_MARKER | id) where id
indexes "callbacks", and a map with (void *)(MAP_MARKER | id) (BCC only writes map fds for its own
method syntax). Each callback is a function of one parameter (BCC rewrites the parameters of
functions with more) that reads the others from r2..r5 first; its code is appended to every
program that refers to it, the marker becoming a BPF_PSEUDO_FUNC load of its offset.

Only this process loads libbcc (and LLVM/clang with it, ~150 MB); the tracer that runs for hours
stays small. BCC creates the maps while compiling and writes their fds into the instructions;
they are recorded as relocations (ld_imm64 with src_reg BPF_PSEUDO_MAP_FD) and the tracer creates
its own maps and patches them in.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import struct
import sys
from typing import List, Tuple

BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_CALL = 1
FUNC_MARKER = 0x7079666200000000  # "pyfb" << 32
# "/* pytrace-link callbacks=cb0,cb1 map_refs=0:map_3,1:map_4 */" in the C text: what the markers
# stand for, when the request does not say
LINK_LINE = re.compile(r"/\* pytrace-link callbacks=(\S*) map_refs=(\S*) \*/")
MAP_MARKER = 0x70796D6100000000  # "pyma" << 32


def _markers(insns: bytes):
    """(instruction index, kind, id) of every marker constant loaded by an ld_imm64."""
    for i in range(0, len(insns) - 8, 8):
        code, regs, _off, lo = struct.unpack_from("<BBhI", insns, i)
        if code == 0x18 and regs >> 4 == 0:
            hi = struct.unpack_from("<I", insns, i + 12)[0]
            value = hi << 32 | lo
            if value & ~0xFFFF == FUNC_MARKER:
                yield i // 8, "func", value & 0xFFFF
            elif value & ~0xFFFF == MAP_MARKER:
                yield i // 8, "map", value & 0xFFFF


def _saves_arguments_first(code: bytes) -> bool:
    """Whether the callback stores its arguments (*(u64 *)(r10 - 8) = rN, ...) before anything
    could overwrite r1..r5: the instructions before the first such store may only be ALU moves
    into other registers (clang hoists e.g. `r0 = 1` for a later `return 1`)."""
    for i in range(0, min(len(code), 8 * 8), 8):
        op, regs, off, _ = struct.unpack_from("<BBhi", code, i)
        if (op, regs & 0x0F, off) == (0x7B, 10, -8):  # *(u64 *)(r10 - 8) = rN
            return True
        if op & 0x07 not in (0x04, 0x07) or 1 <= regs & 0x0F <= 5:  # ALU/ALU64, not into r1..r5
            return False
    return False


def link(main: bytes, code_of, callbacks, map_refs) -> Tuple[bytes, List[int]]:
    """`main` with the callbacks it (transitively) refers to appended and every marker patched, and
    where each appended callback starts."""
    out = bytearray(main)
    placed = {}  # callback id -> instruction index of its start
    segments = [(0, len(main) // 8)]  # code whose markers are still to patch: (start, length)
    while segments:
        start, length = segments.pop()
        for index, kind, ident in list(_markers(bytes(out[start * 8:(start + length) * 8]))):
            at = start + index
            if kind == "map":
                if str(ident) not in map_refs:
                    raise RuntimeError(f"instruction {at} refers to unknown map marker {ident}")
                out[at * 8 + 1] = (out[at * 8 + 1] & 0x0F) | (BPF_PSEUDO_MAP_FD << 4)
                struct.pack_into("<i", out, at * 8 + 4, -1 - ident)  # made a reloc below
                struct.pack_into("<i", out, at * 8 + 12, 0)
                continue
            if ident >= len(callbacks):
                raise RuntimeError(f"instruction {at} refers to unknown callback {ident}")
            if ident not in placed:
                code = code_of(callbacks[ident])
                if not _saves_arguments_first(code):
                    raise RuntimeError(f"callback {callbacks[ident]} does not begin by saving its arguments")
                placed[ident] = len(out) // 8
                out += code
                segments.append((placed[ident], len(code) // 8))
            out[at * 8 + 1] = (out[at * 8 + 1] & 0x0F) | (BPF_PSEUDO_FUNC << 4)
            struct.pack_into("<i", out, at * 8 + 4, placed[ident] - (at + 1))
            struct.pack_into("<i", out, at * 8 + 12, 0)
    return bytes(out), sorted(placed.values())


def compile_object(req: dict) -> dict:
    from bcc import BPF
    from bcc.libbcc import lib

    b = BPF(text=req["text"].encode(), cflags=req.get("cflags", []))
    lib.bpf_table_name.restype = ctypes.c_char_p
    maps, fd_to_name = [], {}
    for i in range(lib.bpf_num_tables(b.module)):
        name = lib.bpf_table_name(b.module, i).decode()
        fd = lib.bpf_table_fd_id(b.module, i)
        fd_to_name[fd] = name
        maps.append({"name": name, "type": lib.bpf_table_type_id(b.module, i),
                     "key_size": lib.bpf_table_key_size_id(b.module, i),
                     "value_size": lib.bpf_table_leaf_size_id(b.module, i),
                     "max_entries": lib.bpf_table_max_entries_id(b.module, i),
                     "flags": lib.bpf_table_flags_id(b.module, i)})
    progs = {}
    callbacks = req.get("callbacks") or []
    map_refs = req.get("map_refs") or {}
    m = LINK_LINE.search(req["text"])
    if m:  # the code generator's own statement of what its markers stand for
        callbacks = callbacks or [c for c in m.group(1).split(",") if c]
        map_refs = map_refs or dict(r.split(":", 1) for r in m.group(2).split(",") if r)
    marker_fd = {-1 - int(i): name for i, name in map_refs.items()}
    for fn in req["functions"]:
        insns, subprogs = link(bytes(b.dump_func(fn)), lambda name: bytes(b.dump_func(name)), callbacks,
                               map_refs)
        relocs = []
        for i in range(0, len(insns), 8):
            code, regs, _off, imm = struct.unpack_from("<BBhi", insns, i)
            if code == 0x18 and regs >> 4 == BPF_PSEUDO_MAP_FD:
                if imm in marker_fd:
                    relocs.append([i // 8, marker_fd[imm]])
                    continue
                if imm not in fd_to_name:
                    raise RuntimeError(f"{fn}: instruction {i // 8} loads unknown map fd {imm}")
                relocs.append([i // 8, fd_to_name[imm]])
            elif code == 0x18 and regs >> 4 == BPF_PSEUDO_FUNC:
                pass
            elif code == 0x18 and regs >> 4:
                raise RuntimeError(f"{fn}: instruction {i // 8} uses global data (src_reg {regs >> 4}), "
                                   f"which the loader does not support")
            elif code == 0x85 and regs >> 4 == BPF_PSEUDO_CALL:
                raise RuntimeError(f"{fn}: instruction {i // 8} calls a BPF subprogram; "
                                   f"every helper must be inlined")
        progs[fn] = {"insns": base64.b64encode(insns).decode(), "relocs": relocs, "subprogs": subprogs}
    return {"maps": maps, "progs": progs}


def main() -> int:
    # clang's and LLVM's messages go to stderr, which the parent captures: LLVM may also end the
    # process on its own (e.g. "Looks like the BPF stack limit is exceeded") before we answer
    req = json.load(sys.stdin)
    try:
        result = compile_object(req)
    except Exception as e:  # BCC raises bare Exceptions
        result = {"error": str(e)}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
