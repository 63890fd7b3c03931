"""C struct, union and enum definitions written in a program, before its probes.

    struct MyStruct { int a; char name[16]; struct task_struct *t; };
    enum color { RED, GREEN = 5 };

read_definitions() lays each struct out as a C compiler for x86-64 does (members aligned to their
size, bitfields packed in their unit, the struct padded to its largest alignment); the type
checker then reads `$s->name` from it as from BTF. An enum's names become constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang.diagnostics import Diagnostics, Span
from kubectl_pytrace.lang.env import Environment, LookupFailed, StructField
from kubectl_pytrace.lang.types import ArrayT, BoolT, EnumT, IntT, PtrT, RecordT, StructT, Type, VoidT

_TOKEN = re.compile(r"\s*(?:(/\*.*?\*/|//[^\n]*)|([A-Za-z_][A-Za-z0-9_]*)|(0[xX][0-9a-fA-F]+|\d+)|(\S))", re.S)
# the C spellings of integer types: (size, signed)
_INTS = {
    "char": (1, True), "signed char": (1, True), "unsigned char": (1, False), "_Bool": (1, False),
    "bool": (1, False), "short": (2, True), "unsigned short": (2, False), "int": (4, True),
    "unsigned": (4, False), "unsigned int": (4, False), "long": (8, True), "unsigned long": (8, False),
    "long long": (8, True), "unsigned long long": (8, False), "float": (4, True), "double": (8, True),
}


class CDefinitionError(ValueError):
    pass


@dataclass
class CStruct:
    """One struct or union of the program: what `.field(name)` and sizeof() read."""

    cname: str  # "struct MyStruct"
    size: int = 0
    align: int = 1
    members: List[Tuple[str, StructField]] = field(default_factory=list)

    def field(self, name: str) -> Optional[StructField]:
        for n, f in self.members:
            if n == name:
                return f
        return None

    def record(self, structs: Dict[str, "CStruct"], env: Environment) -> RecordT:
        """The struct's members at their offsets, to copy and print it whole."""
        members = []
        for name, f in self.members:
            t = f.type
            if isinstance(t, StructT):
                inner = structs.get(t.cname)
                t = inner.record(structs, env) if inner is not None else env.struct_record(t.cname)  # type: ignore[assignment]
            elif isinstance(t, PtrT):
                t = PtrT(VoidT())
            members.append((name, t, f.offset, f.bit_offset, f.bit_size))
        return RecordT(self.cname, self.size, tuple(members))


