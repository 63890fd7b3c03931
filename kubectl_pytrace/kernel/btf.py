"""Read the running kernel's BTF (BPF Type Format): real struct layouts and function signatures.

Headers of another kernel compile but give silently wrong offsets (current->tgid through 6.1
headers on a 6.18 kernel reads garbage). The kernel describes its own types in
/sys/kernel/btf/vmlinux, laid out as (Documentation/bpf/btf.rst, include/uapi/linux/btf.h):

    header   u16 magic 0xeb9f, u8 version 1, u8 flags, u32 hdr_len,
             u32 type_off, type_len, str_off, str_len   (offsets counted from the header's end)
    types    records with ids 1, 2, ... (id 0 is void), each one
                 u32 name_off
                 u32 info       vlen in bits 0-15, kind in bits 24-28, kind_flag in bit 31
                 u32 size|type  the size (int, struct, enum...) or a referenced type id
             then kind-specific u32 words, e.g. 3 per struct member (name_off, type, offset)
    strings  NUL-terminated, the first one empty; name_off indexes this section

    $ bpftool btf dump file /sys/kernel/btf/vmlinux format raw      # the same data, as text
    [114] STRUCT 'task_struct' size=3264 vlen=248
            'thread_info' type_id=375 bits_offset=0
            'sched_reset_on_fork' type_id=9 bits_offset=9504 bitfield_size=1

Loading walks the records once to learn where each id starts (~25-35 ms for 127k types); a type
is decoded when first asked for. A name is found by searching the string section for it, then a
packed array of every record's name offset (made on the first lookup, ~5 ms) for that offset: no
100k-entry dictionary is built and nothing needs caching on disk.

    >>> btf = BTF.load()
    >>> f = btf.field("task_struct", "tgid")
    >>> f.offset, type_name(f.type), short_name(f.type)     # on this 6.18 VM
    (1268, 'pid_t', 's32')
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
from array import array
import struct as _struct
from dataclasses import dataclass, field as _field
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from kubectl_pytrace.errors import KernelError

VMLINUX = "/sys/kernel/btf/vmlinux"
PTR_SIZE = 8  # BTF does not record it; every 64-bit kernel BPF runs on uses 8

# BTF_KIND_* from include/uapi/linux/btf.h
(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC,
 FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(1, 20)

# u32 words following the 3-word common part: a fixed number, plus some per vlen item.
_UNKNOWN = 1 << 40  # an unknown kind makes the walk overshoot, which is then reported
_FIXED = [_UNKNOWN] * 32
_PER_ITEM = [0] * 32
for _kind in range(1, 20):
    _FIXED[_kind] = 0
_FIXED[INT] = _FIXED[VAR] = _FIXED[DECL_TAG] = 1
_FIXED[ARRAY] = 3
_PER_ITEM[STRUCT] = _PER_ITEM[UNION] = _PER_ITEM[DATASEC] = _PER_ITEM[ENUM64] = 3
_PER_ITEM[ENUM] = _PER_ITEM[FUNC_PROTO] = 2

_HEADER = _struct.Struct("=HBBIIIII")
_MAGIC = 0xEB9F


class BTFError(KernelError):
    """BTF missing, malformed, or a type/member that is not there (message is user-facing)."""


# ---------------------------------------------------------------------------------------------
# The type model. Types decoded from BTF are cached per BTF object, so a struct is always the
# same object (structs compare by identity: they are nominal and may be self-referential).

@dataclass(frozen=True)
class Void:
    name: str = "void"


@dataclass(frozen=True)
class Int:
    """An integer: BTF names are GCC's ('long unsigned int', 'char', '_Bool')."""
    name: str
    size: int
    signed: bool = False
    is_char: bool = False
    is_bool: bool = False


@dataclass(frozen=True)
class Float:
    name: str
    size: int


@dataclass(frozen=True, eq=False)
class Pointer:
    """A pointer. From BTF its target is decoded on first access (types are cyclic through
    pointers: task_struct -> parent -> task_struct); built by hand, pass the target itself."""
    _target: object = _field(repr=False)

    @property
    def target(self) -> "Type":
        t = self._target
        if isinstance(t, functools.partial):
            t = t()
            object.__setattr__(self, "_target", t)
        return t  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pointer) and self.target == other.target

    def __hash__(self) -> int:
        return hash(("ptr", self.target))

    def __repr__(self) -> str:
        return f"Pointer({self.target!r})"


