"""x86-64 machine code, decoded with Capstone (Debian's python3-capstone, or `pip install
capstone`): where a function returns.

A linear sweep is exact for compiled Go functions (no data in their code; the padding after the last
instruction is INT3), which is what it is used for: uretprobes on Go binaries become uprobes on each
RET instruction, since the return address a uretprobe plants breaks when Go moves the goroutine's
stack.
"""

from __future__ import annotations

from typing import List


class DecodeError(Exception):
    pass


def return_offsets(code: bytes) -> List[int]:
    """Offsets in `code` (one function, from its first instruction) of its RET instructions."""
    try:
        import capstone
    except ImportError:
        raise DecodeError("finding a function's RET instructions needs Capstone (apt-get install "
                          "python3-capstone, or pip install capstone)") from None
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    out, end = [], 0
    for address, size, mnemonic, _ops in md.disasm_lite(code, 0):
        if mnemonic in ("ret", "retq"):
            out.append(address)
        end = address + size
    if end < len(code) and any(b != 0xCC for b in code[end:]):
        raise DecodeError(f"cannot decode the instruction at offset {end} of the function")
    return out
