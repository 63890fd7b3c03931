#!/usr/bin/env python3
"""Writes kubectl_pytrace/lang/abi.py: the x86_64 system call names, errno messages and signal
descriptions that syscall_name(), strerror() and signal_name() return.

Sources: Linux's uapi headers as installed by linux-libc-dev (asm/unistd_64.h, asm/unistd_x32.h,
asm-generic/errno*.h: each errno's comment is its message), glibc's strsignal(3), and the system
calls newer than the installed headers (NEWER_SYSCALLS, from the kernel's syscall_64.tbl).

    hack/gen-abi-tables.py > kubectl_pytrace/lang/abi.py
"""

import ctypes
import re
import sys

INCLUDE = "/usr/include"
# system calls of Linux 6.18's syscall_64.tbl that linux-libc-dev 6.1 does not list
NEWER_SYSCALLS = {335: "uretprobe", 451: "cachestat", 452: "fchmodat2", 453: "map_shadow_stack",
                  454: "futex_wake", 455: "futex_wait", 456: "futex_requeue", 457: "statmount",
                  458: "listmount", 459: "lsm_get_self_attr", 460: "lsm_set_self_attr",
                  461: "lsm_list_modules", 462: "mseal", 463: "setxattrat", 464: "getxattrat",
                  465: "listxattrat", 466: "removexattrat", 467: "open_tree_attr", 468: "file_getattr",
                  469: "file_setattr"}


def syscalls():
    names = dict(NEWER_SYSCALLS)
    text = open(f"{INCLUDE}/x86_64-linux-gnu/asm/unistd_64.h").read()
    for name, nr in re.findall(r"#define __NR_(\w+) (\d+)", text):
        names[int(nr)] = name
    # the x32 ABI's own entries (512 and up, __X32_SYSCALL_BIT cleared)
    text = open(f"{INCLUDE}/x86_64-linux-gnu/asm/unistd_x32.h").read()
    for name, nr in re.findall(r"#define __NR_(\w+) \(__X32_SYSCALL_BIT \+ (\d+)\)", text):
        if int(nr) >= 512:
            names[int(nr)] = name
    return names


def errnos():
    messages, aliases = {0: "Success"}, {}
    for f in ("errno-base.h", "errno.h"):
        text = open(f"{INCLUDE}/asm-generic/{f}").read()
        for name, value, comment in re.findall(r"#define\s+(E\w+)\s+(\w+)\s*/\*\s*(.*?)\s*\*/", text):
            if value.isdigit():
                messages[int(value)] = comment
            else:
                aliases[value] = comment
    # EWOULDBLOCK is EAGAIN: one message says both
    messages[11] = f"{messages[11]} ({aliases['EAGAIN'][0].lower()}{aliases['EAGAIN'][1:]})"
    return messages


def signals():
    libc = ctypes.CDLL("libc.so.6")
    libc.strsignal.restype = ctypes.c_char_p
    return {n: libc.strsignal(n).decode() for n in range(0, 65)}


def table(name, doc, entries):
    out = [f"# {doc}", f"{name} = {{"]
    line = "   "
    for k in sorted(entries):
        item = f" {k}: {entries[k]!r},"
        if len(line) + len(item) > 110:
            out.append(line)
            line = "   "
        line += item
    out.append(line)
    out.append("}")
    return "\n".join(out)


def main():
    print('"""Tables of the x86_64 Linux ABI for syscall_name(), strerror() and signal_name(); written by')
    print('hack/gen-abi-tables.py from the kernel\'s uapi headers and glibc. Do not edit."""')
    print()
    print('UNKNOWN_SYSCALL = "Unknown syscall"')
    print('UNKNOWN_ERROR = "Unknown error"')
    print('UNKNOWN_SIGNAL = "N/A"')
    print()
    print(table("SYSCALLS", "system call number -> name (64-bit and x32 ABIs)", syscalls()))
    print()
    print(table("ERRNOS", "errno -> message", errnos()))
    print()
    print(table("SIGNALS", "signal number -> description (strsignal(3))", signals()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
