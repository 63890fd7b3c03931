"""One program on raw_syscalls:sys_enter (or sys_exit) that jumps, by system call number, to the
programs written for syscalls:sys_enter_NAME (sys_exit_NAME).

    insns = syscall_dispatcher(table_fd, status_offset)   # a BPF_PROG_TYPE_TRACEPOINT program

Why: every syscalls:* tracepoint is a perf event of its own, and closing one waits for an RCU
grace period under the kernel's event_mutex, one after another: 360 of them took 26 s to detach on
a small VM. Through the dispatcher a syscall wildcard is one perf event however wide it is.

Why it is the same: the kernel's syscalls:* events are themselves fired from the sys_enter/sys_exit
tracepoints, for the tasks whose system call is not a 32-bit one (trace_get_syscall_nr() ignores
those: the task's thread_info.status has TS_COMPAT), by number. The record a sys_enter_NAME program
reads (its number at offset 8, its arguments as u64s from offset 16) has the layout of
raw_syscalls:sys_enter's (id at 8, args[6] from 16), as sys_exit_NAME's (ret at 16) has
raw_syscalls:sys_exit's; tail-called programs read the dispatcher's record.
"""

from __future__ import annotations

import struct

TS_COMPAT = 0x0002  # arch/x86/include/asm/thread_info.h: a 32-bit system call is running
HELPER_TAIL_CALL, HELPER_GET_CURRENT_TASK, HELPER_PROBE_READ_KERNEL = 12, 35, 113
BPF_PSEUDO_MAP_FD = 1


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def _mov_reg(dst: int, src: int) -> bytes:
    return _insn(0xBF, dst, src)


def _mov_imm(dst: int, imm: int) -> bytes:
    return _insn(0xB7, dst, imm=imm)


def _add_imm(dst: int, imm: int) -> bytes:
    return _insn(0x07, dst, imm=imm)


def _call(helper: int) -> bytes:
    return _insn(0x85, imm=helper)


def _load_map_fd(dst: int, fd: int) -> bytes:  # ld_imm64: two instruction slots
    return _insn(0x18, dst, BPF_PSEUDO_MAP_FD, imm=fd) + _insn(0)


def syscall_dispatcher(table_fd: int, status_offset: int) -> bytes:
    """r1 = ctx. Leaves 32-bit system calls alone, else bpf_tail_call(ctx, table, id): a number
    with no program in the table (or out of its range: -1, x32) falls through to return 0."""
    code = [
        _mov_reg(6, 1),                              # r6 = ctx
        _call(HELPER_GET_CURRENT_TASK),              # r0 = current
        _mov_reg(1, 10), _add_imm(1, -8),            # r1 = &status (stack)
        _mov_imm(2, 4),                              # r2 = sizeof(u32)
        _mov_reg(3, 0), _add_imm(3, status_offset),  # r3 = &current->thread_info.status
        _call(HELPER_PROBE_READ_KERNEL),
        _insn(0x61, 1, 10, off=-8),                  # r1 = *(u32 *)(r10 - 8)
        _insn(0x57, 1, imm=TS_COMPAT),               # r1 &= TS_COMPAT
        _insn(0x55, 1, off=5),                       # if r1 != 0: skip the next 5 slots (to return)
        _insn(0x79, 3, 6, off=8),                    # r3 = *(u64 *)(ctx + 8): the system call number
        _mov_reg(1, 6),                              # r1 = ctx
        _load_map_fd(2, table_fd),                   # r2 = table (2 slots)
        _call(HELPER_TAIL_CALL),                     # does not return when the table has the number
        _mov_imm(0, 0),
        _insn(0x95),                                 # exit
    ]
    return b"".join(code)
