"""BCC as a compiler, in a process of its own: C text in, BPF object (JSON) out.

    python -m kubectl_pytrace.bpf.bcc_compile < request.json > object.json

The request: {"text": C, "functions": [names], "usdt": [[path, "provider:name", fn], ...]}.
The object: {"maps": [{name, type, key_size, value_size, max_entries, flags}],
             "progs": {fn: {"insns": base64, "relocs": [[insn index, map name], ...]}}}
or {"error": message}; the compiler's own messages are on stderr.

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
import struct
import sys

BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_CALL = 1


def compile_object(req: dict) -> dict:
    from bcc import BPF, USDT
    from bcc.libbcc import lib

    contexts = {}
    for path, probe, fn in req.get("usdt", []):
        ctx = contexts.get(path)
        if ctx is None:
            ctx = contexts[path] = USDT(path=path)
        ctx.enable_probe(probe=probe, fn_name=fn)
    texts = [ctx.get_text() for ctx in contexts.values()]
    prefix = "\n".join(t.decode() if isinstance(t, bytes) else t for t in texts)
    b = BPF(text=(prefix + "\n" + req["text"]).encode(), cflags=req.get("cflags", []))
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
    for fn in req["functions"]:
        insns = bytes(b.dump_func(fn))
        relocs = []
        for i in range(0, len(insns), 8):
            code, regs, _off, imm = struct.unpack_from("<BBhi", insns, i)
            if code == 0x18 and regs >> 4 == BPF_PSEUDO_MAP_FD:
                if imm not in fd_to_name:
                    raise RuntimeError(f"{fn}: instruction {i // 8} loads unknown map fd {imm}")
                relocs.append([i // 8, fd_to_name[imm]])
            elif code == 0x18 and regs >> 4:
                raise RuntimeError(f"{fn}: instruction {i // 8} uses global data (src_reg {regs >> 4}), "
                                   f"which the loader does not support")
            elif code == 0x85 and regs >> 4 == BPF_PSEUDO_CALL:
                raise RuntimeError(f"{fn}: instruction {i // 8} calls a BPF subprogram; "
                                   f"every helper must be inlined")
        progs[fn] = {"insns": base64.b64encode(insns).decode(), "relocs": relocs}
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