@dataclass(frozen=True)
class Array:
    elem: "Type"
    length: int


@dataclass(frozen=True)
class Member:
    """A struct/union member; name is '' for an anonymous struct/union member."""
    name: str
    type: "Type"
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True, eq=False)
class Struct:
    """A struct or union (is_union). Compared by identity; name is '' when anonymous."""
    name: str
    size: int
    is_union: bool
    members: Tuple[Member, ...] = _field(repr=False)

    def __repr__(self) -> str:
        kw = "union" if self.is_union else "struct"
        return f"Struct({kw} {self.name or '(anon)'}, size={self.size}, {len(self.members)} members)"


@dataclass(frozen=True)
class Enum:
    name: str
    size: int
    signed: bool
    values: Tuple[Tuple[str, int], ...] = _field(repr=False)


@dataclass(frozen=True)
class Fwd:
    """A forward declaration ('struct foo;') whose body BTF does not have."""
    name: str
    is_union: bool = False


@dataclass(frozen=True)
class Typedef:
    name: str
    target: "Type"


@dataclass(frozen=True)
class Qualified:
    """const, volatile, restrict, or a type_tag (tag holds e.g. 'rcu' for __rcu pointers)."""
    qualifier: str
    target: "Type"
    tag: str = ""


class Param(NamedTuple):
    name: str
    type: "Type"


@dataclass(frozen=True)
class FuncProto:
    params: Tuple[Param, ...]
    ret: "Type"
    variadic: bool = False


@dataclass(frozen=True)
class Func:
    """A kernel function (not a type): its name and signature. linkage 0 static, 1 global."""
    name: str
    proto: FuncProto
    linkage: int = 0


@dataclass(frozen=True)
class Var:
    name: str
    type: "Type"
    linkage: int = 0


@dataclass(frozen=True)
class Datasec:
    """A data section (e.g. '.data..percpu'); vars are (Var, offset, size)."""
    name: str
    size: int
    vars: Tuple[Tuple["Type", int, int], ...] = _field(repr=False)


@dataclass(frozen=True)
class DeclTag:
    """An attribute on a declaration; component is a member/param index, -1 for the whole."""
    name: str
    target: "Type"
    component: int = -1


Type = Union[Void, Int, Float, Pointer, Array, Struct, Enum, Fwd, Typedef, Qualified,
             FuncProto, Func, Var, Datasec, DeclTag]
VOID = Void()


@dataclass(frozen=True)
class FieldRef:
    """Where a (possibly nested) member lives inside the outermost struct.

    offset is in bytes (for a bitfield: the byte holding its first bit); bit_offset counts bits
    from the start of the struct; bitfield_size is 0 for an ordinary member.
    """
    offset: int
    type: Type
    bit_offset: int
    bitfield_size: int = 0

    @property
    def is_bitfield(self) -> bool:
        return self.bitfield_size > 0

    @property
    def bit_shift(self) -> int:
        """Bits to shift right after reading the bytes at `offset` (bitfields only)."""
        return self.bit_offset - 8 * self.offset


# ---------------------------------------------------------------------------------------------
# Helpers on types (no BTF object needed).

_TRANSPARENT = (Typedef, Qualified)


def strip(t: Type) -> Type:
    """Skip typedefs and const/volatile/restrict/type_tag: pid_t -> Int('int')."""
    while isinstance(t, _TRANSPARENT):
        t = t.target
    return t


def sizeof(t: Type) -> int:
    """Size in bytes, as C's sizeof. Raises BTFError for void, functions and forward decls."""
    t = strip(t)
    if isinstance(t, (Int, Float, Struct, Enum, Datasec)):
        return t.size
    if isinstance(t, Pointer):
        return PTR_SIZE
    if isinstance(t, Array):
        return sizeof(t.elem) * t.length
    raise BTFError(f"sizeof({type_name(t)}) is not known")


def find_member(s: Struct, name: str) -> Optional[Tuple[int, Member]]:
    """(bit offset, member) of `name` in `s`, looking inside anonymous struct/union members."""
    for m in s.members:
        if m.name == name:
            return m.bit_offset, m
    for m in s.members:
        inner = strip(m.type)
        if not m.name and isinstance(inner, Struct):
            found = find_member(inner, name)
            if found is not None:
                return m.bit_offset + found[0], found[1]
    return None


