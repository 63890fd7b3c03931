"""A small, fully known Environment for the compiler's unit tests (no tracefs, no BTF file).

It answers like the tracer's HostEnvironment does: None where it knows nothing, LookupFailed for
names that do not exist, and a few tracepoints, structs, functions and USDT probes that do.
"""

from __future__ import annotations

import fnmatch
from typing import Dict, List, Optional, Tuple

from kubectl_pytrace.lang.env import (C_ABI, GO_REGABI, GO_STACKABI, Environment, LookupFailed, StructField,
                                      TracepointField)
from kubectl_pytrace.lang.types import ArrayT, IntT, PtrT, RecordT, StructT, Type, VoidT
from kubectl_pytrace.lang.usdt import UsdtArg, parse_args

I32, U32, I64, U64 = IntT(32, True), IntT(32, False), IntT(64, True), IntT(64, False)
CHAR = IntT(8, True)

TRACEPOINTS: Dict[Tuple[str, str], List[TracepointField]] = {
    ("syscalls", "sys_enter_openat"): [
        TracepointField("__syscall_nr", I32, 8, 4),
        TracepointField("dfd", I64, 16, 8),
        TracepointField("filename", PtrT(CHAR, "user"), 24, 8),
        TracepointField("flags", I64, 32, 8),
        TracepointField("mode", U64, 40, 8),
    ],
    ("syscalls", "sys_enter_read"): [
        TracepointField("__syscall_nr", I32, 8, 4),
        TracepointField("fd", U64, 16, 8),
        TracepointField("buf", PtrT(CHAR, "user"), 24, 8),
        TracepointField("count", U64, 32, 8),
    ],
    ("syscalls", "sys_exit_read"): [
        TracepointField("__syscall_nr", I32, 8, 4),
        TracepointField("ret", I64, 16, 8),
    ],
    ("sched", "sched_switch"): [
        TracepointField("prev_comm", ArrayT(CHAR, 16), 8, 16),
        TracepointField("prev_pid", I32, 24, 4),
        TracepointField("prev_prio", I32, 28, 4),
        TracepointField("next_comm", ArrayT(CHAR, 16), 40, 16),
        TracepointField("next_pid", I32, 56, 4),
    ],
    ("sched", "sched_process_exec"): [
        TracepointField("filename", PtrT(CHAR, "kernel"), 8, 4, data_loc=True),
        TracepointField("pid", I32, 12, 4),
    ],
}

TASK = StructT("struct task_struct")
STRUCTS: Dict[str, Dict[str, StructField]] = {
    "struct task_struct": {
        "pid": StructField(2400, I32),
        "tgid": StructField(2404, I32),
        "comm": StructField(3000, ArrayT(CHAR, 16)),
        "real_parent": StructField(2416, PtrT(TASK, "kernel")),
        "flags": StructField(44, U32),
        "in_execve": StructField(2000, IntT(32, False), bit_offset=3, bit_size=1),
    },
    "struct sock": {
        "sk_family": StructField(16, IntT(16, False)),
        "sk_daddr": StructField(0, U32),
        "sk_v6_daddr": StructField(56, ArrayT(IntT(8, False), 16)),
        "skc_ports": StructField(12, ArrayT(IntT(16, False), 2)),
    },
    "struct file": {"f_flags": StructField(64, U32)},
    "struct bpf_iter__task": {"meta": StructField(0, PtrT(VoidT(), "kernel")), "task": StructField(8, PtrT(TASK, "kernel"))},
}
RAW_TRACEPOINTS = {"sched_switch": [("preempt", IntT(8, False)), ("prev", PtrT(TASK, "kernel")),
                                    ("next", PtrT(TASK, "kernel")), ("prev_state", U32)]}
STRUCT_SIZES = {"struct task_struct": 9792, "struct sock": 760, "struct file": 232, "struct bpf_iter__task": 16}

# enum values of the kernel's BTF: always known; #defines: known when their header is included
ENUMS = {"TCP_ESTABLISHED": 1, "TCP_CLOSE": 7, "BPF_MAP_TYPE_HASH": 1, "BIG": 1 << 63}
HEADER_DEFINES = {"linux/sched.h": {"TASK_RUNNING": 0, "TASK_INTERRUPTIBLE": 1},
                  "sys/socket.h": {"AF_INET": 2, "AF_INET6": 10}}
KERNEL_SYMBOLS = {"avenrun": 0xFFFFFFFF82A0B1C0, "do_sys_openat2": 0xFFFFFFFF816B7430}

USER_FUNCTIONS = {"/bin/x": ["main", "foo", "foo_bar", "ns::f", "_ZN2ns1fEv"],
                  # Go binaries: a recent one (register ABI) and one built before Go 1.17 (stack ABI)
                  "/bin/go": ["main.main", "main.handle", "main.(*Server).Handle", "main.(xServer).Handle"],
                  "/bin/oldgo": ["main.main", "main.handle"]}
CONVENTIONS = {"/bin/x": C_ABI, "/bin/go": GO_REGABI, "/bin/oldgo": GO_STACKABI}
RETURN_SITES = {("/bin/go", "main.handle"): [0x2a, 0x51], ("/bin/go", "main.main"): []}  # offsets of RETs
USDT = {"/bin/x": {("prov", "start"): parse_args("-4@%edi 8@-16(%rbp)"), ("prov", "stop"): [],
                   ("other", "start"): parse_args("-8@$3")}}
