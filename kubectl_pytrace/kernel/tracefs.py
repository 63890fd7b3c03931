"""tracefs (mount, tracepoint lists and formats, traceable functions) and kernel symbols.

A tracepoint's fields come from its format file, e.g. events/sched/sched_process_exec/format:

    name: sched_process_exec
    ID: 365
    format:
    	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
    	...
    	field:int common_pid;	offset:4;	size:4;	signed:1;

    	field:__data_loc char[] filename;	offset:8;	size:4;	signed:0;
    	field:pid_t pid;	offset:12;	size:4;	signed:1;

The fields after the blank line are what bpftrace 0.17 shows in `-lv` and lets a program read as
`args->NAME`; the common_* ones before it are in its args struct too, but reading them is an
error ("BPF does not support accessing common tracepoint fields"). A `__data_loc char[]` field is
a u32 holding (length << 16 | offset of the string from the start of the record).

Probe names take bpftrace 0.17's wildcard, `*` only (it rejects `?` and `{a,b}` as syntax errors).
"""

from __future__ import annotations

import bisect
import difflib
import errno
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from kubectl_pytrace.errors import KernelError

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
DEBUGFS = "/sys/kernel/debug"
KALLSYMS = "/proc/kallsyms"


class TracefsError(KernelError):
    """A user-facing problem with tracefs, a tracepoint, or kernel symbols."""


# ---------------------------------------------------------------------------------------------
# Mounting

def ensure_tracefs(candidates: Sequence[str] = TRACEFS_DIRS, mount: bool = True) -> str:
    """The tracefs directory, mounting tracefs (and debugfs) first when missing and root.

    Mounted means the directory has an events/ subdirectory; an unmounted mount point is empty.
    """
    for path in candidates:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    target = candidates[0]
    if not mount or os.geteuid() != 0:
        raise TracefsError(f"tracefs is not mounted (looked at {', '.join(candidates)}); as root "
                           f"run: mount -t tracefs nodev {target}")
    _mount("tracefs", target)
    if os.path.isdir(DEBUGFS) and not os.path.ismount(DEBUGFS) and target.startswith("/sys/"):
        try:  # BCC and older tools look under /sys/kernel/debug/tracing
            _mount("debugfs", DEBUGFS)
        except TracefsError:
            pass
    if not os.path.isdir(os.path.join(target, "events")):
        raise TracefsError(f"mounted tracefs at {target} but it has no events/ directory")
    return target


