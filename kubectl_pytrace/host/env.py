"""The compiler's view of this host: tracefs, the kernel's BTF, ELF symbols and USDT notes.

Paths in uprobe/usdt attach points go through `resolve_path` first, so a container's `/app/server`
is looked up in the container's root (containers.py provides that resolver).
"""

from __future__ import annotations

import fnmatch
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.kernel import sysfs, tracefs
from kubectl_pytrace.lang.env import (C_ABI, GO_REGABI, GO_STACKABI, Environment, LookupFailed, StructField,
                                      TracepointField, ctype_to_type)
from kubectl_pytrace.host import x86
from kubectl_pytrace.host.elf import ELFError, function_code, go_register_abi, open_elf
from kubectl_pytrace.lang.usdt import UsdtArg, UsdtArgError, parse_args
from kubectl_pytrace.lang.types import ArrayT, BoolT, EnumT, IntT, PtrT, RecordT, StructT, Type, VoidT

PathResolver = Callable[[str], str]


def resolve_host_path(path: str) -> str:
    """A probe target on this host: a path (relative ones from the current directory), a library
    name (`libc`, `c`, `libc.so.6`: as the dynamic linker finds it) or an executable in $PATH."""
    from kubectl_pytrace.containers import fs

    return fs.resolve_binary(fs.HOST, path)


VMLINUX = "/sys/kernel/btf/vmlinux"


def enum_type(e) -> EnumT:
    """A BTF enum as the language sees it: an integer of its size that prints as names."""
    values = tuple((v & ((1 << (e.size * 8)) - 1), n) for n, v in e.values)
    return EnumT(e.size * 8, e.signed, f"enum {e.name}" if e.name else "enum (anonymous)", values)


def btf_type(t, space: str = "kernel", depth: int = 0) -> Type:
    """A BTF type as the language sees it (integers, pointers, structs by name, arrays)."""
    from kubectl_pytrace.kernel import btf as kbtf

    t = kbtf.strip(t)
    if isinstance(t, kbtf.Int):
        return IntT(max(8, t.size * 8), t.signed or t.is_char)
    if isinstance(t, kbtf.Enum):
        return enum_type(t)
    if isinstance(t, kbtf.Pointer):
        target = kbtf.strip(t.target)
        if isinstance(target, (kbtf.Struct, kbtf.Fwd)) and target.name:
            kw = "union" if target.is_union else "struct"
            return PtrT(StructT(f"{kw} {target.name}"), space)
        if isinstance(target, kbtf.Struct):
            return PtrT(StructT(anonymous_name(target)), space)
        if isinstance(target, kbtf.Void) or depth > 3:
            return PtrT(VoidT(), space)
        return PtrT(btf_type(target, space, depth + 1), space)
    if isinstance(t, kbtf.Array):
        return ArrayT(btf_type(t.elem, space, depth + 1), t.length)
    if isinstance(t, kbtf.Struct):
        kw = "union" if t.is_union else "struct"
        return StructT(f"{kw} {t.name}" if t.name else anonymous_name(t))
    return IntT(64, False)


_ANONYMOUS: Dict[str, object] = {}  # "struct (anonymous N)" -> its kernel.btf.Struct


def anonymous_name(t) -> str:
    """A name for an anonymous struct or union (a member's type, a typedef's target) that the
    environment can find it by again."""
    key = f"{'union' if t.is_union else 'struct'} (anonymous {id(t)})"
    _ANONYMOUS[key] = t
    return key