class _Reader:
    """Reads the definitions' tokens; sizes come from earlier definitions or the kernel's BTF."""

    def __init__(self, text: str, env: Environment, structs: Dict[str, CStruct],
                 enums: Dict[str, Tuple[int, EnumT]]):
        self.toks = [m.group(2) or m.group(3) or m.group(4) for m in _TOKEN.finditer(text) if not m.group(1)]
        self.toks = [t for t in self.toks if t]
        self.i = 0
        self.env, self.structs, self.enums = env, structs, enums

    def peek(self, k: int = 0) -> str:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else ""

    def take(self, expected: Optional[str] = None) -> str:
        tok = self.peek()
        if not tok or (expected is not None and tok != expected):
            raise CDefinitionError(f"expected '{expected}'" + (f", found '{tok}'" if tok else " at the end"))
        self.i += 1
        return tok

    def number(self) -> int:
        tok = self.take()
        try:
            n = int(tok, 0)
        except ValueError:
            raise CDefinitionError(f"expected a number, found '{tok}'") from None
        if n >= 1 << 32:
            raise CDefinitionError(f"{tok} is too large here")
        return n

    # ---- definitions ----------------------------------------------------------------------------
    def definition(self) -> None:
        kind = self.take()
        name = self.take()
        if kind == "enum":
            self.enum_body(name)
        else:
            cname = f"{kind} {name}"
            if cname in self.structs:
                raise CDefinitionError(f"{cname} is defined twice")
            self.structs[cname] = self.struct_body(cname, kind == "union")
        if self.peek() == ";":
            self.take()
        if self.peek():
            raise CDefinitionError(f"unexpected '{self.peek()}' after the definition")

    def enum_body(self, tag: str) -> None:
        self.take("{")
        value = 0
        values: List[Tuple[str, int]] = []
        while self.peek() != "}":
            name = self.take()
            if self.peek() == "=":
                self.take()
                neg = self.peek() == "-" and bool(self.take())
                value = self.number() * (-1 if neg else 1)
            values.append((name, value))
            value += 1
            if self.peek() == ",":
                self.take()
        self.take("}")
        t = EnumT(32, any(v < 0 for _, v in values), f"enum {tag}", tuple((v & 0xFFFFFFFF, n) for n, v in values))
        for name, v in values:
            self.enums[name] = (v, t)

    def struct_body(self, cname: str, union: bool) -> CStruct:
        s = CStruct(cname)
        self.take("{")
        offset = 0  # in bits
        while self.peek() != "}":
            base, base_size, base_align = self.type_spec()
            while True:
                name, t, size, align = self.declarator(base, base_size, base_align)
                width = 0
                if self.peek() == ":":
                    self.take()
                    width = self.number()
                    if not 0 < width <= size * 8:
                        raise CDefinitionError(f"a bitfield of {width} bits in a {size}-byte type")
                if union:
                    offset = 0
                if width:  # a bitfield: in the current unit of its type when it fits
                    unit = size * 8
                    if offset // unit != (offset + width - 1) // unit:
                        offset = (offset + unit - 1) // unit * unit
                    byte = offset // 8
                    s.members.append((name, StructField(byte, t, offset - byte * 8, width)))
                    offset += width
                else:
                    offset = (offset + align * 8 - 1) // (align * 8) * (align * 8)
                    if name:
                        s.members.append((name, StructField(offset // 8, t)))
                    offset += size * 8
                s.size = max(s.size, (offset + 7) // 8)
                s.align = max(s.align, align)
                if self.peek() != ",":
                    break
                self.take()
            self.take(";")
        self.take("}")
        s.size = (s.size + s.align - 1) // s.align * s.align
        return s

    # ---- types ----------------------------------------------------------------------------------
    def type_spec(self) -> Tuple[Type, int, int]:
        """The type before a declarator: (type, size, alignment)."""
        words = []
        while self.peek() in ("const", "volatile", "signed", "unsigned", "short", "long", "int", "char",
                              "_Bool", "bool", "float", "double", "void", "struct", "union", "enum") \
                or (not words and re.match(r"[A-Za-z_]", self.peek())):
            tok = self.take()
            if tok in ("const", "volatile"):
                continue
            if tok in ("struct", "union", "enum"):
                return self.tagged(tok)
            words.append(tok)
            if tok not in ("signed", "unsigned", "short", "long", "int", "char"):
                break
        spelled = " ".join(w for w in words if w != "signed" or len(words) == 1)
        spelled = {"short int": "short", "long int": "long", "unsigned short int": "unsigned short",
                   "unsigned long int": "unsigned long", "long long int": "long long",
                   "signed": "int"}.get(spelled, spelled)
        if spelled == "void":
            return VoidT(), 1, 1
        if spelled in _INTS:
            size, signed = _INTS[spelled]
            return (BoolT() if spelled in ("_Bool", "bool") else IntT(size * 8, signed)), size, size
        if not spelled:
            raise CDefinitionError(f"expected a type, found '{self.peek()}'")
        try:
            td = self.env.typedef(spelled)  # u32, pid_t, size_t...
        except LookupFailed:
            td = None
        if td is None:
            raise CDefinitionError(f"unknown type '{spelled}'")
        if isinstance(td, IntT):
            return td, max(1, td.bits // 8), max(1, td.bits // 8)
        if isinstance(td, PtrT):
            return td, 8, 8
        raise CDefinitionError(f"type '{spelled}' can not be a member here")

    def tagged(self, kind: str) -> Tuple[Type, int, int]:
        if self.peek() == "{":  # an anonymous struct or union inside this one
            inner = self.struct_body(f"{kind} (anonymous in program {len(self.structs)})", kind == "union")
            self.structs[inner.cname] = inner
            return StructT(inner.cname), inner.size, inner.align
        name = self.take()
        if kind == "enum":
            known = [t for _, t in self.enums.values() if t.enum == f"enum {name}"]
            return (known[0] if known else IntT(32, False)), 4, 4
        cname = f"{kind} {name}"
        if cname in self.structs:
            s = self.structs[cname]
            return StructT(cname), s.size, s.align
        return StructT(cname), -1, 8  # only through a pointer, unless BTF knows its size

    def declarator(self, base: Type, size: int, align: int) -> Tuple[str, Type, int, int]:
        t = base
        while self.peek() == "*":
            self.take()
            t, size, align = PtrT(t), 8, 8
        name = ""
        if re.match(r"[A-Za-z_]", self.peek()):
            name = self.take()
        dims = []
        while self.peek() == "[":
            self.take()
            dims.append(self.number())
            self.take("]")
        if size < 0:  # a struct by value that is not defined here: BTF's size
            assert isinstance(t, StructT)
            try:
                known = self.env.struct_size(t.cname)
            except LookupFailed as err:
                raise CDefinitionError(str(err)) from None
            if known is None:
                raise CDefinitionError(f"the size of '{t.cname}' is only known with the kernel's BTF")
            size = known
        for n in reversed(dims):
            t, size = ArrayT(t, n), size * n
        return name, t, size, align


def read_definitions(defs: List[ast.CDefinition], env: Environment, diags: Diagnostics) -> Dict[str, object]:
    """The structs and unions the program defines, by C name; enum names are added as "enum:NAME"
    entries holding (value, enum type), and each enum type as "type:enum NAME"."""
    structs: Dict[str, CStruct] = {}
    enums: Dict[str, Tuple[int, EnumT]] = {}
    for d in defs:
        try:
            _Reader(d.text, env, structs, enums).definition()
        except CDefinitionError as err:
            diags.error(f"in this C definition: {err}", Span(d.span.start, d.span.start + d.text.find("{")))
    out: Dict[str, object] = dict(structs)
    out.update({f"enum:{k}": v for k, v in enums.items()})
    out.update({f"type:{t.enum}": t for _, t in enums.values()})
    return out
