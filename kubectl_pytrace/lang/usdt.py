"""USDT probe arguments, read by the program itself from the probe's note (x86-64).

A SystemTap SDT note describes each argument of a probe site as `[-]SIZE@OPERAND`, in the
assembler's syntax (sys/sdt.h writes the operand the compiler chose):

    8@%rbx            the register (its low SIZE bytes)
    -4@$5             a constant
    -4@112(%rsp)      memory at register + displacement
    8@-144(%rbp)
    4@8(%rax,%rdx,4)  memory at base + index * scale + displacement

A negative SIZE is a signed argument. parse_args() reads the note's text; UsdtArg.c() gives the C
that computes the value from the probe's pt_regs. Reading the arguments here, not with BCC's USDT
support, means a probe guarded by a semaphore needs no process: the kernel sets the semaphore
(uprobe ref_ctr_offset) for every process that maps the binary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from kubectl_pytrace.lang.types import IntT

# x86-64 struct pt_regs, in u64 slots (the index PYTRACE_REG takes)
REGS = {"r15": 0, "r14": 1, "r13": 2, "r12": 3, "bp": 4, "bx": 5, "r11": 6, "r10": 7, "r9": 8, "r8": 9,
        "ax": 10, "cx": 11, "dx": 12, "si": 13, "di": 14, "ip": 16, "sp": 19}
# every spelling of a general-purpose register -> its slot
_ALIASES = {}
for _n in ("ax", "bx", "cx", "dx"):
    _ALIASES.update({f"r{_n}": _n, f"e{_n}": _n, _n: _n, f"{_n[0]}l": _n})
for _n in ("si", "di", "bp", "sp"):
    _ALIASES.update({f"r{_n}": _n, f"e{_n}": _n, _n: _n, f"{_n}l": _n})
for _i in range(8, 16):
    _ALIASES.update({f"r{_i}{s}": f"r{_i}" for s in ("", "d", "w", "b")})
_ALIASES["rip"] = "ip"

_ARG = re.compile(r"^(?P<size>-?\d+)@(?P<op>.+)$")
_MEM = re.compile(r"^(?P<disp>-?(?:0x[0-9a-fA-F]+|\d+))?\((?P<base>%\w+)?(?:,(?P<index>%\w+)(?:,(?P<scale>\d+))?)?\)$")


class UsdtArgError(ValueError):
    pass


@dataclass(frozen=True)
class UsdtArg:
    size: int  # bytes: 1, 2, 4 or 8
    signed: bool
    kind: str  # "reg", "const", "mem"
    reg: Optional[str] = None  # the register (kind "reg"), or the base (kind "mem")
    value: int = 0  # the constant, or the displacement
    index: Optional[str] = None
    scale: int = 1

    @property
    def type(self) -> IntT:
        """The type the program sees: -4@... is int32, 8@... uint64."""
        return IntT(self.size * 8, self.signed)

    @property
    def ctype(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.size * 8}"

    def c(self, ctx: str, tmp: str) -> Tuple[List[str], str]:
        """(statements, expression): the argument as a 64-bit C value, sign-extended as declared."""
        if self.kind == "const":
            return [], f"((s64)({self.ctype})({self.value}LL))"
        if self.kind == "reg":
            return [], f"((s64)({self.ctype})PYTRACE_REG({ctx}, {REGS[self.reg]}))"  # type: ignore[index]
        addr = f"PYTRACE_REG({ctx}, {REGS[self.reg]}) + ({self.value}LL)" if self.reg else f"{self.value}LL"
        if self.index:
            addr += f" + PYTRACE_REG({ctx}, {REGS[self.index]}) * {self.scale}"
        stmts = [f"{self.ctype} {tmp} = 0;", f"bpf_probe_read_user(&{tmp}, {self.size}, (void *)({addr}));"]
        return stmts, f"((s64){tmp})"


def _reg(text: str, spec: str) -> str:
    name = _ALIASES.get(text.lstrip("%"))
    if name is None:
        raise UsdtArgError(f"USDT argument {spec!r}: register {text} is not supported")
    return name


def parse_arg(spec: str) -> UsdtArg:
    m = _ARG.match(spec)
    if not m:
        raise UsdtArgError(f"USDT argument {spec!r} is not SIZE@OPERAND")
    size, op = int(m.group("size")), m.group("op")
    if abs(size) not in (1, 2, 4, 8):
        raise UsdtArgError(f"USDT argument {spec!r}: size {abs(size)} is not 1, 2, 4 or 8")
    signed = size < 0
    size = abs(size)
    if op.startswith("$"):
        try:
            return UsdtArg(size, signed, "const", value=int(op[1:], 0))
        except ValueError:
            raise UsdtArgError(f"USDT argument {spec!r}: the constant is not a number") from None
    if op.startswith("%"):
        return UsdtArg(size, signed, "reg", reg=_reg(op, spec))
    mm = _MEM.match(op)
    if not mm:
        raise UsdtArgError(f"USDT argument {spec!r}: operand {op} is not supported (a symbol's address?)")
    base = mm.group("base")
    if base and _reg(base, spec) == "ip":
        raise UsdtArgError(f"USDT argument {spec!r}: an address relative to %rip is not supported")
    return UsdtArg(size, signed, "mem", reg=_reg(base, spec) if base else None,
                   value=int(mm.group("disp") or "0", 0),
                   index=_reg(mm.group("index"), spec) if mm.group("index") else None,
                   scale=int(mm.group("scale") or "1"))


def parse_args(text: str) -> List[UsdtArg]:
    """Every argument of a note's argument string ("-4@%edi 8@-24(%rbp)")."""
    return [parse_arg(a) for a in text.split()]