def record_type(s, cname: str) -> RecordT:
    """A BTF struct or union as a RecordT: each member at its offset, nested structs and arrays
    whole, the members of anonymous structs and unions in their parent's place."""
    from kubectl_pytrace.kernel import btf as kbtf

    def member_type(t):
        t = kbtf.strip(t)
        if isinstance(t, kbtf.Int):
            if t.is_bool:
                return BoolT()
            return IntT(max(8, t.size * 8), t.signed or t.is_char)
        if isinstance(t, kbtf.Enum):
            return enum_type(t)
        if isinstance(t, kbtf.Array):
            return ArrayT(member_type(t.elem), t.length)
        if isinstance(t, kbtf.Struct):
            kw = "union" if t.is_union else "struct"
            return record_type(t, f"{kw} {t.name}" if t.name else f"{kw} (anonymous)")
        if isinstance(t, kbtf.Pointer):
            return PtrT(VoidT())
        return ArrayT(IntT(8, False), max(0, kbtf.sizeof(t)))  # floats, ...: bytes

    def flatten(struct, base: int):
        for m in struct.members:
            target = kbtf.strip(m.type)
            off = base + m.bit_offset // 8
            if not m.name and isinstance(target, kbtf.Struct):
                yield from flatten(target, off)
                continue
            if m.bitfield_size:
                yield (m.name, member_type(m.type), base + m.bit_offset // 8, m.bit_offset % 8, m.bitfield_size)
            else:
                yield (m.name, member_type(m.type), off, 0, 0)

    return RecordT(cname, s.size, tuple(flatten(s, 0)))


class HostEnvironment(Environment):
    def __init__(self, resolve_path: PathResolver = resolve_host_path, tracefs_root: Optional[str] = None,
                 btf_path: str = VMLINUX, include_dirs: Optional[Sequence[str]] = None):
        self.resolve_path = resolve_path
        self.include_dirs = include_dirs  # where #include <x.h> is looked for; None: the kernel
        # header tree (kernel/headers.py) and the system's include directories
        self._tracefs_root = tracefs_root
        self._btf_path = btf_path
        self._btf = None  # kernel.btf.BTF, loaded on first use
        self.deps: set = set()  # files whose contents the compilation depended on
        self._headers: Dict[Tuple[str, ...], object] = {}  # includes -> cheaders.HeaderMacros
        self._constants: Dict[Tuple[str, Tuple[str, ...]], Optional[int]] = {}
        self._conventions: Dict[str, str] = {}  # binary -> calling convention (asked once per match)

    # ---- tracefs -------------------------------------------------------------------------------
    @property
    def tracefs_root(self) -> str:
        if self._tracefs_root is None:
            self._tracefs_root = tracefs.ensure_tracefs()
        return self._tracefs_root

    @property
    def kprobes_available(self) -> bool:  # type: ignore[override]
        return os.path.exists(os.path.join(self.tracefs_root, "kprobe_events"))

    def tracepoints(self, category: str, name: str) -> Optional[List[Tuple[str, str]]]:
        if not tracefs.has_wildcard(category) and not tracefs.has_wildcard(name):
            if os.path.isdir(os.path.join(self.tracefs_root, "events", category, name)):
                return [(category, name)]
            try:
                tracefs.tracepoint_format(category, name, self.tracefs_root)
            except tracefs.TracefsError as e:
                raise LookupFailed(str(e)) from None
            return [(category, name)]
        return tracefs.list_tracepoints(category, name, self.tracefs_root)

    def tracepoint_fields(self, category: str, name: str) -> Optional[List[TracepointField]]:
        try:
            fmt = tracefs.tracepoint_format(category, name, self.tracefs_root)
        except tracefs.TracefsError as e:
            raise LookupFailed(str(e)) from None
        # syscall arguments point into the calling process; other tracepoints into the kernel
        space = "user" if category == "syscalls" else "kernel"
        out = []
        for f in fmt.fields:
            if f.data_loc:
                t: Type = PtrT(IntT(8, True), "kernel")
            elif "*" in f.c_type:
                t = ctype_to_type(f.c_type, f.size, f.signed, space)
            else:
                t = ctype_to_type(f.c_type, f.size, f.signed, space, f.array_len)
            out.append(TracepointField(f.name, t, f.offset, f.size, f.data_loc))
        return out

    def kernel_functions(self, pattern: str) -> Optional[List[str]]:
        try:
            return tracefs.kernel_functions(pattern, self.tracefs_root)
        except tracefs.TracefsError:
            if self.has_btf():
                return self.btf.func_names(pattern)
            return []

    # ---- BTF ----------------------------------------------------------------------------------
    @property
    def btf(self):
        if self._btf is None:
            from kubectl_pytrace.kernel import btf as kbtf

            self._btf = kbtf.BTF.load(self._btf_path)
        return self._btf

    def has_btf(self) -> bool:
        return os.path.exists(self._btf_path)

    def predefined_macros(self) -> Dict[str, str]:
        return {"BPFTRACE_HAVE_BTF": "1"} if self.has_btf() else {}

    def struct_exists(self, cname: str) -> Optional[bool]:
        if not self.has_btf():
            return None
        return self.btf.struct(cname) is not None

    def _struct(self, cname: str):
        """The BTF struct or union of a C name (an anonymous one by the name btf_type gave it);
        None without BTF, LookupFailed when there is none."""
        if not self.has_btf():
            return None
        struct = _ANONYMOUS.get(cname) or self.btf.struct(cname)
        if struct is None:
            raise LookupFailed(f"{cname} is not in the kernel's BTF")
        return struct

    def struct_size(self, cname: str) -> Optional[int]:
        struct = self._struct(cname)
        return None if struct is None else struct.size

    def struct_record(self, cname: str) -> Optional[RecordT]:
        struct = self._struct(cname)
        return None if struct is None else record_type(struct, cname)

    def struct_field(self, cname: str, member: str) -> Optional[StructField]:
        struct = self._struct(cname)
        if struct is None:
            return None
        from kubectl_pytrace.kernel import btf as kbtf

        try:
            ref = self.btf.field(struct, member)
        except kbtf.BTFError as e:
            raise LookupFailed(str(e)) from None
        t = btf_type(ref.type)
        target = kbtf.strip(ref.type)
        if isinstance(target, kbtf.Struct) and not target.name:
            t = StructT(anonymous_name(target))  # an anonymous struct/union member
        return StructField(ref.offset, t, ref.bit_shift if ref.is_bitfield else 0, ref.bitfield_size)

    def raw_tracepoints(self, pattern: str) -> Optional[List[str]]:
        if not self.has_btf():
            return None
        from kubectl_pytrace.kernel import btf as kbtf

        return [n[len("btf_trace_"):] for n in self.btf.names_of_kind(kbtf.TYPEDEF, "btf_trace_" + pattern)]

    def raw_tracepoint_args(self, name: str) -> Optional[List[Tuple[str, Type]]]:
        if not self.has_btf():
            return None
        from kubectl_pytrace.kernel import btf as kbtf

        # the parameters are named in the tracepoint's __bpf_trace_NAME function; its btf_trace_NAME
        # typedef only has their types
        proto = self.btf.func("__bpf_trace_" + name)
        if proto is None:
            td = self.btf.typedef("btf_trace_" + name)
            proto = kbtf.strip(td.target) if td is not None else None
            if isinstance(proto, kbtf.Pointer):
                proto = kbtf.strip(proto.target)
        if not isinstance(proto, kbtf.FuncProto):
            raise LookupFailed(f"no tracepoint named '{name}' in the kernel's BTF (btf_trace_{name})")
        return [(p.name or f"arg{i}", btf_type(p.type)) for i, p in enumerate(proto.params[1:])]

    def iter_context(self, name: str) -> Optional[List[Tuple[str, Type]]]:
        if not self.has_btf():
            return None
        from kubectl_pytrace.kernel import btf as kbtf

        struct = self.btf.struct(f"struct bpf_iter__{name}")
        if struct is None:
            raise LookupFailed(f"this kernel has no '{name}' iterator (no struct bpf_iter__{name} in its BTF)")
        out = []
        for m in struct.members:
            t = kbtf.strip(m.type)
            if not m.name and isinstance(t, kbtf.Struct) and t.members:  # union { struct task_struct *task; }
                m = t.members[0]
            out.append((m.name, btf_type(m.type)))
        return out

    def kernel_function_args(self, func: str) -> Optional[Tuple[List[Tuple[str, Type]], Type]]:
        if not self.has_btf():
            return None
        proto = self.btf.func(func)
        if proto is None:
            raise LookupFailed(f"kernel function '{func}' is not in the kernel's BTF")
        args = [(p.name, btf_type(p.type)) for p in proto.params]
        return args, btf_type(proto.ret)

    # ---- constants and symbols ----------------------------------------------------------------
    def constant(self, name: str, includes: Sequence[str] = ()) -> Optional[int]:
        key = (name, tuple(includes))
        if key not in self._constants:
            self._constants[key] = self._constant(name, tuple(includes), frozenset())
        value = self._constants[key]
        if value is None and includes:
            missing = self._header_macros(tuple(includes)).missing  # type: ignore[attr-defined]
            if missing:
                raise LookupFailed("not found in the kernel's BTF nor in the headers found; not found: "
                                   + ", ".join(f"<{m}>" for m in missing))
        return value

    def enum_type(self, name: str, includes: Sequence[str] = ()) -> Optional[EnumT]:
        if not self.has_btf():
            return None
        if includes and self._header_macros(tuple(includes)).body(name) is not None:  # type: ignore[attr-defined]
            return None
        e = self.btf.enum_of_value(name)
        if e is None:
            return None
        return enum_type(e)

    def possible_cpus(self) -> Optional[int]:
        return sysfs.possible_cpus()

    def cgroup_id(self, path: str) -> Optional[int]:
        return sysfs.cgroup_id(path)

    def enum_named(self, name: str) -> Optional[EnumT]:
        if not self.has_btf():
            return None
        e = self.btf.enum(name)
        return enum_type(e) if e is not None else None

    def typedef(self, name: str) -> Optional[Type]:
        known = super().typedef(name)
        if known is not None or not self.has_btf():
            return known
        td = self.btf.typedef(name)
        if td is None:
            raise LookupFailed(f"no typedef named '{name}' in the kernel's BTF")
        return btf_type(td)

    def _constant(self, name: str, includes: Tuple[str, ...], hide: frozenset) -> Optional[int]:
        """A #define of the included headers (as bpftrace, macros first), else a BTF enum value."""
        if includes and name not in hide:
            body = self._header_macros(includes).body(name)  # type: ignore[attr-defined]
            if body is not None:
                value = self._evaluate(name, body, includes, hide | {name})
                if value is not None:
                    return value
        if self.has_btf():
            return self.btf.enum_value(name)
        return None

    def _evaluate(self, name: str, body: str, includes: Tuple[str, ...], hide: frozenset) -> Optional[int]:
        from kubectl_pytrace.lang import preprocess as pp
        from kubectl_pytrace.lang.diagnostics import Span

        try:
            toks = pp.tokenize(body, 0)
            return pp.ConstExpr(toks, lambda ident, _tok: self._constant(ident, includes, hide),
                                Span(0, len(body))).evaluate()
        except pp.PreprocessorError:  # a cast, sizeof, a string...: not an integer constant
            return None

    def _header_macros(self, includes: Tuple[str, ...]):
        found = self._headers.get(includes)
        if found is None:
            from kubectl_pytrace.kernel import cheaders, headers as kheaders

            if self.include_dirs is None:
                try:
                    tree: Optional[str] = kheaders.find_headers().path
                except kheaders.HeadersNotFound:
                    tree = None
                self.include_dirs = cheaders.search_path(tree)
            found = _TrackedHeaders(includes, self.include_dirs, self.deps)
            self._headers[includes] = found
        return found

    def kernel_symbol(self, name: str) -> Optional[int]:
        try:
            return tracefs.symbol_address(name)
        except tracefs.TracefsError as e:
            raise LookupFailed(str(e)) from None

    # ---- user space binaries --------------------------------------------------------------------
    def _resolve(self, path: str) -> str:
        real = self.resolve_path(path)
        self.deps.add(real)
        return real

    def user_functions(self, path: str, pattern: str) -> Optional[List[str]]:
        real = self._resolve(path)
        names = _function_symbols(real)
        if any(c in pattern for c in "*?["):
            return sorted({n for n in names if fnmatch.fnmatchcase(n, pattern)})
        return [pattern] if pattern in names else []

    def calling_convention(self, path: str) -> Optional[str]:
        real = self._resolve(path)
        if real not in self._conventions:
            try:
                version = open_elf(real).go_version()
            except ELFError as e:
                raise LookupFailed(f"cannot read {real}: {e}") from None
            self._conventions[real] = (C_ABI if version is None else
                                       GO_REGABI if go_register_abi(version) else GO_STACKABI)
        return self._conventions[real]

    def return_sites(self, path: str, func: str) -> Optional[List[int]]:
        real = self._resolve(path)
        try:
            return x86.return_offsets(function_code(real, func))
        except (ELFError, OSError) as e:
            raise LookupFailed(f"cannot read {func} in {real}: {e}") from None
        except x86.DecodeError as e:
            raise LookupFailed(f"{func} in {real}: {e}") from None

    def user_symbol(self, path: str, name: str) -> Optional[Tuple[int, int, bool]]:
        real = self._resolve(path)
        try:
            elf = open_elf(real)
            found = elf.object_symbol(name)
        except (ELFError, OSError) as e:
            raise LookupFailed(f"cannot read {real}: {e}") from None
        if found is None:
            raise LookupFailed(f"no symbol named '{name}' in {real}")
        return found[0], found[1], elf.is_shared

    def user_function_elsewhere(self, path: str, name: str) -> Optional[str]:
        try:
            real = self.resolve_path(path)
            needed = open_elf(real).needed()
        except (LookupFailed, ELFError, OSError):
            return None
        for soname in needed:  # beside the binary, else where its dynamic linker finds it
            lib = os.path.join(os.path.dirname(real), soname)
            try:
                if not os.path.isfile(lib):
                    lib = self.resolve_path(soname)
                if name in _function_symbols(lib):
                    return lib
            except LookupFailed:
                pass
        return None

    def usdt_probes(self, path: str) -> Optional[List[Tuple[str, str]]]:
        real = self._resolve(path)
        return sorted(_usdt_probes(real))

    def usdt_args(self, path: str, provider: str, name: str) -> Optional[List[UsdtArg]]:
        sites = _usdt_probes(self._resolve(path)).get((provider, name))
        if sites is None:
            return None
        if len(set(sites)) > 1:  # the program reads arguments where the note says: one place for all
            raise LookupFailed(f"USDT probe {provider}:{name} of {path} has {len(sites)} sites whose arguments "
                               f"are in different places ({' | '.join(sorted(set(sites)))}): not supported")
        try:
            return parse_args(sites[0])
        except UsdtArgError as e:
            raise LookupFailed(f"USDT probe {provider}:{name} of {path}: {e}") from None


class _TrackedHeaders:
    """cheaders.HeaderMacros that records every header it reads as a dependency of the compilation."""

    def __init__(self, includes: Sequence[str], dirs: Sequence[str], deps: set):
        from kubectl_pytrace.kernel import cheaders

        self.macros = cheaders.HeaderMacros(includes, dirs)
        self.deps = deps
        self.missing = self.macros.missing

    def body(self, name: str) -> Optional[str]:
        try:
            return self.macros.body(name)
        finally:
            self.deps.update(self.macros.files)


def _function_symbols(path: str) -> frozenset:
    """Names uprobes can attach to, as bpftrace lists them: GCC's partial-inlining fragments
    (`__logout.part.0`, `str_to_mpn.part.0.constprop.0`) are left out."""
    try:
        return frozenset(n for n in open_elf(path).function_names() if ".part." not in n)
    except ELFError as e:
        raise LookupFailed(f"cannot read symbols of {path}: {e}") from None


def _usdt_probes(path: str) -> Dict[Tuple[str, str], List[str]]:
    """(provider, name) -> the argument string of each of its sites, from the probe's notes."""
    try:
        notes = open_elf(path).usdt_notes()
    except ELFError as e:
        raise LookupFailed(f"cannot read USDT probes of {path}: {e}") from None
    out: Dict[Tuple[str, str], List[str]] = {}
    for n in notes:
        out.setdefault((n.provider, n.name), []).append(n.args)
    return out


PROC_PID_INIT_INO = 0xEFFFFFFC  # the initial pid namespace's inode number (include/linux/proc_ns.h)


def pid_view(btf_path: Optional[str] = None, proc: str = "/proc") -> Optional[PidView]:
    """How the program numbers `pid`/`tid` when this process is not in the initial pid namespace
    (a tracer in a kind node, with the node's PID namespace): as this namespace does. None in the
    initial namespace (bpf_get_current_pid_tgid's numbers are then the ones /proc shows) or when
    the kernel's BTF is missing (then the machine's numbers, as before)."""
    try:
        inum = os.stat(f"{proc}/self/ns/pid").st_ino
    except OSError:
        return None
    if inum == PROC_PID_INIT_INO:
        return None
    from kubectl_pytrace.kernel import btf as kbtf
    from kubectl_pytrace.lang.scope import PidView

    try:
        btf = kbtf.BTF.load(btf_path) if btf_path else kbtf.BTF.load()
        upid = btf.struct("upid")
        if upid is None:
            return None
        return PidView(inum=inum,
                       group_leader=btf.field("task_struct", "group_leader").offset,
                       thread_pid=btf.field("task_struct", "thread_pid").offset,
                       pid_level=btf.field("pid", "level").offset, numbers=btf.field("pid", "numbers").offset,
                       upid_size=kbtf.sizeof(upid), upid_nr=btf.field(upid, "nr").offset,
                       upid_ns=btf.field(upid, "ns").offset, ns_inum=btf.field("pid_namespace", "ns.inum").offset)
    except (kbtf.BTFError, OSError):
        return None