KFUNCS = {"vfs_read": ([("file", PtrT(StructT("struct file"), "kernel")), ("count", U64)], I64)}


class FakeEnv(Environment):
    """Knows the tables above; every other name does not exist."""

    kprobes_available = False

    def tracepoints(self, category: str, name: str) -> Optional[List[Tuple[str, str]]]:
        return [k for k in TRACEPOINTS if fnmatch.fnmatchcase(k[0], category) and fnmatch.fnmatchcase(k[1], name)]

    def tracepoint_fields(self, category: str, name: str) -> Optional[List[TracepointField]]:
        try:
            return TRACEPOINTS[(category, name)]
        except KeyError:
            raise LookupFailed(f"tracepoint {category}:{name} not found") from None

    def has_btf(self) -> bool:
        return True

    def struct_exists(self, cname: str) -> Optional[bool]:
        return cname in STRUCTS

    def struct_size(self, cname: str) -> Optional[int]:
        if cname not in STRUCT_SIZES:
            raise LookupFailed(f"{cname} is not in the kernel's BTF")
        return STRUCT_SIZES[cname]

    def possible_cpus(self) -> Optional[int]:
        return 2

    def raw_tracepoints(self, pattern: str) -> Optional[List[str]]:
        return sorted(n for n in RAW_TRACEPOINTS if fnmatch.fnmatchcase(n, pattern))

    def raw_tracepoint_args(self, name: str) -> Optional[List[Tuple[str, Type]]]:
        if name not in RAW_TRACEPOINTS:
            raise LookupFailed(f"no tracepoint named '{name}' in the kernel's BTF (btf_trace_{name})")
        return RAW_TRACEPOINTS[name]

    def iter_context(self, name: str) -> Optional[List[Tuple[str, Type]]]:
        if f"struct bpf_iter__{name}" not in STRUCTS:
            raise LookupFailed(f"this kernel has no '{name}' iterator (no struct bpf_iter__{name} in its BTF)")
        return [(m, f.type) for m, f in STRUCTS[f"struct bpf_iter__{name}"].items()]

    def struct_record(self, cname: str) -> Optional[RecordT]:
        if cname not in STRUCTS:
            raise LookupFailed(f"{cname} is not in the kernel's BTF")
        members = tuple((name, PtrT(VoidT()) if isinstance(f.type, PtrT) else f.type, f.offset, f.bit_offset,
                         f.bit_size) for name, f in STRUCTS[cname].items())
        return RecordT(cname, STRUCT_SIZES[cname], members)

    def struct_field(self, cname: str, member: str) -> Optional[StructField]:
        if cname not in STRUCTS:
            raise LookupFailed(f"{cname} is not in the kernel's BTF")
        try:
            return STRUCTS[cname][member]
        except KeyError:
            raise LookupFailed(f"{cname} has no member '{member}'") from None

    def kernel_functions(self, pattern: str) -> Optional[List[str]]:
        return sorted(f for f in KFUNCS if fnmatch.fnmatchcase(f, pattern))

    def kernel_function_args(self, func: str) -> Optional[Tuple[List[Tuple[str, Type]], Type]]:
        if func not in KFUNCS:
            raise LookupFailed(f"kernel function '{func}' is not in the kernel's BTF")
        return KFUNCS[func]

    def user_functions(self, path: str, pattern: str) -> Optional[List[str]]:
        if path not in USER_FUNCTIONS:
            raise LookupFailed(f"cannot read symbols of {path}: no such file")
        return [f for f in USER_FUNCTIONS[path] if fnmatch.fnmatchcase(f, pattern)]

    def calling_convention(self, path: str) -> Optional[str]:
        if path not in CONVENTIONS:
            raise LookupFailed(f"cannot read {path}: no such file")
        return CONVENTIONS[path]

    def return_sites(self, path: str, func: str) -> Optional[List[int]]:
        return RETURN_SITES[(path, func)]

    def user_symbol(self, path: str, name: str) -> Optional[Tuple[int, int, bool]]:
        # /bin/x is position independent: main at 0x1100, a 4-byte counter at 0x4010
        table = {"main": (0x1100, 30), "foo": (0x1200, 10), "counter": (0x4010, 4), "names": (0x4040, 32)}
        if path not in USER_FUNCTIONS or name not in table:
            raise LookupFailed(f"no symbol named '{name}' in {path}")
        return table[name] + (True,)

    def usdt_probes(self, path: str) -> Optional[List[Tuple[str, str]]]:
        if path not in USDT:
            raise LookupFailed(f"cannot read USDT probes of {path}: no such file")
        return sorted(USDT[path])

    def constant(self, name: str, includes=()) -> Optional[int]:
        for header in includes:
            if name in HEADER_DEFINES.get(header, {}):
                return HEADER_DEFINES[header][name]
        if name in ENUMS:
            return ENUMS[name]
        missing = [h for h in includes if h not in HEADER_DEFINES]
        if missing:
            raise LookupFailed(f"not found in the kernel's BTF nor in the headers found; not found: <{missing[0]}>")
        return None

    def kernel_symbol(self, name: str) -> Optional[int]:
        if name not in KERNEL_SYMBOLS:
            raise LookupFailed(f"no kernel symbol named '{name}' in /proc/kallsyms")
        return KERNEL_SYMBOLS[name]

    def usdt_args(self, path: str, provider: str, name: str) -> Optional[List[UsdtArg]]:
        return USDT.get(path, {}).get((provider, name))
