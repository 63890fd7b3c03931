"""The smallest BTF a program with subprograms needs: the verifier accepts a callback (bpf_loop,
bpf_for_each_map_elem) only in a program that carries BTF func_info, one FUNC per subprogram.

    blob, func_info = subprog_btf(starts)    # starts: instruction index of each function, main first

Every function gets the prototype `int f(void *)` with static linkage (the verifier does not check
the prototypes of static functions); the types are int, void * and that prototype (its parameter named, as FUNCs need).
"""

from __future__ import annotations

import struct
from typing import List, Sequence, Tuple

_MAGIC = 0xEB9F
INT, PTR, FUNC, FUNC_PROTO = 1, 2, 12, 13
_INT_SIGNED = 1 << 24


def subprog_btf(starts: Sequence[int]) -> Tuple[bytes, List[Tuple[int, int]]]:
    strings = bytearray(b"\0int\0p\0")
    types = bytearray()
    types += struct.pack("<III", 1, INT << 24, 4) + struct.pack("<I", _INT_SIGNED | 32)  # id 1
    types += struct.pack("<III", 0, PTR << 24, 0)  # id 2: void *
    types += struct.pack("<III", 0, FUNC_PROTO << 24 | 1, 1) + struct.pack("<II", 5, 2)  # id 3: (void *p)
    func_info = []
    for i, start in enumerate(starts):
        name_off = len(strings)
        strings += b"f%d\0" % i
        func_info.append((start, 4 + i))
        types += struct.pack("<III", name_off, FUNC << 24, 3)  # id 4 + i, static linkage
    header = struct.pack("<HBBIIIII", _MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + bytes(types) + bytes(strings), func_info
