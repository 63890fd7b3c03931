"""Where a function returns (host/x86.py): the RET instructions a uretprobe on Go attaches to."""

from __future__ import annotations

import pytest

from kubectl_pytrace.host import x86

CODE = (b"\x48\x89\xd8"                  # 0  mov rax, rbx
        b"\x74\x01"                      # 3  je 6
        b"\xc3"                          # 5  ret
        b"\x48\xc7\xc0\xc3\x00\x00\x00"  # 6  mov rax, 0xc3 (a 0xc3 byte that is no RET)
        b"\x48\x83\xc0\x01"              # 13 add rax, 1
        b"\xc3"                          # 17 ret
        b"\xcc\xcc\xcc")                 # padding


def test_ret_instructions_not_bytes():
    assert x86.return_offsets(CODE) == [5, 17]


def test_code_that_does_not_decode_is_refused():
    with pytest.raises(x86.DecodeError, match="offset 18"):
        x86.return_offsets(CODE[:18] + b"\x06\xc3")  # push es: no instruction in 64-bit mode
