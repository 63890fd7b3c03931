#!/usr/bin/env python3
"""Writes kubectl_pytrace/kernel/syscall_table.py: the x86_64 system call number of each
syscalls:sys_enter_NAME / sys_exit_NAME tracepoint (the syscall dispatcher, bpf/dispatch.py).

A tracepoint is named after the system call's entry point (SYSCALL_DEFINE), which is the uapi name
but for six system calls kept for compatibility (RENAMED, from the kernel's syscall_64.tbl).
Numbers never change on x86_64; a newer kernel's new system calls, missing here, are attached one
tracepoint at a time. Source: asm/unistd_64.h of a recent linux-libc-dev (uapi), e.g. Debian sid's:

    hack/gen-syscall-table.py /path/to/usr/include/x86_64-linux-gnu/asm/unistd_64.h "linux-libc-dev 7.2.13" \
        > kubectl_pytrace/kernel/syscall_table.py
"""

import re
import sys

RENAMED = {"stat": "newstat", "fstat": "newfstat", "lstat": "newlstat", "sendfile": "sendfile64",
           "uname": "newuname", "umount2": "umount"}


def main(path: str, source: str) -> None:
    text = open(path).read()
    table = {RENAMED.get(name, name): int(nr) for name, nr in re.findall(r"#define __NR_(\w+) (\d+)", text)}
    items = [f"{name!r}: {nr}," for name, nr in sorted(table.items(), key=lambda kv: kv[1])]
    print(f'"""x86_64 system call numbers by entry point (the NAME of syscalls:sys_enter_NAME); written by\n'
          f'hack/gen-syscall-table.py from asm/unistd_64.h of {source}. Do not edit."""\n')
    print("NUMBERS = {")
    line = "   "
    for item in items:
        if len(line) + 1 + len(item) > 108:
            print(line)
            line = "   "
        line += " " + item
    print(line)
    print("}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