def _mount(fstype: str, target: str) -> None:
    import ctypes  # only when mounting: it costs start-up time

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    if libc.mount(b"nodev", target.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        if err == errno.EBUSY:  # someone mounted it meanwhile
            return
        raise TracefsError(f"cannot mount {fstype} on {target}: {os.strerror(err)} (run: "
                           f"mount -t {fstype} nodev {target})")


# ---------------------------------------------------------------------------------------------
# Wildcards and listing

def wildcard(pattern: str) -> "re.Pattern[str]":
    """bpftrace's wildcard: `*` matches any run of characters, everything else is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.S)


def has_wildcard(pattern: str) -> bool:
    return "*" in pattern


def list_tracepoints(category: str = "*", name: str = "*",
                     root: Optional[str] = None) -> List[Tuple[str, str]]:
    """[(category, name)] matching the two wildcards, sorted; ('syscalls', 'sys_enter_open*')."""
    root = root or ensure_tracefs()
    cat_re, name_re = wildcard(category), wildcard(name)
    events = os.path.join(root, "events")
    found = []
    try:
        categories = [e.name for e in os.scandir(events) if e.is_dir() and cat_re.fullmatch(e.name)]
        for cat in categories:
            found += [(cat, e.name) for e in os.scandir(os.path.join(events, cat))
                      if e.is_dir() and name_re.fullmatch(e.name)]
    except OSError:  # events/ unreadable: fall back to the flat list, "sched:sched_switch"
        try:
            with open(os.path.join(root, "available_events")) as f:
                for line in f:
                    cat, _, ev = line.strip().partition(":")
                    if ev and cat_re.fullmatch(cat) and name_re.fullmatch(ev):
                        found.append((cat, ev))
        except OSError as e:
            raise TracefsError(f"cannot list tracepoints under {root}: {e.strerror}") from None
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# Formats

_INT_SIZES = {"u8": 1, "s8": 1, "__u8": 1, "__s8": 1, "char": 1, "unsigned char": 1,
              "signed char": 1, "bool": 1, "u16": 2, "s16": 2, "__u16": 2, "__s16": 2,
              "__be16": 2, "__le16": 2, "u32": 4, "s32": 4, "__u32": 4, "__s32": 4, "int": 4,
              "__be32": 4, "__le32": 4, "unsigned int": 4, "u64": 8, "s64": 8, "__u64": 8,
              "__s64": 8, "long": 8, "unsigned long": 8}


@dataclass(frozen=True)
class TpField:
    """One field of a tracepoint record.

    'char prev_comm[16]' -> c_type 'char', array_len 16; '__data_loc char[] filename' ->
    c_type 'char', data_loc True, array_len None; 'const char * filename' -> 'const char *'.
    """
    name: str
    c_type: str
    offset: int
    size: int
    signed: bool
    array_len: Optional[int] = None
    data_loc: bool = False

    @property
    def decl(self) -> str:
        """The declaration as the format file and `bpftrace -lv` write it."""
        if self.data_loc:
            return f"__data_loc {self.c_type}[] {self.name}"
        if self.array_len is not None:
            return f"{self.c_type} {self.name}[{self.array_len}]"
        return f"{self.c_type} {self.name}"

    @property
    def sized_type(self) -> str:
        """c_type widened as bpftrace does for 8-byte syscall slots: 'int' of size 8 -> 's64'."""
        if self.size == 8 and self.array_len is None and not self.data_loc:
            if self.c_type == "int":
                return "s64"
            if self.c_type in ("unsigned int", "unsigned", "u32", "pid_t", "uid_t", "gid_t"):
                return "u64"
        return self.c_type


@dataclass(frozen=True)
class TracepointFormat:
    category: str
    name: str
    id: int
    fields: Tuple[TpField, ...]          # what args-> may read
    common_fields: Tuple[TpField, ...]   # common_type, common_pid, ...

    def field(self, name: str) -> Optional[TpField]:
        return next((f for f in self.fields if f.name == name), None)


_FIELD = re.compile(r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
                    r"(?:\s*signed:(?P<signed>\d+);)?")


def tracepoint_format(category: str, name: str, root: Optional[str] = None) -> TracepointFormat:
    """Parse events/<category>/<name>/format; TracefsError names a missing tracepoint."""
    root = root or ensure_tracefs()
    path = os.path.join(root, "events", category, name, "format")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise TracefsError(_not_found(category, name, root)) from None
    except OSError as e:
        raise TracefsError(f"cannot read {path}: {e.strerror}") from None
    return parse_format(category, name, text)


def parse_format(category: str, name: str, text: str) -> TracepointFormat:
    """The fields of a format file's text (see the module docstring for an example)."""
    m = re.search(r"^ID:\s*(\d+)", text, re.M)
    fields, common = [], []
    for line in text.splitlines():
        fm = _FIELD.match(line)
        if not fm:
            continue
        tp = _parse_decl(fm["decl"].strip(), int(fm["offset"]), int(fm["size"]), fm["signed"] == "1")
        (common if tp.name.startswith("common_") else fields).append(tp)
    return TracepointFormat(category, name, int(m.group(1)) if m else 0, tuple(fields), tuple(common))


def _parse_decl(decl: str, offset: int, size: int, signed: bool) -> TpField:
    """'unsigned long call_site', 'char comm[16]', '__data_loc char[] name', 'u8 saddr[sizeof(...)]'."""
    data_loc = decl.startswith("__data_loc ")
    if data_loc:
        decl = decl[len("__data_loc "):]
    array: Optional[str] = None
    am = re.search(r"\[([^\]]*)\]\s*$", decl)
    if am and not data_loc:
        array, decl = am.group(1).strip(), decl[: am.start()].rstrip()
    m = re.match(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)$", decl)
    if not m:
        raise TracefsError(f"cannot parse tracepoint field declaration {decl!r}")
    c_type = re.sub(r"\s+", " ", m["type"].strip())
    if data_loc:
        c_type = re.sub(r"\s*\[\s*\]$", "", c_type)
    length = None
    if array is not None:
        if array.isdigit():
            length = int(array)
        else:  # u8 saddr[sizeof(struct sockaddr_in6)]: derive from the field's size
            elem = _INT_SIZES.get(c_type)
            length = size // elem if elem else None
    return TpField(m["name"], c_type, offset, size, signed, length, data_loc)


def _not_found(category: str, name: str, root: str) -> str:
    """'tracepoint not found: syscall:sys_enter_openat (did you mean syscalls:sys_enter_openat?)'"""
    msg = f"tracepoint not found: {category}:{name}"
    events = os.path.join(root, "events")
    try:
        cats = sorted(e.name for e in os.scandir(events) if e.is_dir())
    except OSError:
        return msg
    if category not in cats:
        having = [c for c in cats if os.path.isdir(os.path.join(events, c, name))]
        close = difflib.get_close_matches(category, having or cats, n=1, cutoff=0.4 if having else 0.6)
        hint = f"; did you mean {close[0]}:{name}?" if close else ""
        return f"{msg} (no category {category!r}{hint})"
    names = [e.name for e in os.scandir(os.path.join(events, category)) if e.is_dir()]
    close = difflib.get_close_matches(name, names, n=1)
    return msg + (f" (did you mean {category}:{close[0]}?)" if close else "")


# ---------------------------------------------------------------------------------------------
# Traceable kernel functions

def kernel_functions(pattern: str = "*", root: Optional[str] = None) -> List[str]:
    """Functions kprobes can attach to (available_filter_functions), matching `pattern`, sorted.

    Lines look like "vfs_read" or "ehci_disable_ASE [ehci_hcd]" (the module is dropped).
    Raises TracefsError when the list is missing or unreadable: kernels without
    CONFIG_KPROBES/CONFIG_FUNCTION_TRACER, or locked down (this 6.18 VM answers EPERM).
    """
    root = root or ensure_tracefs()
    path = os.path.join(root, "available_filter_functions")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise TracefsError(f"cannot list kernel functions: {path}: {e.strerror} (this kernel has "
                           "no kprobes or function tracer, or is locked down; kprobe probes "
                           "cannot attach here)") from None
    rx = wildcard(pattern)
    names = {line.split(None, 1)[0] for line in text.splitlines() if line.strip()}
    return sorted(n for n in names if rx.fullmatch(n) and ".part." not in n)


# ---------------------------------------------------------------------------------------------
# Kernel symbols

class KernelSymbols:
    """Address -> symbol from /proc/kallsyms, loaded once, looked up by bisection.

    Lines look like "ffffffff81a3c1f0 T do_sys_openat2" or "ffffffffc0201000 t foo\t[mod]";
    data symbols (b/B/d/D/r/R) are skipped, as BCC (and so bpftrace) does.
    """

    _LINE = re.compile(rb"^([0-9a-f]+) [^bBdDrR\s] (\S+)", re.M)

    def __init__(self, path: str = KALLSYMS) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise TracefsError(f"cannot read kernel symbols from {path}: {e.strerror}") from None
        # Addresses are fixed-width lowercase hex, so sorting the text sorts the numbers, and
        # ~120k int() calls are saved (a third of the load time).
        pairs = sorted(p for p in self._LINE.findall(data) if p[0].strip(b"0"))
        if not pairs:
            raise TracefsError(f"{path} shows no symbol addresses (needs root, and "
                               "kernel.kptr_restrict < 2)")
        self._width = len(pairs[0][0])
        if any(len(a) != self._width for a, _ in pairs):
            pairs = sorted((b"%016x" % int(a, 16), n) for a, n in pairs)
            self._width = 16
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def __len__(self) -> int:
        return len(self._addrs)

    def lookup(self, addr: int) -> Optional[Tuple[str, int]]:
        """(name, offset) of the symbol containing addr, or None below the first symbol."""
        if addr < 0 or addr >= 1 << (4 * self._width):
            return None
        i = bisect.bisect_right(self._addrs, b"%0*x" % (self._width, addr)) - 1
        if i < 0:
            return None
        return self._names[i].decode(), addr - int(self._addrs[i], 16)

    def ksym(self, addr: int) -> str:
        """As bpftrace's ksym(): the name only ('process_timeout'); hex when unknown."""
        found = self.lookup(addr)
        return found[0] if found else f"0x{addr:x}"

    def ksym_offset(self, addr: int) -> str:
        """As a kstack line: 'folio_batch_move_lru+187' (decimal offset); hex when unknown."""
        found = self.lookup(addr)
        return f"{found[0]}+{found[1]}" if found else f"0x{addr:x}"

    def address(self, name: str) -> Optional[int]:
        """kaddr(): the address of a symbol by name (first match)."""
        try:
            return int(self._addrs[self._names.index(name.encode())], 16)
        except ValueError:
            return None


def symbol_address(name: str, path: str = KALLSYMS) -> int:
    """kaddr(): the address of a kernel symbol of any kind (functions and data, first match).

    Raises TracefsError saying why when there is none: no such symbol, addresses hidden, or a
    kernel built without CONFIG_KALLSYMS_ALL, whose kallsyms lists (almost) no data symbols."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TracefsError(f"cannot read kernel symbols from {path}: {e.strerror}") from None
    m = re.search(rb"^([0-9a-f]+) \S " + re.escape(name.encode()) + rb"(?:\t|$)", data, re.M)
    if m is not None and int(m.group(1), 16):
        return int(m.group(1), 16)
    if m is not None:
        raise TracefsError(f"{path} hides kernel addresses (needs root, and kernel.kptr_restrict < 2)")
    reason = ""
    if len(re.findall(rb"^[0-9a-f]+ [dDbB] ", data, re.M)) < 1000:
        reason = (" (this kernel lists almost no data symbols there: it was built without "
                  "CONFIG_KALLSYMS_ALL)")
    raise TracefsError(f"no kernel symbol named '{name}' in {path}{reason}")


_kallsyms: Optional[KernelSymbols] = None


def kallsyms(path: str = KALLSYMS) -> KernelSymbols:
    """The process-wide KernelSymbols for /proc/kallsyms, loaded on first use."""
    global _kallsyms
    if path != KALLSYMS:
        return KernelSymbols(path)
    if _kallsyms is None:
        _kallsyms = KernelSymbols(path)
    return _kallsyms