def member_names(s: Struct) -> List[str]:
    """Names reachable with '.', anonymous members flattened as C does."""
    names: List[str] = []
    for m in s.members:
        inner = strip(m.type)
        if m.name:
            names.append(m.name)
        elif isinstance(inner, Struct):
            names.extend(member_names(inner))
    return names


def field(s: Struct, path: str) -> FieldRef:
    """Resolve 'a.b.c' through nested (and anonymous) struct members, without dereferencing.

    field(sock, "__sk_common.skc_dport") -> FieldRef(offset=12, type=Typedef('__be16', ...), ...)
    """
    cur: Type = s
    bits = 0
    member: Optional[Member] = None
    seen = s.name or type_name(s)
    for part in path.split("."):
        inner = strip(cur)
        if not isinstance(inner, Struct):
            what = "a pointer: use '->' to read" if isinstance(inner, Pointer) else "not a struct: no"
            raise BTFError(f"{seen} is {type_name(cur)}, {what} member '{part}'")
        found = find_member(inner, part)
        if found is None:
            close = difflib.get_close_matches(part, member_names(inner), n=3)
            notes = [] if cur is s else [f"in {seen}.{part}"]
            if close:
                notes.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
            note = f" ({'; '.join(notes)})" if notes else ""
            raise BTFError(f"{type_name(inner)} has no member '{part}'{note}")
        bits += found[0]
        member = found[1]
        cur = member.type
        seen = f"{seen}.{part}"
    if member is None:
        raise BTFError(f"empty member path for {type_name(s)}")
    return FieldRef(bits // 8, member.type, bits, member.bitfield_size)


def type_name(t: Type, inner: str = "") -> str:
    """C spelling: 'struct sock *', 'pid_t', 'char[16]', 'int (*)(struct sock *, int)'."""
    if isinstance(t, Pointer):
        target = t.target
        star = "*" + inner
        if isinstance(strip_quals(target), (Array, FuncProto)):
            star = f"({star})"
        return type_name(target, star)
    if isinstance(t, Array):
        return type_name(t.elem, f"{inner}[{t.length}]")
    if isinstance(t, FuncProto):
        args = ", ".join(type_name(p.type) for p in t.params) or "void"
        if t.variadic:
            args += ", ..."
        return type_name(t.ret, f"{inner}({args})")
    if isinstance(t, Qualified):
        if t.qualifier == "type_tag":
            return type_name(t.target, inner)
        if isinstance(t.target, Pointer):
            return type_name(t.target, f" {t.qualifier} {inner}".rstrip())
        return f"{t.qualifier} {type_name(t.target, inner)}"
    if isinstance(t, Struct):
        base = f"{'union' if t.is_union else 'struct'} {t.name or '(anon)'}"
    elif isinstance(t, Fwd):
        base = f"{'union' if t.is_union else 'struct'} {t.name}"
    elif isinstance(t, Enum):
        base = f"enum {t.name or '(anon)'}"
    elif isinstance(t, Func):
        return type_name(t.proto, t.name + inner)
    else:
        base = getattr(t, "name", "?")
    if not inner:
        return base
    return base + ("" if inner.startswith("[") else " ") + inner


def strip_quals(t: Type) -> Type:
    """Skip const/volatile/restrict/type_tag but keep typedefs."""
    while isinstance(t, Qualified):
        t = t.target
    return t


def short_name(t: Type) -> str:
    """Our display name: integers as u8..u64/s8..s64 (bool, char kept), the rest as in C.

    pid_t -> 's32', __be16 -> 'u16', struct sock * -> 'struct sock *', char[16] -> 'char[16]'.
    """
    t = strip(t)
    if isinstance(t, Int):
        if t.is_bool:
            return "bool"
        if t.is_char or t.name == "char":
            return "char"
        return f"{'s' if t.signed else 'u'}{t.size * 8}"
    if isinstance(t, Pointer):
        target = short_name(t.target)
        return target + ("*" if target.endswith("*") else " *")
    if isinstance(t, Array):
        return f"{short_name(t.elem)}[{t.length}]"
    return type_name(t)


# C spellings of integer types -> (BTF/GCC name, size, signed); LP64.
def c_int(spelling: str) -> Optional[Int]:
    """The Int for a C integer spelling: 'unsigned long' -> Int('long unsigned int', 8)."""
    words = spelling.split()
    if words in (["_Bool"], ["bool"]):
        return Int("_Bool", 1, is_bool=True)
    known = {"unsigned", "signed", "long", "short", "int", "char"}
    if not words or not set(words) <= known:
        return None
    unsigned = "unsigned" in words
    longs = words.count("long")
    if "char" in words:
        if longs or "short" in words:
            return None
        if unsigned:
            return Int("unsigned char", 1)
        if "signed" in words:
            return Int("signed char", 1, signed=True)
        return Int("char", 1, is_char=True)
    if longs > 2 or (longs and "short" in words):
        return None
    prefix = ["long"] * longs if longs else (["short"] if "short" in words else [])
    name = " ".join(prefix + (["unsigned"] if unsigned else []) + ["int"])
    size = 8 if longs else (2 if "short" in words else 4)
    return Int(name, size, signed=not unsigned)


# ---------------------------------------------------------------------------------------------

class BTF:
    """One BTF blob: vmlinux, or a module's split BTF on top of it (base=vmlinux)."""

    _loaded: Dict[Tuple[object, ...], "BTF"] = {}

    def __init__(self, data: bytes, base: Optional["BTF"] = None, path: str = "<bytes>") -> None:
        self.path = path
        self._data = data
        self._base = base
        if len(data) < _HEADER.size:
            raise BTFError(f"{path}: too short to be BTF ({len(data)} bytes)")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise BTFError(f"{path}: not BTF of this byte order (magic {magic:#06x}, want {_MAGIC:#06x})")
        if version != 1:
            raise BTFError(f"{path}: BTF version {version} is not supported (only 1)")
        self._ts = hdr_len + type_off
        self._te = self._ts + type_len
        self._ss = hdr_len + str_off
        self._se = self._ss + str_len
        if self._te > len(data) or self._se > len(data) or type_len % 4:
            raise BTFError(f"{path}: BTF sections run past the end of the data ({len(data)} bytes)")
        self._first_id = base._first_id + len(base._offs) if base else 1
        self._str_base = base._str_base + base._str_len if base else 0
        self._str_len = str_len
        self._words = memoryview(data)[self._ts:self._te].cast("I")
        self._offs = self._scan()
        self._types: Dict[int, Type] = {}
        self._named: Dict[str, Tuple[int, ...]] = {}
        self._name_offs: Optional[bytes] = None
        self._enum_values: Optional[Dict[int, Tuple[int, int]]] = None

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str = VMLINUX, base: Optional["BTF"] = None) -> "BTF":
        """Read a BTF file (cached per process while the file is unchanged)."""
        try:
            st = os.stat(path)
            key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino, id(base))
            if key in cls._loaded:
                return cls._loaded[key]
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise BTFError(f"no BTF at {path}: the kernel was built without CONFIG_DEBUG_INFO_BTF "
                           "(or, in a pod, /sys is not the host's)") from None
        except OSError as e:
            raise BTFError(f"cannot read BTF at {path}: {e.strerror}") from None
        btf = cls(data, base=base, path=path)
        cls._loaded[key] = btf
        return btf

    @staticmethod
    def available(path: str = VMLINUX) -> bool:
        return os.path.isfile(path) and os.access(path, os.R_OK)

    def _scan(self) -> List[int]:
        """Word index of each record, in id order: one pass over the headers only."""
        words, fixed, per = self._words, _FIXED, _PER_ITEM
        end = len(words)
        offs: List[int] = []
        add = offs.append
        i = 0
        while i < end:
            add(i)
            info = words[i + 1]
            kind = (info >> 24) & 0x1F
            i += 3 + fixed[kind] + per[kind] * (info & 0xFFFF)
        if i != end:
            bad = offs[-1]
            kind = (words[bad + 1] >> 24) & 0x1F
            raise BTFError(f"{self.path}: type id {self._first_id + len(offs) - 1} has kind {kind}, "
                           "which this reader does not know (or the type section is truncated)")
        return offs

    # -- raw access ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of type ids, void excluded (base types included for split BTF)."""
        return self._first_id - 1 + len(self._offs)

    def _string(self, off: int) -> str:
        if off < self._str_base:
            assert self._base is not None
            return self._base._string(off)
        start = self._ss + off - self._str_base
        end = self._data.index(b"\0", start, self._se)
        return self._data[start:end].decode("utf-8", "replace")

    def _record(self, type_id: int) -> int:
        return self._offs[type_id - self._first_id]

    def kind(self, type_id: int) -> int:
        """BTF_KIND_* of a type id (0 for void)."""
        if type_id == 0:
            return 0
        if type_id < self._first_id:
            assert self._base is not None
            return self._base.kind(type_id)
        return (self._words[self._record(type_id) + 1] >> 24) & 0x1F

    def ids_named(self, name: str) -> Tuple[int, ...]:
        """Ids of every type (of any kind) whose name is exactly `name`, in id order."""
        cached = self._named.get(name)
        if cached is not None:
            return cached
        found: List[int] = list(self._base.ids_named(name)) if self._base else []
        d = self._data
        raw = name.encode()
        if raw and b"\0" not in raw:  # strings are deduplicated: the first match is the one
            if d.startswith(raw + b"\0", self._ss):  # a split BTF's strings may not start with ""
                start = self._ss
            else:
                start = d.find(b"\0" + raw + b"\0", self._ss, self._se) + 1
            if start > 0:
                found.extend(self._ids_with_name_off(start - self._ss + self._str_base))
        result = tuple(sorted(set(found)))
        self._named[name] = result
        return result

    def _ids_with_name_off(self, name_off: int) -> Iterator[int]:
        if self._name_offs is None:  # every record's name_off, packed: built on the first lookup
            self._name_offs = array("I", map(self._words.__getitem__, self._offs)).tobytes()
        names = self._name_offs
        pattern = _struct.pack("=I", name_off)
        p = names.find(pattern)
        while p >= 0:
            if p % 4 == 0:
                yield self._first_id + p // 4
            p = names.find(pattern, p + 1)

    # -- decoding ------------------------------------------------------------------------------

    def type(self, type_id: int) -> Type:
        """The type with this id (decoded once, then cached)."""
        if type_id == 0:
            return VOID
        if type_id < self._first_id:
            assert self._base is not None
            return self._base.type(type_id)
        t = self._types.get(type_id)
        if t is None:
            if type_id - self._first_id >= len(self._offs):
                raise BTFError(f"{self.path}: no type id {type_id} (there are {len(self)})")
            t = self._decode(type_id)
            self._types[type_id] = t
        return t

    def _decode(self, type_id: int) -> Type:
        w = self._words
        i = self._record(type_id)
        info, size = w[i + 1], w[i + 2]
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
        name = self._string(w[i])
        items = range(i + 3, i + 3 + 3 * vlen, 3)
        if kind == INT:
            enc = w[i + 3] >> 24
            return Int(name, size, signed=bool(enc & 1), is_char=bool(enc & 2), is_bool=bool(enc & 4))
        if kind == PTR:
            return Pointer(functools.partial(self.type, size))
        if kind == ARRAY:
            return Array(self.type(w[i + 3]), w[i + 5])
        if kind in (STRUCT, UNION):
            return Struct(name, size, kind == UNION, tuple(self._member(w, j, kflag) for j in items))
        if kind == ENUM:
            vals = tuple((self._string(w[j]), _signed(w[j + 1], 32) if kflag else w[j + 1])
                         for j in range(i + 3, i + 3 + 2 * vlen, 2))
            return Enum(name, size, kflag, vals)
        if kind == ENUM64:
            vals = tuple((self._string(w[j]), _signed(w[j + 1] | w[j + 2] << 32, 64) if kflag
                          else w[j + 1] | w[j + 2] << 32) for j in items)
            return Enum(name, size, kflag, vals)
        if kind == FWD:
            return Fwd(name, kflag)
        if kind == TYPEDEF:
            return Typedef(name, self.type(size))
        if kind in (VOLATILE, CONST, RESTRICT, TYPE_TAG):
            qual = {VOLATILE: "volatile", CONST: "const", RESTRICT: "restrict"}.get(kind, "type_tag")
            return Qualified(qual, self.type(size), name if kind == TYPE_TAG else "")
        if kind == FUNC:
            proto = self.type(size)
            if not isinstance(proto, FuncProto):
                raise BTFError(f"{self.path}: function {name} (id {type_id}) has no prototype")
            return Func(name, proto, vlen)
        if kind == FUNC_PROTO:
            pairs = [(w[j], w[j + 1]) for j in range(i + 3, i + 3 + 2 * vlen, 2)]
            variadic = bool(pairs) and pairs[-1] == (0, 0)
            if variadic:
                pairs.pop()
            params = tuple(Param(self._string(n), self.type(t)) for n, t in pairs)
            return FuncProto(params, self.type(size), variadic)
        if kind == VAR:
            return Var(name, self.type(size), w[i + 3])
        if kind == DATASEC:
            return Datasec(name, size, tuple((self.type(w[j]), w[j + 1], w[j + 2]) for j in items))
        if kind == FLOAT:
            return Float(name, size)
        if kind == DECL_TAG:
            return DeclTag(name, self.type(size), _signed(w[i + 3], 32))
        raise BTFError(f"{self.path}: type id {type_id} has unknown kind {kind}")

    def _member(self, w: memoryview, j: int, kflag: bool) -> Member:
        name, tid, off = self._string(w[j]), w[j + 1], w[j + 2]
        if kflag:  # offset = bitfield_size << 24 | bit_offset
            return Member(name, self.type(tid), off & 0xFFFFFF, off >> 24)
        bits = 0
        base = tid  # old encoding: a bitfield is an int whose BTF_INT_BITS is below its size
        while self.kind(base) in (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG):
            base = w[self._record(base) + 2] if base >= self._first_id else 0
        if base >= self._first_id and self.kind(base) == INT:
            r = self._record(base)
            enc = w[r + 3]
            if (enc & 0xFF) != w[r + 2] * 8 or (enc >> 16) & 0xFF:
                bits = enc & 0xFF
                off += (enc >> 16) & 0xFF
        return Member(name, self.type(tid), off, bits)

    # -- lookups -------------------------------------------------------------------------------

    def _first(self, name: str, kinds: Tuple[int, ...]) -> Optional[Type]:
        for tid in self.ids_named(name):
            if self.kind(tid) in kinds:
                return self.type(tid)
        return None

    def struct(self, name: str) -> Optional[Struct]:
        """'task_struct', 'struct task_struct' or 'union bpf_attr' -> Struct, or None."""
        words = name.split()
        kinds: Tuple[int, ...] = (STRUCT, UNION)
        if len(words) == 2 and words[0] in ("struct", "union"):
            kinds = (STRUCT,) if words[0] == "struct" else (UNION,)
            words = words[1:]
        if len(words) != 1:
            return None
        t = self._first(words[0], kinds)
        return t if isinstance(t, Struct) else None

    def typedef(self, name: str) -> Optional[Typedef]:
        t = self._first(name, (TYPEDEF,))
        return t if isinstance(t, Typedef) else None

    def enum(self, name: str) -> Optional[Enum]:
        t = self._first(name, (ENUM, ENUM64))
        return t if isinstance(t, Enum) else None

    def enum_value(self, name: str) -> Optional[int]:
        """The value of an enumerator (TASK_..., TCP_ESTABLISHED, BPF_MAP_TYPE_HASH), or None.

        The name is found in the string section first; the enum records are then indexed by the
        name offsets of their values, once (no strings decoded)."""
        found = self._enumerator(name)
        if found is None:
            return self._base.enum_value(name) if self._base else None
        return found[0]

    def _enumerator(self, name: str) -> Optional[Tuple[int, int]]:
        """(value, id of its enum) of an enumerator of this BTF (not its base's), or None."""
        raw = name.encode()
        if not raw or b"\0" in raw:
            return None
        d = self._data
        if d.startswith(raw + b"\0", self._ss):
            start = self._ss
        else:
            start = d.find(b"\0" + raw + b"\0", self._ss, self._se) + 1
        if start <= 0:
            return None
        return self._enum_index().get(start - self._ss + self._str_base)

    def _enum_index(self) -> Dict[int, Tuple[int, int]]:
        """Name offset of every enumerator -> (its value, the id of its enum); built once."""
        if self._enum_values is None:
            values: Dict[int, Tuple[int, int]] = {}
            w = self._words
            for n, i in enumerate(self._offs):
                info = w[i + 1]
                kind, vlen, signed = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
                if kind == ENUM:
                    for j in range(i + 3, i + 3 + 2 * vlen, 2):
                        values.setdefault(w[j], (_signed(w[j + 1], 32) if signed else w[j + 1], self._first_id + n))
                elif kind == ENUM64:
                    for j in range(i + 3, i + 3 + 3 * vlen, 3):
                        v = w[j + 1] | w[j + 2] << 32
                        values.setdefault(w[j], (_signed(v, 64) if signed else v, self._first_id + n))
            self._enum_values = values
        return self._enum_values

    def enum_of_value(self, name: str) -> Optional[Enum]:
        """The enum an enumerator belongs to (TCP_LISTEN -> enum with name '' or 'tcp_state'...)."""
        found = self._enumerator(name)
        if found is None:
            return self._base.enum_of_value(name) if self._base else None
        t = self.type(found[1])
        return t if isinstance(t, Enum) else None

    def func(self, name: str) -> Optional[FuncProto]:
        """Signature of a kernel function: btf.func('tcp_sendmsg').params[0] == Param('sk', ...)."""
        t = self._first(name, (FUNC,))
        return t.proto if isinstance(t, Func) else None

    def func_names(self, pattern: str = "*") -> List[str]:
        """Sorted names of kernel functions matching a shell glob (what fentry can attach to)."""
        return self.names_of_kind(FUNC, pattern)

    def names_of_kind(self, kind: int, pattern: str = "*") -> List[str]:
        """Sorted names of the types of one kind (FUNC, TYPEDEF...) that match a shell glob."""
        w, names = self._words, set()
        for i in self._offs:
            if (w[i + 1] >> 24) & 0x1F == kind:
                n = self._string(w[i])
                if fnmatch.fnmatchcase(n, pattern):
                    names.add(n)
        return sorted(names)

    def type_by_name(self, spelling: str) -> Optional[Type]:
        """A type from its C spelling, as tracepoint formats and casts write them.

        'struct sock *' -> Pointer(Struct(sock)); 'unsigned long' -> Int; 'pid_t' -> Typedef;
        'const char *' -> Pointer(Int('char')) (qualifiers and __user are dropped).
        """
        stars = spelling.count("*")
        words = [w for w in spelling.replace("*", " ").split()
                 if w not in ("const", "volatile", "restrict", "__user", "__rcu", "__iomem")]
        t: Optional[Type] = None
        if not words:
            return None
        if words == ["void"]:
            t = VOID
        elif words[0] in ("struct", "union") and len(words) == 2:
            t = self.struct(" ".join(words))
            if t is None:
                t = self._first(words[1], (FWD,))
        elif words[0] == "enum" and len(words) == 2:
            t = self.enum(words[1])
        elif len(words) == 1:
            t = self._first(words[0], (TYPEDEF, INT, FLOAT)) or c_int(words[0])
        else:
            t = c_int(" ".join(words))
        if t is None:
            return None
        for _ in range(stars):
            t = Pointer(t)
        return t

    sizeof = staticmethod(sizeof)
    type_name = staticmethod(type_name)

    def field(self, struct: Union[Struct, str], path: str) -> FieldRef:
        """btf.field('task_struct', 'tgid'), btf.field('sock', '__sk_common.skc_dport')."""
        if isinstance(struct, str):
            s = self.struct(struct)
            if s is None:
                raise BTFError(f"struct {struct.split()[-1]} is not in the kernel's BTF ({self.path})")
            struct = s
        return field(struct, path)


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def main(argv: Optional[List[str]] = None) -> int:
    """python -m kubectl_pytrace.kernel.btf task_struct.tgid sock.__sk_common.skc_dport"""
    import sys
    import time

    t0 = time.perf_counter()
    btf = BTF.load()
    t1 = time.perf_counter()
    for arg in argv if argv is not None else sys.argv[1:]:
        struct_name, _, path = arg.partition(".")
        try:
            if path:
                f = btf.field(struct_name, path)
                bf = f" bitfield {f.bitfield_size} bits at +{f.bit_shift}" if f.is_bitfield else ""
                print(f"{arg}: offset {f.offset} size {sizeof(f.type)} {type_name(f.type)} "
                      f"({short_name(f.type)}){bf}")
            elif btf.func(arg) is not None:
                print(f"{arg}: {type_name(Func(arg, btf.func(arg)))}")  # type: ignore[arg-type]
            else:
                t = btf.type_by_name(arg)
                print(f"{arg}: {type_name(t) + ' size ' + str(sizeof(t)) if t else 'not found'}")
        except BTFError as e:
            print(f"{arg}: {e}", file=sys.stderr)
    t2 = time.perf_counter()
    print(f"load {1e3 * (t1 - t0):.1f} ms, lookups {1e3 * (t2 - t1):.1f} ms, {len(btf)} types",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
