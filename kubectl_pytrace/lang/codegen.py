"""C code generation for BCC.

Each ProbeFunction becomes one C function. Expressions compile to C expressions; whatever needs
statements first (map lookups, string reads, helper calls with out-parameters) is emitted just
before the statement that uses it. Integers are 64-bit in C (s64/u64 by signedness); strings,
tuples and stacks live in buffers in their storage layout (layout.py).

User text never reaches the C source: string literals become byte stores, maps and variables get
generated names (map_3, v_name with the name validated by the grammar), probe names and printf
formats stay in Python (events carry only numbers).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from kubectl_pytrace.lang import abi, ast
from kubectl_pytrace.lang import printf as printf_format
from kubectl_pytrace.lang.env import GO_ARG_REGS, GO_REGABI, GO_STACKABI, StructField, TracepointField
from kubectl_pytrace.lang.layout import (
    C_PRELUDE_TYPES, Record, agg_value_ctype, int_ctype, pad8, scalar_ctype, sizeof,
)
from kubectl_pytrace.lang.probes import ProbeSpec, parse_attach_point
from kubectl_pytrace.lang.program import (
    CONFIG_CPID, CONFIG_MAP, CONFIG_SLOTS, CONFIG_START_NS, EVENTS_MAP, FUNCS_MAP, LOST_MAP, MAP_MAX_ENTRIES,
    STACK_MAP_ENTRIES, STACKS_MAP, AttachSpec, CodegenOptions, CProgram, EventSpec, MapSpec,
)
from kubectl_pytrace.lang import scope as scope_c
from kubectl_pytrace.lang.scope import ScopeFilter
from kubectl_pytrace.lang.semantic import Analysis, MapInfo, ProbeFunction, split_params
from kubectl_pytrace.lang.types import (
    INT64, WORD_TYPES, AggT, ArrayT, RecordT, BufT, InetT, IntT, KsymT, ProbeT, PtrT, StackT, StrT, StructT, TupleT, Type, UsymT,
    VoidT, is_char_array, storage_type,
)

# x86-64 struct pt_regs, in u64 slots: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs
# flags sp ss. Function arguments are passed in di si dx cx r8 r9; the return value is in ax.
REG_PARAMS = (14, 13, 12, 11, 9, 8)
REG_RC = 10
REG_SP = 19
REG_IP = 16
REG_CS = 17
FUNC_MARKER = 0x7079666200000000  # a callback's address (bcc_compile.py links it)
MAP_MARKER = 0x70796D6100000000  # a map's fd, where BCC's method syntax does not apply
# probes that fire for no task of the target: BEGIN/END, and interval's timer (it runs on whatever
# task a CPU happens to run); every other probe is scoped to the target containers (scope.py)
UNSCOPED = ("BEGIN", "END", "interval")
JOIN_MAX_ARGS = 16  # bpftrace 0.17's join(): 16 strings of at most 1023 bytes (measured)
JOIN_ARG_SIZE = 1024

def ctype(t: Type, tuples: "TupleTypes") -> str:
    """C type of a stored value (strings need decl())."""
    if isinstance(t, TupleT):
        return tuples.name(t)
    if isinstance(t, BufT):
        return tuples.buffer(t)
    if isinstance(t, RecordT):
        return tuples.raw(t.size)
    return scalar_ctype(t)


def decl(t: Type, name: str, tuples: "TupleTypes") -> str:
    if isinstance(t, StrT):
        return f"char {name}[{pad8(t.size)}]"
    return f"{ctype(t, tuples)} {name}"


def zero_init(t: Type) -> str:
    if isinstance(t, WORD_TYPES):
        return " = 0;"
    return " = {};"


class TupleTypes:
    """Gives each distinct tuple layout one C struct (fields e0, e1, ...), and each buffer size one
    (the length, then the bytes)."""

    def __init__(self):
        self.names: Dict[Type, str] = {}
        self.defs: List[str] = []

    def buffer(self, t: BufT) -> str:
        if t not in self.names:
            self.names[t] = f"struct pytrace_buf_{t.size}"
            self.defs.append(f"struct pytrace_buf_{t.size} {{ u64 len; u8 data[{pad8(t.size)}]; }};")
        return self.names[t]

    def raw(self, size: int) -> str:
        """A C struct's bytes (RecordT)."""
        key = ("raw", size)
        if key not in self.names:
            self.names[key] = f"struct pytrace_raw_{size}"  # type: ignore[index]
            self.defs.append(f"struct pytrace_raw_{size} {{ u8 b[{pad8(size)}]; }};")
        return self.names[key]  # type: ignore[index]

    def name(self, t: TupleT) -> str:
        if t not in self.names:
            for e in t.elems:
                if isinstance(e, TupleT):
                    self.name(e)
            n = f"struct tup_{len(self.names)}"
            self.names[t] = n
            body = " ".join(decl(e, f"e{i}", self) + ";" for i, e in enumerate(t.elems))
            self.defs.append(f"{n} {{ {body} }};")
        return self.names[t]


# ---- value references returned by expression compilation -------------------------------------

@dataclass
class Buf:
    """A value held in memory: `ref` is a C lvalue of its storage layout (an array or a struct)."""

    ref: str
    type: Type


@dataclass
class NameTable:
    """A table of names (errno messages, system calls, signals) the program carries in a map."""

    cname: str
    entries: Dict[int, str]
    unknown: str

    @property
    def size(self) -> int:
        return max(self.entries) + 1


@dataclass
class Lit:
    """A string literal (never copied into C text: stored byte by byte where needed)."""

    data: bytes


Value = object  # str (a C integer expression) | Buf | Lit


class FunctionGen:
    """Generates one C function."""

    def __init__(self, gen: "Generator", fn: ProbeFunction, name: str, ctx_type: str):
        self.gen, self.fn, self.name, self.ctx_type = gen, fn, name, ctx_type
        # fentry/fexit programs (kfunc:, or kprobe: on kernels without kprobes) get the function's
        # arguments, then its return value, in a u64 array instead of registers
        self.fentry = fn.specs[0].is_fentry(gen.options.kprobe_mode)
        self.lines: List[str] = []
        self.indent = 1
        self.ntmp = 0
        self.scoped = False  # pytrace_src is set (a probe scoped to containers)
        self.vars_struct: Optional[str] = None  # "V": variables live in a struct (functions with loops)
        self.vars_type = ""
        self.in_callback = False
        self.loop_kinds: List[str] = []  # innermost last: "while" (a C loop) or "callback"

    # ---- emission helpers ---------------------------------------------------------------------
    def emit(self, line: str):
        self.lines.append("    " * self.indent + line)

    def tmp(self, prefix: str = "t") -> str:
        self.ntmp += 1
        return f"{prefix}{self.ntmp}"

    @contextlib.contextmanager
    def nested(self, header: str, footer: str = "}") -> Iterator[None]:
        self.emit(header)
        self.indent += 1
        yield
        self.indent -= 1
        self.emit(footer)

    @contextlib.contextmanager
    def capture(self) -> Iterator[List[str]]:
        saved, self.lines = self.lines, []
        out: List[str] = []
        try:
            yield out
        finally:
            out.extend(self.lines)
            self.lines = saved

    def type(self, e: ast.Node) -> Type:
        return self.fn.types[id(e)]

    def declare(self, t: Type, prefix: str = "t") -> str:
        name = self.tmp(prefix)
        self.emit(decl(t, name, self.gen.tuples) + zero_init(t))
        return name

    # ---- function ------------------------------------------------------------------------------
    def generate(self) -> str:
        fn = self.fn
        if any(isinstance(n, ast.For) for n in fn.probe.walk()):
            # a loop body runs in a callback of its own: the variables go into a struct that the
            # callbacks reach through a pointer
            struct = f"struct pytrace_vars_{fn.index}"
            members = [decl(slot.type, slot.cname, self.gen.tuples) + ";" for slot in fn.slots.values()
                       if slot.type is not None]
            self.gen.var_structs.append(f"{struct} {{ {' '.join(members) or 'u64 unused;'} }};")
            self.emit(f"{struct} __vars = {{}};")
            self.emit(f"{struct} *V = &__vars;")
            self.vars_struct = "V"
            self.vars_type = struct
            for slot in fn.slots.values():
                if slot.predefined is not None and slot.type is not None:
                    self.emit(f"V->{slot.cname} = {slot.predefined}LL;")
        else:
            for slot in fn.slots.values():
                t = slot.type
                if t is None:
                    continue  # declared (let $x;) and never given a value: nothing reads it
                if slot.predefined is not None:
                    self.emit(f"{decl(t, slot.cname, self.gen.tuples)} = {slot.predefined}LL;")
                else:
                    self.emit(decl(t, slot.cname, self.gen.tuples) + zero_init(t))
        if fn.provider not in UNSCOPED:
            self.task_filter()
        if fn.provider == "iter":  # the iterator's last call, after the last object, has none
            self.emit("if (!((u64 *)ctx)[1]) return 0;")
        if fn.probe.predicate is not None:
            cond = self.int_value(fn.probe.predicate)
            self.emit(f"if (!({cond})) return 0;")
        self.block(fn.probe.block)
        self.emit("return 0;")
        body = "\n".join(self.lines)
        if fn.provider in ("BEGIN", "END"):
            # inlined into the one BEGIN (END) program, which runs every such probe in order
            return f"static __always_inline int {self.name}({self.ctx_type}ctx)\n{{\n{body}\n}}\n"
        return f"int {self.name}({self.ctx_type}ctx)\n{{\n{body}\n}}\n"

    # ---- for loops: callbacks of bpf_loop / bpf_for_each_map_elem ---------------------------------
    def stmt_For(self, s: ast.For):
        """The body becomes a callback function (bcc_compile.py links it): it reaches the probe's
        variables through V and its context through ctx, both in the loop's own struct L, and
        ends the loop (break: return 1), skips (continue: return 0) or asks the caller to return
        (L->ret)."""
        k = len(self.gen.callbacks)
        cb = f"pytrace_cb_{k}"
        lstruct = f"struct pytrace_loop_{k}"
        self.gen.callbacks.append(cb)
        slot = self.slot(s.var)
        info = self.fn.loops.get(id(s))
        self.gen.loop_structs.append(f"{lstruct} {{ {self.vars_type} *V; void *ctx; s64 start; u64 ret; }};")
        with self.nested("{"):
            start = "0"
            if info is None:
                lo, hi = self.int_value(s.start), self.int_value(s.end)  # type: ignore[arg-type]
                start, n = self.tmp("lo"), self.tmp("n")
                self.emit(f"s64 {start} = (s64)({lo});")
                self.emit(f"s64 {n} = (s64)({hi}) - {start};")
            loop = self.tmp("loop")
            self.emit(f"{lstruct} {loop} = {{ .V = V, .ctx = (void *)ctx, .start = {start} }};")
            if info is None:
                self.emit(f"if ({n} > 0) bpf_loop({n}, (void *){FUNC_MARKER | k:#x}ULL, &{loop}, 0);")
            else:
                ref = self.gen.map_ref(info)
                self.emit(f"bpf_for_each_map_elem((void *){MAP_MARKER | ref:#x}ULL, (void *){FUNC_MARKER | k:#x}ULL, "
                          f"&{loop}, 0);")
            self.emit(f"if ({loop}.ret) {self.return_stmt()}")
        saved = (self.lines, self.indent, self.in_callback)
        self.lines, self.indent, self.in_callback = [], 1, True
        self.loop_kinds.append("callback")
        try:
            # the helper's arguments, still in r2..r4 (this function has one parameter: BCC rewrites
            # those with more): one asm stores them on the stack before it loads its outputs, so
            # whichever registers the outputs get, no argument is overwritten before it is read
            # (the parameter itself is never used: clang would copy it to a free register, maybe r2,
            # before the asm)
            if info is None:
                self.emit("u64 __i, __l;")
                self.emit('asm volatile("*(u64 *)(r10 - 8) = r1\\n\\t*(u64 *)(r10 - 16) = r2\\n\\t'
                          '%0 = *(u64 *)(r10 - 8)\\n\\t%1 = *(u64 *)(r10 - 16)" : "=r"(__i), "=r"(__l) :: "memory");')
            else:
                self.emit("u64 __key, __value, __l;")
                self.emit('asm volatile("*(u64 *)(r10 - 8) = r2\\n\\t*(u64 *)(r10 - 16) = r3\\n\\t'
                          '*(u64 *)(r10 - 24) = r4\\n\\t%0 = *(u64 *)(r10 - 8)\\n\\t%1 = *(u64 *)(r10 - 16)\\n\\t'
                          '%2 = *(u64 *)(r10 - 24)" : "=r"(__key), "=r"(__value), "=r"(__l) :: "memory");')
            self.emit(f"{lstruct} *L = ({lstruct} *)__l;")
            self.emit(f"{self.vars_type} *V = L->V;")
            self.emit(f"{self.ctx_type}ctx = ({self.ctx_type})L->ctx;")
            var = self.var_ref(slot)
            if info is None:
                self.emit(f"{var} = L->start + (s64)__i;")
            else:
                spec = self.gen.maps[info.name]
                ksize = spec.key.size if spec.key else 8
                self.emit(f"__builtin_memcpy(&{var}.e0, (void *)__key, {ksize});")
                self.emit(f"__builtin_memcpy(&{var}.e1, (void *)__value, sizeof({var}.e1));")
            self.block(s.body)
            self.emit("return 0;")
            body = "\n".join(self.lines)
        finally:
            self.loop_kinds.pop()
            self.lines, self.indent, self.in_callback = saved
        self.gen.callback_defs.append(f"int {cb}(void *arg)\n{{\n{body}\n}}\n")

    def return_stmt(self) -> str:
        """What `return` is here: in a loop's callback, end the loop and tell its caller."""
        if self.in_callback:
            return "{ L->ret = 1; return 1; }"
        return "return 0;"

    def task_filter(self):
        """Leave unless the task is in a target container; pytrace_src says which (scope.py)."""
        if self.gen.options.scope is not None:
            self.emit("u64 pytrace_src = pytrace_in_scope();")
            self.emit("if (!pytrace_src) return 0;")
            self.scoped = True

    def event_id(self, ev: EventSpec) -> str:
        """An event's id, with the target it came from in its upper half (scope.py)."""
        return f"{ev.id} | (pytrace_src << 32)" if self.scoped else str(ev.id)

    # ---- statements ---------------------------------------------------------------------------
    def block(self, b: ast.Block):
        for s in b.stmts:
            getattr(self, "stmt_" + type(s).__name__)(s)

    def stmt_ExprStmt(self, s: ast.ExprStmt):
        with self.nested("{"):
            v = self.value(s.expr)
            if isinstance(v, str) and v != "0":  # delete(...) has its effect in the expression
                self.emit(f"(void)({v});")

    def slot(self, v: ast.Var):
        return self.fn.slots[self.fn.var_refs[id(v)]]

    def var_ref(self, slot) -> str:
        """The C lvalue of a variable (in a loop body's callback: through the variables' struct)."""
        return slot.cname if self.vars_struct is None else f"{self.vars_struct}->{slot.cname}"

    def stmt_AssignVar(self, s: ast.AssignVar):
        with self.nested("{"):
            slot = self.slot(s.target)
            self.store(self.var_ref(slot), slot.type, s.value)

    def stmt_Let(self, s: ast.Let):
        if s.value is None:
            return  # every variable starts zeroed
        with self.nested("{"):
            slot = self.slot(s.target)
            self.store(self.var_ref(slot), slot.type, s.value)

    def stmt_Discard(self, s: ast.Discard):
        with self.nested("{"):
            v = self.value(s.expr)
            if isinstance(v, str):
                self.emit(f"(void)({v});")

    def stmt_BlockStmt(self, s: ast.BlockStmt):
        with self.nested("{"):
            self.block(s.body)

    def expr_BlockExpr(self, e: ast.BlockExpr) -> Value:
        t = self.type(e)
        if isinstance(t, VoidT):
            with self.nested("{"):
                for st in e.stmts:
                    getattr(self, "stmt_" + type(st).__name__)(st)
                if e.value is not None:
                    self.value(e.value)
            return "0"
        out = self.declare(t, "blk")
        with self.nested("{"):
            for st in e.stmts:
                getattr(self, "stmt_" + type(st).__name__)(st)
            self.store(out, t, e.value)  # type: ignore[arg-type]
        if isinstance(t, WORD_TYPES):
            return out
        return Buf(out, t)

    def stmt_AssignMap(self, s: ast.AssignMap):
        info = self.gen.analysis.maps[s.target.name]
        with self.nested("{"):
            if isinstance(info.value, AggT):
                self.aggregate(s.target, info, s.value)  # type: ignore[arg-type]
                return
            key = self.map_key(s.target, info)
            val = self.declare(info.value, "val")  # type: ignore[arg-type]
            self.store(val, info.value, s.value)  # type: ignore[arg-type]
            self.emit(f"{self.gen.map_cname(info)}.update(&{key}, &{val});")

    def stmt_If(self, s: ast.If):
        with self.nested("{"):
            cond = self.int_value(s.cond)
            with self.nested(f"if ({cond}) {{"):
                self.block(s.then)
            if s.orelse is not None:
                with self.nested("else {"):
                    self.block(s.orelse)

    def stmt_Unroll(self, s: ast.Unroll):
        n = s.count.value if isinstance(s.count, ast.Integer) else 1
        for _ in range(n):
            with self.nested("{"):
                self.block(s.body)

    def stmt_While(self, s: ast.While):
        self.loop_kinds.append("while")
        try:
            with self.nested("while (1) {"):
                cond = self.int_value(s.cond)
                self.emit(f"if (!({cond})) break;")
                self.block(s.body)
        finally:
            self.loop_kinds.pop()

    def stmt_Return(self, s: ast.Return):
        self.emit(self.return_stmt())

    def stmt_Break(self, s: ast.Break):
        self.emit("break;" if self.loop_kinds[-1] == "while" else "return 1;")

    def stmt_Continue(self, s: ast.Continue):
        self.emit("continue;" if self.loop_kinds[-1] == "while" else "return 0;")

    # ---- storing values -----------------------------------------------------------------------
    def store(self, dest: str, dtype: Type, e: ast.Expr):
        """Evaluates e and stores it into the lvalue dest, whose storage type is dtype."""
        if isinstance(dtype, StrT):
            self.store_string(dest, dtype, e)
            return
        if isinstance(dtype, TupleT) and isinstance(e, ast.Tuple):
            for i, (elem, et) in enumerate(zip(e.elems, dtype.elems)):
                self.store(f"{dest}.e{i}", et, elem)
            return
        v = self.value(e)
        if isinstance(dtype, RecordT) and isinstance(v, str):  # a struct in memory: copy its bytes
            space = self.fn.records[id(e)][1] if id(e) in self.fn.records else "kernel"
            self.emit(f"bpf_probe_read_{space}(&{dest}, {dtype.size}, (void *)({v}));")
            return
        self.store_value(dest, dtype, v)

    def store_value(self, dest: str, dtype: Type, v: Value):
        if isinstance(dtype, IntT) and dtype.bits < 64:  # a variable declared uint8, ...
            self.emit(f"{dest} = ({ctype(dtype, self.gen.tuples)})({int_ctype(dtype)})({v});")
        elif isinstance(dtype, WORD_TYPES):
            self.emit(f"{dest} = ({ctype(dtype, self.gen.tuples)})({v});")
        elif isinstance(dtype, StrT):
            self.copy_string(dest, dtype.size, v)
        elif isinstance(dtype, TupleT):
            assert isinstance(v, Buf) and isinstance(v.type, TupleT)
            for i, (dt, st) in enumerate(zip(dtype.elems, v.type.elems)):
                inner: Value = f"{v.ref}.e{i}" if not isinstance(st, (StrT, TupleT, StackT, UsymT, InetT, BufT, RecordT)) \
                    else Buf(f"{v.ref}.e{i}", st)
                self.store_value(f"{dest}.e{i}", dt, inner)
        else:  # stacks, usym, inet: same layout
            assert isinstance(v, Buf)
            self.emit(f"__builtin_memcpy(&{dest}, &{v.ref}, sizeof({dest}));")

    def store_string(self, dest: str, dtype: StrT, e: ast.Expr):
        # Read straight into the destination where we can (no stack copy).
        if isinstance(e, ast.Builtin) and e.name == "comm":
            self.emit(f"bpf_get_current_comm(&{dest}, {min(16, pad8(dtype.size))});")
            return
        if isinstance(e, ast.Call) and e.name == "str" and not isinstance(self.type(e.args[0]), StrT) \
                and not is_char_array(self.type(e.args[0])):
            self.read_str_into(dest, min(dtype.size, self.type(e).size), e)  # type: ignore[attr-defined]
            return
        self.copy_string(dest, dtype.size, self.value(e))

    def copy_string(self, dest: str, size: int, v: Value):
        if isinstance(v, Lit):
            data = v.data[: size - 1]
            for i, b in enumerate(data):
                self.emit(f"{dest}[{i}] = {b};")
            return  # the rest of dest is already zero (every buffer starts zeroed)
        assert isinstance(v, Buf)
        n = min(pad8(size), sizeof(v.type) if isinstance(v.type, StrT) else v.type.length)  # type: ignore[attr-defined]
        self.emit(f"__builtin_memcpy(&{dest}, &{v.ref}, {n});")
        if size < sizeof(v.type) if isinstance(v.type, StrT) else False:
            self.emit(f"{dest}[{size - 1}] = 0;")

    def read_str_into(self, dest: str, size: int, c: ast.Call):
        ptr = self.int_value(c.args[0])
        space = self.space_of(self.type(c.args[0]))
        if len(c.args) == 2 and not isinstance(c.args[1], ast.Integer):
            n = self.int_value(c.args[1])
            ln = self.tmp("len")
            self.emit(f"u64 {ln} = ({n});")  # bytes with the NUL, as bpftrace 0.27
            self.emit(f"if ({ln} > {size}) {ln} = {size};")
            self.emit(f"if ({ln}) bpf_probe_read_{space}_str(&{dest}, {ln} & {pad8(size) * 2 - 1}, (void *)({ptr}));")
            return
        self.emit(f"bpf_probe_read_{space}_str(&{dest}, {size}, (void *)({ptr}));")

    def space_of(self, t: Type) -> str:
        if isinstance(t, PtrT):
            return t.space
        return "user" if self.fn.user_space else "kernel"

    # ---- maps ---------------------------------------------------------------------------------
    def map_key(self, m: ast.Map, info: MapInfo, bucket: Optional[str] = None) -> str:
        spec = self.gen.maps[info.name]
        key = self.tmp("key")
        if info.key is None and bucket is None:
            self.emit(f"u64 {key} = 0;")
            return key
        self.emit(f"struct {spec.cname}_key {key} = {{}};")
        if info.key is not None:
            kts = info.key.elems
            if len(m.keys) == 1 and len(kts) != 1 or (len(m.keys) == 1 and isinstance(self.type(m.keys[0]), TupleT)
                                                       and not isinstance(kts[0], TupleT)):
                # one tuple for several keys (@m[$key] with $key = (a, b))
                v = self.value(m.keys[0])
                assert isinstance(v, Buf) and isinstance(v.type, TupleT)
                for i, (kt, et) in enumerate(zip(kts, v.type.elems)):
                    inner: Value = f"{v.ref}.e{i}" if isinstance(et, WORD_TYPES) else Buf(f"{v.ref}.e{i}", et)
                    self.store_value(f"{key}.k{i}", kt, inner)
            else:
                for i, (k, kt) in enumerate(zip(m.keys, kts)):
                    self.store(f"{key}.k{i}", kt, k)
        if bucket is not None:
            self.emit(f"{key}.bucket = {bucket};")
        return key

    def aggregate(self, m: ast.Map, info: MapInfo, call: ast.Call):
        agg: AggT = info.value  # type: ignore[assignment]
        cmap = self.gen.map_cname(info)
        v = None
        if call.args:
            v = self.tmp("v")
            self.emit(f"{'s64' if agg.signed else 'u64'} {v} = {self.int_value(call.args[0])};")
        bucket = None
        if agg.kind == "hist":
            bucket = self.tmp("b")
            self.emit(f"u64 {bucket} = pytrace_log2_bucket({v}, {agg.bits});")
        elif agg.kind == "lhist":
            lo, hi, step = agg.lhist  # type: ignore[misc]
            bucket = self.tmp("b")
            nb = (hi - lo) // step
            self.emit(f"u64 {bucket} = ({v} < {lo}) ? 0 : ({v} >= {hi}) ? {nb + 1} : "
                      f"1 + (u64)({v} - {lo}) / {step};")
        key = self.map_key(m, info, bucket)
        if agg.kind in ("min", "max"):
            self.min_max(cmap, key, agg, v)  # type: ignore[arg-type]
            return
        zero = self.tmp("zero")
        ctype_ = agg_value_ctype(agg)
        self.emit(f"{ctype_} {zero} = {'0' if ctype_ in ('u64', 's64') else '{}'};")
        p = self.tmp("p")
        self.emit(f"{agg_value_ctype(agg)} *{p} = {cmap}.lookup_or_try_init(&{key}, &{zero});")
        with self.nested(f"if ({p}) {{"):
            if agg.kind in ("count", "hist", "lhist"):
                self.emit(f"*{p} += 1;")
            elif agg.kind == "sum":
                self.emit(f"*{p} += {v};")
            else:  # avg, stats
                self.emit(f"{p}->total += {v};")
                self.emit(f"{p}->count += 1;")

    def min_max(self, cmap: str, key: str, agg: AggT, v: str):
        """min()/max() as bpftrace 0.27: each CPU's slot holds a value and whether it is set;
        user space takes the min/max of the set slots."""
        p, new = self.tmp("p"), self.tmp("new")
        c = "s64" if agg.signed else "u64"
        op = "<" if agg.kind == "min" else ">"
        self.emit(f"struct pytrace_minmax *{p} = {cmap}.lookup(&{key});")
        with self.nested(f"if (!{p}) {{"):
            self.emit(f"struct pytrace_minmax {new} = {{ .value = (s64){v}, .set = 1 }};")
            self.emit(f"{cmap}.update(&{key}, &{new});")
        with self.nested(f"else if (!{p}->set || ({c}){v} {op} ({c}){p}->value) {{"):
            self.emit(f"{p}->value = (s64){v};")
            self.emit(f"{p}->set = 1;")

    def map_read(self, m: ast.Map) -> Value:
        info = self.gen.analysis.maps[m.name]
        key = self.map_key(m, info)
        p = self.tmp("p")
        t: Type = info.value  # type: ignore[assignment]
        if isinstance(t, AggT):
            return self.aggregation_read(m, info, key)
        self.emit(f"{self.ctype_ptr(t)} *{p} = {self.gen.map_cname(info)}.lookup(&{key});")
        if isinstance(t, WORD_TYPES):
            return f"({p} ? *{p} : 0)"
        out = self.declare(t, "mv")
        self.emit(f"if ({p}) __builtin_memcpy(&{out}, {p}, sizeof({out}));")
        return Buf(out, t)

    def aggregation_read(self, m: ast.Map, info: MapInfo, key: str) -> Value:
        """count(), sum(), avg(), min(), max(): every CPU's slot combined (bpf_map_lookup_percpu_elem)."""
        agg: AggT = info.value  # type: ignore[assignment]
        ref = self.gen.map_ref(info)
        vt = agg_value_ctype(agg)
        acc, n, cpu, p = self.tmp("acc"), self.tmp("n"), self.tmp("cpu"), self.tmp("p")
        self.emit(f"s64 {acc} = 0;")
        self.emit(f"u64 {n} = 0;")
        with self.nested(f"for (u32 {cpu} = 0; {cpu} < {self.fn.constants[id(m)]}; {cpu}++) {{"):
            self.emit(f"{vt} *{p} = pytrace_lookup_percpu((void *){MAP_MARKER | ref:#x}ULL, &{key}, {cpu});")
            self.emit(f"if (!{p}) break;")
            if agg.kind in ("count", "sum"):
                self.emit(f"{acc} += (s64)*{p};")
            elif agg.kind == "avg":
                self.emit(f"{acc} += {p}->total;")
                self.emit(f"{n} += {p}->count;")
            else:
                better = "<" if agg.kind == "min" else ">"
                self.emit(f"if ({p}->set && (!{n} || {p}->value {better} {acc})) {{ {acc} = {p}->value; {n} = 1; }}")
        if agg.kind == "avg":
            return f"pytrace_sdiv({acc}, (s64){n})"
        return acc

    def ctype_ptr(self, t: Type) -> str:
        if isinstance(t, StrT):
            return "char"
        return ctype(t, self.gen.tuples)

    # ---- expressions --------------------------------------------------------------------------
    def value(self, e: ast.Expr) -> Value:
        return getattr(self, "expr_" + type(e).__name__)(e)

    def int_value(self, e: ast.Expr) -> str:
        v = self.value(e)
        assert isinstance(v, str), f"not an integer expression: {e}"
        return v

    def as_c(self, v: str, t: Type) -> str:
        return f"(({'s64' if getattr(t, 'signed', False) else 'u64'})({v}))"

    def expr_Integer(self, e: ast.Integer) -> Value:
        if e.value >= 1 << 63:
            return f"((u64){e.value}ULL)"
        return f"((s64){e.value}LL)"

    def expr_SizeOf(self, e: ast.SizeOf) -> Value:
        return self.constant(self.fn.constants[id(e)])

    expr_OffsetOf = expr_SizeOf

    def expr_Bool(self, e: ast.Bool) -> Value:
        return "((u64)1)" if e.value else "((u64)0)"

    def expr_String(self, e: ast.String) -> Value:
        return Lit(e.value)

    def expr_Identifier(self, e: ast.Identifier) -> Value:
        return self.constant(self.fn.constants[id(e)])

    @staticmethod
    def constant(value: int) -> str:
        if value >= 1 << 63:
            return f"((u64){value}ULL)"
        if value == -(1 << 63):
            return "((s64)(-9223372036854775807LL - 1))"
        return f"((s64){value}LL)"

    def expr_Positional(self, e: ast.Positional) -> Value:
        params = self.gen.params
        if e.count:
            return f"((s64){len(params)})"
        text = params[e.index - 1] if e.index <= len(params) else ""
        t = self.type(e)
        if isinstance(t, IntT):
            return f"((s64){int(text, 0) % (1 << 64)}ULL)"  # the 64-bit pattern: -1 is 18446744073709551615ULL
        return Lit(text.encode())

    def expr_Builtin(self, e: ast.Builtin) -> Value:
        name = e.name
        if name in ("pid", "tid") and self.gen.options.ns_pids and self.scoped:
            # as seen in the target's pid namespace (its dev/ino are in the scope config)
            ns, cfg, zero = self.tmp("ns"), self.tmp("cfg"), self.tmp("zero")
            self.emit(f"struct bpf_pidns_info {ns} = {{}};")
            self.emit(f"int {zero} = pytrace_src - 1;  /* the target the task is in */")
            self.emit(f"struct pytrace_scope_cfg *{cfg} = {scope_c.CFG_MAP}.lookup(&{zero});")
            self.emit(f"if ({cfg}) bpf_get_ns_current_pid_tgid({cfg}->pidns_dev, {cfg}->pidns_ino, &{ns}, "
                      f"sizeof({ns}));")
            return f"((u64){ns}.{'tgid' if name == 'pid' else 'pid'})"
        if name in ("pid", "tid") and self.gen.options.pid_view is not None:
            return f"((u64){self.viewed_pid(name)})"
        simple = {
            "pid": "(bpf_get_current_pid_tgid() >> 32)",
            "tid": "(bpf_get_current_pid_tgid() & 0xffffffff)",
            "uid": "(bpf_get_current_uid_gid() & 0xffffffff)",
            "username": "(bpf_get_current_uid_gid() & 0xffffffff)",
            "gid": "(bpf_get_current_uid_gid() >> 32)",
            "cpu": "((u64)bpf_get_smp_processor_id())",
            "nsecs": "bpf_ktime_get_boot_ns()",  # bpftrace 0.27: the boot clock (0.17: monotonic)
            "jiffies": "bpf_jiffies64()",
            "numaid": "((u64)bpf_get_numa_node_id())",
            "elapsed": f"(bpf_ktime_get_ns() - pytrace_config_get({CONFIG_START_NS}))",  # monotonic: the start is
            "cgroup": "bpf_get_current_cgroup_id()",
            "rand": "((u64)bpf_get_prandom_u32())",
            "cpid": f"pytrace_config_get({CONFIG_CPID})",
            "curtask": "((u64)bpf_get_current_task())",
        }
        if name in simple:
            return f"((u64){simple[name]})"
        if name == "comm":
            buf = self.declare(StrT(16), "comm")
            self.emit(f"bpf_get_current_comm(&{buf}, sizeof({buf}));")
            return Buf(buf, StrT(16))
        if name == "probe":
            if self.fn.cookie:  # the tracer gives each attachment its probe id as cookie
                return "((u64)bpf_get_attach_cookie(ctx))"
            return f"((u64){self.gen.probe_id(self.fn.specs[0])})"
        if name == "func":
            if isinstance(self.type(e), KsymT):
                if id(e) in self.fn.constants:
                    return self.constant(self.fn.constants[id(e)])
                return "((u64)bpf_get_func_ip(ctx))"
            if self.fn.cookie:
                return self.func_by_cookie(self.type(e))
            return Lit(self.fn.specs[0].func.encode())
        if name == "ncpus":
            return self.constant(self.fn.constants[id(e)])
        if name == "usermode":
            return f"((u64)((PYTRACE_REG(ctx, {REG_CS}) & 3) == 3))"
        if name in ("ppid", "pcomm"):
            parent, member = self.fn.fields[id(e)]
            task = self.tmp("task")
            self.emit(f"u64 {task} = 0;")
            self.emit(f"bpf_probe_read_kernel(&{task}, 8, (void *)((u64)bpf_get_current_task() + {parent.offset}));")
            return self.read_memory(f"({task} + {member.offset})", member.type, "kernel")
        if name in ("kstack", "ustack"):
            return self.stack(StackT(name == "kstack"))
        if name == "args":
            return "((u64)ctx)"
        if name == "retval":
            if self.fentry:
                n = len(self.fn.kfunc_args or [])
                return self.as_c(f"((u64 *)ctx)[{n}]", self.type(e))
            return f"PYTRACE_REG(ctx, {REG_RC})"
        if name.startswith("sarg"):
            return self.stack_arg(int(name[4:]))
        if name == "ctx":
            return "((u64)ctx)"
        if name.startswith("arg") and self.fn.provider == "rawtracepoint":
            return f"((u64 *)ctx)[{int(name[3:])}]"
        if name.startswith("arg"):
            n = int(name[3:])
            if self.fn.provider == "usdt":
                return self.usdt_arg(n)
            if self.fentry:
                return f"(((u64 *)ctx)[{n}])"
            if self.fn.convention == GO_REGABI:
                return f"PYTRACE_REG(ctx, {GO_ARG_REGS[n]})"
            if self.fn.convention == GO_STACKABI:  # arg n at sp + 8 * (n + 1), above the return address
                return self.stack_arg(n)
            return f"PYTRACE_REG(ctx, {REG_PARAMS[n]})"
        raise AssertionError(name)

    def func_by_cookie(self, t: StrT) -> Value:
        """`func` in a function that serves several matches: their names are in FUNCS_MAP by probe
        id (the tracer writes them), the attachment's cookie."""
        self.gen.func_name_size = max(self.gen.func_name_size, pad8(t.size))
        buf, key, name = self.declare(t, "func"), self.tmp("key"), self.tmp("name")
        self.emit(f"u32 {key} = bpf_get_attach_cookie(ctx);")
        self.emit(f"char *{name} = (char *){FUNCS_MAP}.lookup(&{key});")
        self.emit(f"if ({name}) __builtin_memcpy({buf}, {name}, {pad8(t.size)});")
        return Buf(buf, t)

    def stack_arg(self, n: int) -> str:
        """The n-th 8-byte slot above the return address (sargN; arguments of Go before 1.17)."""
        out = self.tmp("sarg")
        self.emit(f"u64 {out} = 0;")
        space = "user" if self.fn.user_space else "kernel"
        self.emit(f"bpf_probe_read_{space}(&{out}, 8, (void *)(PYTRACE_REG(ctx, {REG_SP}) + {8 * (n + 1)}));")
        return out

    def usdt_arg(self, n: int) -> str:
        """A USDT argument, read where the probe's note says it is (lang/usdt.py)."""
        if self.fn.usdt_args is None:  # only a compile with the binary at hand generates code
            raise AssertionError(f"USDT probe {self.fn.specs[0].name()}: argument locations unknown")
        arg = self.fn.usdt_args[n]
        stmts, value = arg.c("ctx", self.tmp("arg"))
        for s in stmts:
            self.emit(s)
        return self.as_c(value, arg.type)

    def current_tgid(self) -> str:
        """The process ID the tracer's /proc knows the current task by (symbols are read there)."""
        if self.gen.options.pid_view is not None:
            return self.viewed_pid("pid")
        return "(bpf_get_current_pid_tgid() >> 32)"

    def viewed_pid(self, which: str) -> str:
        """pid or tid of the current task in the tracer's pid namespace (CodegenOptions.pid_view):
        task->thread_pid (the group leader's for pid), numbers[i].nr at the level i whose namespace
        is the tracer's, else 0."""
        v = self.gen.options.pid_view
        assert v is not None
        task, pid, level, ns, inum, nr, i = (self.tmp(n) for n in ("task", "pid", "lvl", "ns", "inum", "nr", "i"))
        self.emit(f"u64 {task} = (u64)bpf_get_current_task();")
        self.emit(f"u32 {nr} = 0;")
        if which == "pid":
            self.emit(f"bpf_probe_read_kernel(&{task}, 8, (void *)({task} + {v.group_leader}));")
        read_nr = f"bpf_probe_read_kernel(&{nr}, 4, (void *)({pid} + {v.numbers} + {i} * {v.upid_size} + {v.upid_nr}));"
        for line in v.find_level(task, (pid, level, ns, inum, i), [read_nr, "break;"]):
            self.emit(line)
        return nr

    def stack(self, t: StackT) -> Value:
        out = self.declare(t, "stack")
        flags = "0" if t.kernel else "BPF_F_USER_STACK"
        self.emit(f"{out}.id = {STACKS_MAP}.get_stackid(ctx, {flags});")
        self.gen.uses_stacks = True
        self.emit(f"{out}.pid = {self.current_tgid()};")
        return Buf(out, t)

    def expr_Var(self, e: ast.Var) -> Value:
        slot = self.slot(e)
        name = self.var_ref(slot)
        if isinstance(slot.type, WORD_TYPES):
            return name
        return Buf(name, slot.type)

    def expr_Map(self, e: ast.Map) -> Value:
        return self.map_read(e)

    def expr_Tuple(self, e: ast.Tuple) -> Value:
        t: TupleT = self.type(e)  # type: ignore[assignment]
        out = self.declare(t, "tup")
        for i, (x, et) in enumerate(zip(e.elems, t.elems)):
            self.store(f"{out}.e{i}", et, x)
        return Buf(out, t)

    def expr_Binop(self, e: ast.Binop) -> Value:
        op = e.op
        lt, rt = self.type(e.left), self.type(e.right)
        if op in ("==", "!=") and not isinstance(lt, (IntT, PtrT)) and not isinstance(rt, (IntT, PtrT)):
            eq = self.string_equal(self.value(e.left), lt, self.value(e.right), rt)
            return f"((s64)({eq}))" if op == "==" else f"((s64)!({eq}))"
        if op in ("&&", "||"):
            left = self.int_value(e.left)
            with self.capture() as pre:
                right = self.int_value(e.right)
            if not pre:
                return f"((s64)(({left}) {op} ({right})))"
            out = self.tmp("logic")
            self.emit(f"s64 {out} = {1 if op == '||' else 0};")
            test = f"({left})" if op == "&&" else f"!({left})"
            with self.nested(f"if ({test}) {{"):
                self.lines.extend("    " + line for line in pre)
                self.emit(f"{out} = ({right}) != 0;")
            return out
        left, right = self.int_value(e.left), self.int_value(e.right)
        scale = self.fn.constants.get(id(e), 1)  # pointer + n: n elements
        if scale != 1:
            if isinstance(lt, PtrT):
                right = f"((u64)({right}) * {scale})"
            else:
                left = f"((u64)({left}) * {scale})"
        signed = getattr(lt, "signed", False) and getattr(rt, "signed", False)
        c = "s64" if signed else "u64"
        if op in ("==", "!=", "<", ">", "<=", ">="):
            return f"((s64)(({c})({left}) {op} ({c})({right})))"
        if op in ("/", "%"):
            # signed operands divide signed, truncating toward zero (-7 / 2 is -3, -7 % 2 is -1),
            # as bpftrace 0.27 (0.17 divided unsigned); a zero divisor gives 0
            r = self.tmp("div")
            self.emit(f"u64 {r} = (u64)({right});")
            if signed:
                fn = "pytrace_sdiv" if op == "/" else "pytrace_smod"
                return f"((s64){fn}((s64)({left}), (s64){r}))"
            return f"(({c})({r} ? (u64)({left}) {op} {r} : 0))"
        if op in ("<<", ">>"):
            return f"(({c})(({c})({left}) {op} (({right}) & 63)))"
        return f"(({c})(({c})({left}) {op} ({c})({right})))"

    def string_equal(self, a: Value, at: Type, b: Value, bt: Type, limit: Optional[int] = None) -> str:
        """C expression that is 1 when the two strings are equal (in their first `limit` bytes)."""
        if isinstance(a, Lit) and isinstance(b, Lit):
            x, y = a.data.split(b"\0")[0], b.data.split(b"\0")[0]
            if limit is not None:
                x, y = x[:limit], y[:limit]
            return "1" if x == y else "0"
        if isinstance(a, Lit):
            a, b, at, bt = b, a, bt, at
        assert isinstance(a, Buf)
        asize = at.size if isinstance(at, StrT) else at.length  # type: ignore[attr-defined]
        out = self.tmp("eq")
        self.emit(f"s64 {out} = 0;")
        if isinstance(b, Lit):
            data = b.data.split(b"\0")[0] + b"\0"
            data = data[:min(asize, limit if limit is not None else len(data))]
            # one early exit per byte: every mismatch jumps to the same point, so the verifier
            # sees a single state there instead of one per combination of compared bytes. The empty
            # asm keeps clang from merging the compares into a memcmp (which it turns into a loop
            # over the bytes that the verifier walks for every combination: 1M instructions for a
            # 15-character comm)
            with self.nested("do {", "} while (0);"):
                for i, byte in enumerate(data):
                    self.emit(f"if ({a.ref}[{i}] != {byte if byte < 128 else byte - 256}) break;")
                    self.emit('asm volatile("");')
                self.emit(f"{out} = 1;")
            return out
        assert isinstance(b, Buf)
        bsize = bt.size if isinstance(bt, StrT) else bt.length  # type: ignore[attr-defined]
        n = min(asize, bsize, limit if limit is not None else asize)
        self.emit(f"{out} = 1;")
        self.emit("#pragma unroll")
        with self.nested(f"for (int i = 0; i < {n}; i++) {{"):
            self.emit(f"if ({a.ref}[i] != {b.ref}[i]) {{ {out} = 0; break; }}")
            self.emit(f"if ({a.ref}[i] == 0) break;")
        return out

    def call_strncmp(self, c: ast.Call) -> Value:
        a, b = c.args[0], c.args[1]
        n = ast.const_int(c.args[2])  # a literal, maybe negated (-0): checked by the semantic pass
        eq = self.string_equal(self.value(a), self.type(a), self.value(b), self.type(b), n)
        return f"((s64)!({eq}))"

    def expr_Unop(self, e: ast.Unop) -> Value:
        t = self.type(e.operand)
        if e.op == "*":
            ptr = self.int_value(e.operand)
            target = self.type(e)
            space = self.space_of(t)
            return self.read_memory(f"({ptr})", target, space)
        v = self.int_value(e.operand)
        if e.op == "!":
            return f"((s64)!({v}))"
        if e.op == "-":
            return f"((s64)-(s64)({v}))"
        if e.op == "+":
            return v
        return self.as_c(f"~({v})", self.type(e))

    def read_memory(self, addr: str, t: Type, space: str, bit: Tuple[int, int] = (0, 0)) -> Value:
        """Reads a value of type t at address addr (a u64 C expression)."""
        if isinstance(t, StructT):
            return f"((u64){addr})"
        if is_char_array(t):
            n = t.length  # type: ignore[attr-defined]
            buf = self.declare(StrT(n + 1), "arr")
            self.emit(f"bpf_probe_read_{space}(&{buf}, {n}, (void *){addr});")
            return Buf(buf, StrT(n + 1))
        if isinstance(t, ArrayT):
            return f"((u64){addr})"  # arrays decay to their address; index them
        size = 8 if isinstance(t, PtrT) else max(1, t.bits // 8) if isinstance(t, IntT) else 8
        out = self.tmp("rd")
        self.emit(f"u64 {out} = 0;")
        self.emit(f"bpf_probe_read_{space}(&{out}, {size}, (void *){addr});")
        bit_off, bit_size = bit
        if bit_size:
            self.emit(f"{out} = ({out} >> {bit_off}) & {(1 << bit_size) - 1}ULL;")
            return f"((u64){out})"
        if isinstance(t, IntT) and t.bits < 64:
            cast = int_ctype(t)
            return self.as_c(f"({cast}){out}", t)
        return self.as_c(out, t if isinstance(t, IntT) else IntT(64, True))

    def expr_Cond(self, e: ast.Cond) -> Value:
        cond = self.int_value(e.cond)
        t = self.type(e)
        if isinstance(t, WORD_TYPES):
            with self.capture() as pre_a:
                a = self.int_value(e.then)
            with self.capture() as pre_b:
                b = self.int_value(e.orelse)
            if not pre_a and not pre_b:
                return self.as_c(f"({cond}) ? ({a}) : ({b})", t)
            out = self.tmp("cond")
            self.emit(f"{ctype(t, self.gen.tuples)} {out} = 0;")
            with self.nested(f"if ({cond}) {{"):
                self.lines.extend("    " + line for line in pre_a)
                self.emit(f"{out} = {a};")
            with self.nested("else {"):
                self.lines.extend("    " + line for line in pre_b)
                self.emit(f"{out} = {b};")
            return out
        out = self.declare(t, "cond")
        with self.nested(f"if ({cond}) {{"):
            self.store(out, t, e.then)
        with self.nested("else {"):
            self.store(out, t, e.orelse)
        return Buf(out, t)

    def expr_IncDec(self, e: ast.IncDec) -> Value:
        delta = "+ 1" if e.op == "++" else "- 1"
        if isinstance(e.target, ast.Var):
            name = self.var_ref(self.slot(e.target))
            step = self.fn.constants.get(id(e), 1)  # a pointer moves by its element's size
            if step != 1:
                sign = "+" if e.op == "++" else "-"
                return f"({name} {sign}= {step})" if e.prefix else f"(({name} {sign}= {step}) {'-' if sign == '+' else '+'} {step})"
            return f"({e.op}{name})" if e.prefix else f"({name}{e.op})"
        m: ast.Map = e.target  # type: ignore[assignment]
        info = self.gen.analysis.maps[m.name]
        key = self.map_key(m, info)
        c = ctype(info.value, self.gen.tuples)  # type: ignore[arg-type]
        cmap = self.gen.map_cname(info)
        p, old, new = self.tmp("p"), self.tmp("old"), self.tmp("new")
        self.emit(f"{c} *{p} = {cmap}.lookup(&{key});")
        self.emit(f"{c} {old} = {p} ? *{p} : 0;")
        self.emit(f"{c} {new} = {old} {delta};")
        self.emit(f"{cmap}.update(&{key}, &{new});")
        return new if e.prefix else old

    def expr_Cast(self, e: ast.Cast) -> Value:
        t = self.type(e)
        v = self.int_value(e.expr)
        if isinstance(t, IntT):
            return self.as_c(f"({int_ctype(t)})({v})", t)
        return f"((u64)({v}))"

    def expr_FieldAccess(self, e: ast.FieldAccess) -> Value:
        base_t = self.type(e.expr)
        if isinstance(base_t, TupleT):
            base = self.value(e.expr)
            assert isinstance(base, Buf)
            i = int(e.name)
            et = base_t.elems[i]
            if isinstance(et, WORD_TYPES):
                return f"{base.ref}.e{i}"
            return Buf(f"{base.ref}.e{i}", et)
        ref = self.fn.fields[id(e)]
        if isinstance(base_t, RecordT):  # (name, type, offset, bit, width) of a copied struct
            rec = self.value(e.expr)
            assert isinstance(rec, Buf)
            _, mt, off, bit, width = ref  # type: ignore[misc]
            if isinstance(mt, RecordT):
                return Buf(f"(*({self.gen.tuples.raw(mt.size)} *)((u8 *)&{rec.ref} + {off}))", mt)
            return self.read_memory(f"((u64)&{rec.ref} + {off})", mt, "kernel", (bit, width))
        if isinstance(ref, TracepointField):
            return self.tracepoint_field(ref)
        if isinstance(ref, tuple):  # kfunc argument (index, type)
            i, t = ref
            return self.as_c(f"((u64 *)ctx)[{i}]", t if isinstance(t, IntT) else IntT(64, False))
        assert isinstance(ref, StructField)
        base = self.int_value(e.expr)
        space = base_t.space if isinstance(base_t, (PtrT, StructT)) else "kernel"
        return self.read_memory(f"(({base}) + {ref.offset})", ref.type, space, (ref.bit_offset, ref.bit_size))

    def tracepoint_field(self, f: TracepointField) -> Value:
        t = f.type
        if f.data_loc:
            loc = self.tmp("loc")
            self.emit(f"u32 {loc} = *(u32 *)((char *)ctx + {f.offset});")
            return f"((u64)ctx + ({loc} & 0xffff))"
        if isinstance(t, ArrayT) or f.bit_size:
            return self.read_memory(f"((u64)ctx + {f.offset})", t, "kernel", (f.bit_offset, f.bit_size))
        if isinstance(t, IntT):
            c = int_ctype(t)
            return self.as_c(f"*({c} *)((char *)ctx + {f.offset})", t)
        return f"((u64)*(u64 *)((char *)ctx + {f.offset}))"

    def expr_Index(self, e: ast.Index) -> Value:
        base_t = self.type(e.expr)
        elem = self.type(e)
        if isinstance(base_t, TupleT):
            base = self.value(e.expr)
            assert isinstance(base, Buf)
            i = self.fn.constants[id(e)]
            if isinstance(elem, WORD_TYPES):
                return f"{base.ref}.e{i}"
            return Buf(f"{base.ref}.e{i}", elem)
        v = self.value(e.expr)
        if isinstance(v, Lit):  # "/"[0]
            from kubectl_pytrace.lang.semantic import const_value

            k = const_value(e.index)
            if k is not None:
                data = v.data + b"\0"
                byte = data[k] if 0 <= k < len(data) else 0
                return self.constant(byte - 256 if byte >= 128 else byte)
            t = StrT(len(v.data) + 1)
            buf = self.declare(t, "lit")
            self.copy_string(buf, t.size, v)
            v = Buf(buf, t)
        idx = self.int_value(e.index)
        if isinstance(v, Buf):  # a string, or a char array already read: its bytes are here
            n = v.type.size if isinstance(v.type, StrT) else sizeof(v.type)
            i, out = self.tmp("i"), self.tmp("ch")
            self.emit(f"u64 {i} = (u64)({idx});")
            self.emit(f"s64 {out} = 0;")
            self.emit(f"if ({i} < {n}) {out} = ((s8 *)&{v.ref})[{i}];")
            return self.as_c(f"({int_ctype(elem)}){out}", elem) if isinstance(elem, IntT) else out
        assert isinstance(v, str)
        size = sizeof(elem) if not isinstance(elem, IntT) else max(1, elem.bits // 8)
        space = self.space_of(base_t)
        return self.read_memory(f"(({v}) + ({idx}) * {size})", elem, space)

    # ---- calls --------------------------------------------------------------------------------
    def expr_Call(self, c: ast.Call) -> Value:
        return getattr(self, "call_" + c.name)(c)

    def send(self, ev: EventSpec, args: List[Tuple[str, Type, ast.Expr]], flags: str = "BPF_RB_NO_WAKEUP"):
        """Reserves a ring-buffer record, fills it and submits it; counts a lost event if full."""
        sname = f"ev_{ev.id}"
        e = self.tmp("e")
        self.emit(f"struct {sname} *{e} = {EVENTS_MAP}.ringbuf_reserve(sizeof(struct {sname}));")
        with self.nested(f"if ({e}) {{"):
            self.emit(f"{e}->id = {self.event_id(ev)};")
            for fname, t, x in args:
                self.store(f"{e}->{fname}", t, x)
            self.emit(f"{EVENTS_MAP}.ringbuf_submit({e}, {flags});")
        self.emit("else pytrace_lost_event();")

    def call_printf(self, c: ast.Call) -> Value:
        items = [(f"a{i}", self.event_type(self.type(a)), a) for i, a in enumerate(c.args[1:])]
        ev = self.gen.new_event(c.name, items, fmt=self.fn.formats[id(c)])  # printf, cat
        self.send(ev, items)
        return "0"

    call_cat = call_printf
    call_system = call_printf

    def call_signal(self, c: ast.Call) -> Value:
        sig = self.fn.constants.get(id(c))
        self.emit(f"bpf_send_signal((u32)({sig if sig is not None else self.int_value(c.args[0])}));")
        return "0"

    def call_override(self, c: ast.Call) -> Value:
        self.emit(f"bpf_override_return(ctx, (u64)({self.int_value(c.args[0])}));")
        return "0"

    def record_type(self, e: ast.Expr) -> RecordT:
        """The RecordT the semantic pass gave a struct expression stored or printed whole."""
        return self.fn.records[id(e)][0]

    def event_type(self, t: Type) -> Type:
        if is_char_array(t):
            return StrT(t.length + 1)  # type: ignore[attr-defined]
        if isinstance(t, PtrT):
            return IntT(64, False)
        return storage_type(t)

    def call_print(self, c: ast.Call) -> Value:
        a = c.args[0]
        if isinstance(a, ast.Map) and not a.keys:
            top = ast.const_int(c.args[1]) if len(c.args) > 1 else 0  # literals, maybe negated (-0)
            div = ast.const_int(c.args[2]) if len(c.args) > 2 else 0
            ev = self.gen.new_event("print_map", [], map=a.name, top=top, div=div)
            self.send(ev, [])
            return "0"
        t = self.type(a)
        if id(a) in self.fn.records:  # a struct, copied whole (its bytes)
            t = self.record_type(a)
        items = [("a0", self.event_type(t), a)]
        ev = self.gen.new_event("print_value", items)
        self.send(ev, items)
        return "0"

    def call_time(self, c: ast.Call) -> Value:
        fmt = c.args[0].value.decode("utf-8", "surrogateescape") if c.args else "%H:%M:%S\n"  # type: ignore[attr-defined]
        ev = self.gen.new_event("time", [], fmt=fmt)
        self.send(ev, [])
        return "0"

    def call_join(self, c: ast.Call) -> Value:
        """Up to JOIN_MAX_ARGS strings of JOIN_ARG_SIZE bytes each (bpftrace's limits), read from the
        array into the event record itself (16 KiB: far too big for the BPF stack). An element
        after the NULL that ends the array, or one that cannot be read, is left empty: user space
        joins the strings up to the first empty one, as bpftrace does."""
        sep = c.args[1].value.decode("utf-8", "surrogateescape") if len(c.args) > 1 else " "  # type: ignore[attr-defined]
        items = [(f"a{i}", StrT(JOIN_ARG_SIZE), c) for i in range(JOIN_MAX_ARGS)]
        ev = self.gen.new_event("join", items, fmt=sep)
        at = self.type(c.args[0])
        space = self.space_of(at)
        arr = self.tmp("arr")
        self.emit(f"u64 {arr} = (u64)({self.int_value(c.args[0])});")
        e, p, end = self.tmp("e"), self.tmp("jp"), self.tmp("jend")
        self.emit(f"struct ev_{ev.id} *{e} = {EVENTS_MAP}.ringbuf_reserve(sizeof(struct ev_{ev.id}));")
        with self.nested(f"if ({e}) {{"):
            self.emit(f"{e}->id = {self.event_id(ev)};")
            self.emit(f"u64 {p} = 0;")
            self.emit(f"int {end} = 0;")
            for i in range(JOIN_MAX_ARGS):
                with self.nested(f"if (!{end}) {{"):
                    self.emit(f"if (bpf_probe_read_{space}(&{p}, 8, (void *)({arr} + {8 * i})) || !{p}) {end} = 1;")
                self.emit(f"if ({end}) {e}->a{i}[0] = 0;")
                self.emit(f"else if (bpf_probe_read_{space}_str(&{e}->a{i}, {JOIN_ARG_SIZE}, (void *){p}) < 0) "
                          f"{e}->a{i}[0] = 0;")
            self.emit(f"{EVENTS_MAP}.ringbuf_submit({e}, BPF_RB_NO_WAKEUP);")
        self.emit("else pytrace_lost_event();")
        return "0"

    def call_getopt(self, c: ast.Call) -> Value:
        value = self.fn.constants[id(c)]
        if isinstance(value, bytes):
            return Lit(value)
        return self.constant(value)

    def call_nsecs(self, c: ast.Call) -> Value:
        mode = self.fn.formats[id(c)]
        if mode == "monotonic":
            return "((u64)bpf_ktime_get_ns())"
        if mode in ("tai", "sw_tai"):  # sw_tai: the kernel's own TAI clock here (bpftrace computes it)
            return "((u64)bpf_ktime_get_tai_ns())"
        return "((u64)bpf_ktime_get_boot_ns())"

    def call_strftime(self, c: ast.Call) -> Value:
        t = self.type(c)
        out = self.declare(t, "ts")
        self.emit(f"{out}.mode = {2 if self.fn.formats[id(c)] == 'tai' else 1};")
        self.emit(f"{out}.nsecs = (u64)({self.int_value(c.args[1])});")
        return Buf(out, t)

    def call_exit(self, c: ast.Call) -> Value:
        items = [("code", INT64, c.args[0])] if c.args else []  # exit(code): the process's status
        ev = self.gen.new_event("exit", items)
        self.send(ev, items, flags="BPF_RB_FORCE_WAKEUP")
        self.emit(self.return_stmt())
        return "0"

    def call_errorf(self, c: ast.Call) -> Value:
        items = [(f"a{i}", self.event_type(self.type(a)), a) for i, a in enumerate(c.args[1:])]
        ev = self.gen.new_event(c.name, items, fmt=self.fn.formats[id(c)], where=self.fn.locations[id(c)])
        self.send(ev, items)
        return "0"

    call_warnf = call_errorf

    def call_assert(self, c: ast.Call) -> Value:
        cond = self.int_value(c.args[0])
        msg = c.args[1].value.decode("utf-8", "surrogateescape").replace("%", "%%")  # type: ignore[attr-defined]
        with self.nested(f"if (!({cond})) {{"):
            ev = self.gen.new_event("errorf", [], fmt=printf_format.parse_format("assert failed: " + msg),
                                    where=self.fn.locations[id(c)])
            self.send(ev, [])
            items = [("code", INT64, ast.Integer(1, c.span))]
            ev = self.gen.new_event("exit", items)
            self.send(ev, items, flags="BPF_RB_FORCE_WAKEUP")
            self.emit(self.return_stmt())
        return "0"

    def call_static_assert(self, c: ast.Call) -> Value:
        return "0"  # checked when compiling

    def call_len(self, c: ast.Call) -> Value:
        a = c.args[0]
        info = self.fn.loops.get(id(c))
        if info is not None:
            # bpf_for_each_map_elem returns how many elements it visited; the callback visits all
            ref = self.gen.map_ref(info)  # type: ignore[arg-type]
            k = self.gen.count_callback()
            return f"((s64)bpf_for_each_map_elem((void *){MAP_MARKER | ref:#x}ULL, (void *){FUNC_MARKER | k:#x}ULL, 0, 0))"
        t: StackT = self.type(a)  # type: ignore[assignment]
        self.gen.uses_frames = True
        zero, frames, n = self.tmp("zero"), self.tmp("frames"), self.tmp("nframes")
        self.emit(f"u32 {zero} = 0;")
        self.emit(f"struct pytrace_frames *{frames} = pytrace_frames_scratch.lookup(&{zero});")
        self.emit(f"s64 {n} = 0;")
        flags = "0" if t.kernel else "BPF_F_USER_STACK"
        self.emit(f"if ({frames}) {n} = bpf_get_stack(ctx, {frames}, {min(t.limit, 127) * 8}, {flags});")
        return f"((s64)({n} > 0 ? (u64){n} / 8 : 0))"

    def string_ref(self, e: ast.Expr) -> Tuple[str, int, Optional[str]]:
        """(address, capacity, space) of a string argument: a string or char array on the stack
        (space None), or a pointer read from memory up to the default string size."""
        t = self.type(e)
        v = self.value(e)
        if isinstance(v, Lit):
            buf = self.declare(StrT(len(v.data) + 1), "lit")
            self.copy_string(buf, len(v.data) + 1, v)
            return f"&{buf}", len(v.data) + 1, None
        if isinstance(v, Buf):
            return f"&{v.ref}", sizeof(v.type) if isinstance(v.type, StrT) else v.type.length, None  # type: ignore[attr-defined]
        return f"(void *)({v})", self.gen.analysis.config.max_strlen, self.space_of(t)

    def call_strlen(self, c: ast.Call) -> Value:
        addr, size, space = self.string_ref(c.args[0])
        if space is not None:  # a pointer: read the string first
            buf = self.declare(StrT(size), "s")
            self.emit(f"bpf_probe_read_{space}_str(&{buf}, {size}, {addr});")
            addr = f"&{buf}"
        n = self.tmp("len")
        self.emit(f"u64 {n} = 0;")
        self.emit(f"for (; {n} < {size} && ((char *){addr})[{n}]; {n}++) {{}}")
        return n

    def read_string(self, e: ast.Expr) -> Tuple[str, int]:
        addr, size, space = self.string_ref(e)
        if space is not None:
            buf = self.declare(StrT(size), "s")
            self.emit(f"bpf_probe_read_{space}_str(&{buf}, {size}, {addr});")
            return f"&{buf}", size
        return addr, size

    def call_strstr(self, c: ast.Call) -> Value:
        (h, hsize), (n, nsize) = self.read_string(c.args[0]), self.read_string(c.args[1])
        out, i, j = self.tmp("at"), self.tmp("i"), self.tmp("j")
        hs, ns = f"((char *){h})", f"((char *){n})"
        self.emit(f"s64 {out} = {ns}[0] ? -1 : 0;")  # an empty needle is at 0
        with self.nested(f"for (u32 {i} = 0; {out} < 0 && {i} < {hsize} && {hs}[{i}]; {i}++) {{"):
            self.emit(f"u32 {j} = 0;")
            self.emit(f"for (; {j} < {nsize} && {ns}[{j}] && {i} + {j} < {hsize} && {hs}[{i} + {j}] == {ns}[{j}]; "
                      f"{j}++) {{}}")
            self.emit(f"if ({j} == {nsize} || !{ns}[{j}]) {out} = {i};")
        if c.name == "strcontains":
            return f"((s64)({out} >= 0))"
        return out

    call_strcontains = call_strstr

    def call_memcmp(self, c: ast.Call) -> Value:
        sides = []
        for a in c.args[:2]:
            v = self.value(a)
            if isinstance(v, Buf):
                sides.append(f"((s8 *)&{v.ref})")
            elif isinstance(v, Lit):
                buf = self.declare(StrT(len(v.data) + 1), "lit")
                self.copy_string(buf, len(v.data) + 1, v)
                sides.append(f"((s8 *)&{buf})")
            else:
                word = self.tmp("w")
                self.emit(f"u64 {word} = (u64)({v});")
                sides.append(f"((s8 *)&{word})")
        n = self.fn.constants[id(c)]
        out, i = self.tmp("cmp"), self.tmp("i")
        self.emit(f"s64 {out} = 0;")
        self.emit(f"for (u32 {i} = 0; {i} < {n}; {i}++) {{ if ({sides[0]}[{i}] != {sides[1]}[{i}]) "
                  f"{{ {out} = (s64){sides[0]}[{i}] - (s64){sides[1]}[{i}]; break; }} }}")
        return out

    def call_clear(self, c: ast.Call) -> Value:
        ev = self.gen.new_event("clear", [], map=c.args[0].name)  # type: ignore[attr-defined]
        self.send(ev, [])
        return "0"

    def call_zero(self, c: ast.Call) -> Value:
        ev = self.gen.new_event("zero", [], map=c.args[0].name)  # type: ignore[attr-defined]
        self.send(ev, [])
        return "0"

    def call_delete(self, c: ast.Call) -> Value:
        m: ast.Map = c.map_access  # type: ignore[attr-defined]
        info = self.gen.analysis.maps[m.name]
        key = self.map_key(m, info)
        return f"((s64)({self.gen.map_cname(info)}.delete(&{key}) == 0))"

    def call_has_key(self, c: ast.Call) -> Value:
        m: ast.Map = c.map_access  # type: ignore[attr-defined]
        info = self.gen.analysis.maps[m.name]
        key = self.map_key(m, info)
        return f"((s64)({self.gen.map_cname(info)}.lookup(&{key}) != 0))"

    def call_str(self, c: ast.Call) -> Value:
        t: StrT = self.type(c)  # type: ignore[assignment]
        at = self.type(c.args[0])
        if isinstance(at, StrT) or is_char_array(at):
            src = self.value(c.args[0])
            out = self.declare(t, "str")
            self.copy_string(out, t.size, src)
            self.emit(f"{out}[{t.size - 1}] = 0;")
            return Buf(out, t)
        out = self.declare(t, "str")
        self.read_str_into(out, t.size, c)
        return Buf(out, t)

    def call_gostr(self, c: ast.Call) -> Value:
        """A Go string: len bytes at ptr (semantic.call_gostr), read up to the first NUL as str()."""
        t: StrT = self.type(c)  # type: ignore[assignment]
        out = self.declare(t, "gostr")
        ptr, ln = self.int_value(c.args[0]), self.tmp("len")
        self.emit(f"u64 {ln} = ({self.int_value(c.args[1])});")
        self.emit(f"if ({ln} > {t.size - 1}) {ln} = {t.size - 1};")
        space = self.space_of(self.type(c.args[0]))
        self.emit(f"if ({ln}) bpf_probe_read_{space}_str(&{out}, ({ln} + 1) & {pad8(t.size) * 2 - 1}, "
                  f"(void *)({ptr}));")
        return Buf(out, t)

    def call_strerror(self, c: ast.Call) -> Value:
        """The name from the program's table (filled by pytrace_init), else the table's
        "unknown" text."""
        table = self.gen.name_table(c.name)
        n = self.int_value(c.args[0])
        out = self.declare(StrT(64), "name")
        idx, entry = self.tmp("idx"), self.tmp("entry")
        self.emit(f"s64 {idx} = (s32)({n});")
        if c.name == "strerror":
            self.emit(f"if ({idx} < 0) {idx} = -{idx};  /* -EINTR is EINTR */")
        self.emit(f"struct pytrace_name *{entry} = 0;")
        with self.nested(f"if ({idx} >= 0 && {idx} < {table.size}) {{"):
            key = self.tmp("key")
            self.emit(f"u32 {key} = {idx};")
            self.emit(f"{entry} = {table.cname}.lookup(&{key});")
        with self.nested(f"if ({entry} && {entry}->s[0]) {{", "} else {"):
            self.emit(f"__builtin_memcpy(&{out}, {entry}->s, 64);")
        self.indent += 1
        self.copy_string(out, 64, Lit(table.unknown.encode()))
        self.indent -= 1
        self.emit("}")
        return Buf(out, StrT(64))

    call_syscall_name = call_strerror
    call_signal_name = call_strerror

    def call_pid(self, c: ast.Call) -> Value:
        if c.args[0].name == "init":  # type: ignore[attr-defined]
            shift = " >> 32" if c.name == "pid" else " & 0xffffffff"
            return f"((u64)(bpf_get_current_pid_tgid(){shift}))"
        return self.expr_Builtin(ast.Builtin(c.name, c.span))

    call_tid = call_pid

    def call_kptr(self, c: ast.Call) -> Value:
        return self.int_value(c.args[0])

    call_uptr = call_kptr

    def call_reg(self, c: ast.Call) -> Value:
        return f"PYTRACE_REG(ctx, {self.fn.constants[id(c)]})"

    def call_uaddr(self, c: ast.Call) -> Value:
        addr, here = self.fn.constants[id(c)]  # type: ignore[misc]
        if here is None:
            return self.constant(addr)
        return f"((u64)(PYTRACE_REG(ctx, {REG_IP}) - {here}ULL + {addr}ULL))"

    def call_cgroup_path(self, c: ast.Call) -> Value:
        return self.int_value(c.args[0])

    def call_macaddr(self, c: ast.Call) -> Value:
        out = self.tmp("mac")
        self.emit(f"u64 {out} = 0;")
        v = self.value(c.args[0])
        if isinstance(v, Buf):
            self.emit(f"__builtin_memcpy(&{out}, &{v.ref}, 6);")
        else:
            space = self.space_of(self.type(c.args[0]))
            self.emit(f"bpf_probe_read_{space}(&{out}, 6, (void *)({v}));")
        return out

    def call_kaddr(self, c: ast.Call) -> Value:
        return self.constant(self.fn.constants[id(c)])

    call_cgroupid = call_kaddr

    def call_buf(self, c: ast.Call) -> Value:
        t: BufT = self.type(c)  # type: ignore[assignment]
        out = self.declare(t, "buf")
        at = self.type(c.args[0])
        v = self.value(c.args[0])
        if isinstance(v, Lit):  # buf("abc", 2)
            data = v.data[:t.size]
            self.emit(f"{out}.len = {len(data)};")
            for i, b in enumerate(data):
                self.emit(f"{out}.data[{i}] = {b};")
            return Buf(out, t)
        if isinstance(v, Buf):  # a char array or a string, already read
            n = min(t.size, sizeof(v.type))
            self.emit(f"__builtin_memcpy(&{out}.data, &{v.ref}, {n});")
            if len(c.args) == 2 and ast.const_int(c.args[1]) is None:  # buf($s, $n)
                ln = self.tmp("n")
                self.emit(f"u64 {ln} = (u64)({self.int_value(c.args[1])});")
                self.emit(f"{out}.len = {ln} < {n} ? {ln} : {n};")
            else:
                self.emit(f"{out}.len = {n};")
            return Buf(out, t)
        assert isinstance(v, str)
        addr = v
        space = self.space_of(at)
        if len(c.args) == 2 and ast.const_int(c.args[1]) is None:
            n = self.tmp("n")
            self.emit(f"u64 {n} = (u64)({self.int_value(c.args[1])});")
            self.emit(f"if ({n} > {t.size}) {n} = {t.size};")
            self.emit(f"{out}.len = {n};")
            # the mask keeps the length provably within the buffer for the verifier
            self.emit(f"if ({n}) bpf_probe_read_{space}(&{out}.data, {n} & {pad8(t.size) * 2 - 1}, (void *)({addr}));")
        else:
            self.emit(f"{out}.len = {t.size};")
            self.emit(f"bpf_probe_read_{space}(&{out}.data, {t.size}, (void *)({addr}));")
        return Buf(out, t)

    def call_bswap(self, c: ast.Call) -> Value:
        bits = self.type(c).bits  # type: ignore[attr-defined]
        v = self.int_value(c.args[0])
        if bits == 8:
            return f"((u64)(u8)({v}))"
        return f"((u64)__builtin_bswap{bits}((u{bits})({v})))"

    def call_ksym(self, c: ast.Call) -> Value:
        return f"((u64)({self.int_value(c.args[0])}))"

    def call_usym(self, c: ast.Call) -> Value:
        out = self.declare(UsymT(), "usym")
        self.emit(f"{out}.addr = {self.int_value(c.args[0])};")
        self.emit(f"{out}.pid = {self.current_tgid()};")
        return Buf(out, UsymT())

    def call_kstack(self, c: ast.Call) -> Value:
        return self.stack(self.type(c))  # type: ignore[arg-type]

    call_ustack = call_kstack

    def call_ntop(self, c: ast.Call) -> Value:
        out = self.declare(InetT(), "inet")
        addr_e = c.args[-1]
        at = self.type(addr_e)
        if len(c.args) == 2:
            self.emit(f"{out}.af = {self.int_value(c.args[0])};")
        if isinstance(at, ArrayT):
            n = at.length * max(1, at.elem.bits // 8)  # type: ignore[attr-defined]
            addr = self.value(addr_e)
            if len(c.args) == 1:
                self.emit(f"{out}.af = {2 if n == 4 else 10};")
            if isinstance(addr, Buf):  # byte arrays (u8 saddr[4]) are already read into a buffer
                self.emit(f"__builtin_memcpy(&{out}.addr, &{addr.ref}, {n});")
            else:  # other arrays evaluate to their address
                self.emit(f"bpf_probe_read_kernel(&{out}.addr, {n}, (void *)({addr}));")
        else:
            v = self.int_value(addr_e)
            if len(c.args) == 1:
                self.emit(f"{out}.af = 2;")
            tmp = self.tmp("ip4")
            self.emit(f"u32 {tmp} = (u32)({v});")
            self.emit(f"__builtin_memcpy(&{out}.addr, &{tmp}, 4);")
        return Buf(out, InetT())


class Generator:
    def __init__(self, analysis: Analysis, options: CodegenOptions, params: List[str]):
        self.analysis, self.options = analysis, options
        self.params = split_params(params)[0]  # positional: $1, $#
        self.tuples = TupleTypes()
        self.events: Dict[int, EventSpec] = {}
        self.event_structs: List[str] = []
        self.maps: Dict[str, MapSpec] = {}
        self.probe_ids: Dict[str, int] = {}
        self.probe_names: List[str] = []
        self.uses_stacks = False
        self.func_name_size = 0  # FUNCS_MAP's value size, when a function reads `func` by cookie
        self.callbacks: List[str] = []  # loop bodies, in marker order
        self.callback_defs: List[str] = []
        self.var_structs: List[str] = []
        self.loop_structs: List[str] = []
        self.map_refs: Dict[str, int] = {}  # map C name -> marker id
        self.name_tables: Dict[str, NameTable] = {}
        self.count_cb: Optional[int] = None
        self.uses_frames = False

    def count_callback(self) -> int:
        """A bpf_for_each_map_elem callback that visits every element (len(@map))."""
        if self.count_cb is None:
            self.count_cb = len(self.callbacks)
            self.callbacks.append("pytrace_cb_visit")
            # begins by saving its arguments, as bcc_compile.link() checks of every callback
            self.callback_defs.append(
                "int pytrace_cb_visit(void *arg)\n{\n"
                '    asm volatile("*(u64 *)(r10 - 8) = r1" ::: "memory");\n'
                "    return 0;\n}\n")
        return self.count_cb

    def name_table(self, function: str) -> "NameTable":
        """The table a strerror(), syscall_name() or signal_name() reads: an array map that the
        program's pytrace_init fills before any probe is attached."""
        if function not in self.name_tables:
            entries, unknown = {"strerror": (abi.ERRNOS, abi.UNKNOWN_ERROR),
                                "syscall_name": (abi.SYSCALLS, abi.UNKNOWN_SYSCALL),
                                "signal_name": (abi.SIGNALS, abi.UNKNOWN_SIGNAL)}[function]
            self.name_tables[function] = NameTable(f"pytrace_names_{function}", entries, unknown)
        return self.name_tables[function]

    def name_tables_c(self) -> Tuple[List[str], str]:
        """The tables' maps and the function that fills them."""
        decls = ["struct pytrace_name { char s[64]; };"]
        body = ["int pytrace_init(void *ctx)", "{", "    struct pytrace_name v = {};", "    u64 *w = (u64 *)&v;",
                "    u32 k;"]
        for t in self.name_tables.values():
            decls.append(f"BPF_ARRAY({t.cname}, struct pytrace_name, {t.size});")
            longest = 0
            for i, name in sorted(t.entries.items()):
                data = name.encode()[:63].ljust(64, b"\0")
                words = [int.from_bytes(data[j:j + 8], "little") for j in range(0, 64, 8)]
                n = max(j + 1 for j, w in enumerate(words) if w) if any(words) else 0
                # the words after this name's are zero if no earlier name reached them
                stores = [f"w[{j}] = {w:#x}ULL;" for j, w in enumerate(words[:max(n, longest)])]
                longest = n
                body.append(f"    k = {i}; {' '.join(stores)}")
                body.append(f"    {t.cname}.update(&k, &v);")
            body.append("    __builtin_memset(&v, 0, sizeof(v));")
        body += ["    return 0;", "}", ""]
        return decls, "\n".join(body)

    def map_ref(self, info: MapInfo) -> int:
        cname = self.map_cname(info)
        if cname not in self.map_refs:
            self.map_refs[cname] = len(self.map_refs)
        return self.map_refs[cname]

    def map_cname(self, info: MapInfo) -> str:
        return f"map_{info.index}"

    def probe_id(self, spec: ProbeSpec) -> int:
        name = spec.name()
        if name not in self.probe_ids:
            self.probe_ids[name] = len(self.probe_names)
            self.probe_names.append(name)
        return self.probe_ids[name]

    def new_event(self, kind: str, items: List[Tuple[str, Type, ast.Expr]], **kw) -> EventSpec:
        ev_id = len(self.events) + 1
        record = Record.of([(name, t) for name, t, _ in items], start=8)
        ev = EventSpec(ev_id, kind, record, **kw)
        self.events[ev_id] = ev
        body = " ".join(decl(f.type, f.name, self.tuples) + ";" for f in record.fields)
        self.event_structs.append(f"struct ev_{ev_id} {{ u64 id; {body} }};")
        return ev

    def map_specs(self) -> List[str]:
        out = []
        n = self.options.map_max_entries
        if self.analysis.config.max_map_keys != MAP_MAX_ENTRIES:
            n = self.analysis.config.max_map_keys
        for info in self.analysis.maps.values():
            cname = self.map_cname(info)
            value: Type = info.value  # type: ignore[assignment]
            bucketed = isinstance(value, AggT) and value.kind in ("hist", "lhist")
            items = [(f"k{i}", t) for i, t in enumerate(info.key.elems)] if info.key else []
            if bucketed:
                items.append(("bucket", IntT(64, False)))
            key = Record.of(items) if items else None
            self.maps[info.name] = MapSpec(info.name, cname, key, value, bucketed)
            if key is not None:
                body = " ".join(decl(f.type, f.name, self.tuples) + ";" for f in key.fields)
                out.append(f"struct {cname}_key {{ {body} }};")
                ktype = f"struct {cname}_key"
            else:
                ktype = "u64"
            size = info.decl.max_entries if info.decl is not None else n
            entries = size * 64 if bucketed else size
            lru = info.decl is not None and "lru" in info.decl.kind  # let @m = lruhash(N)
            if isinstance(value, AggT):
                table = "lru_percpu_hash" if lru else "percpu_hash"
                out.append(f'BPF_TABLE("{table}", {ktype}, {agg_value_ctype(value)}, {cname}, {entries});')
            else:
                if isinstance(value, StrT):
                    out.append(f"typedef char {cname}_value[{pad8(value.size)}];")
                    vtype = f"{cname}_value"
                else:
                    vtype = ctype(value, self.tuples)
                out.append(f'BPF_TABLE("{"lru_hash" if lru else "hash"}", {ktype}, {vtype}, {cname}, {entries});')
        return out

    def generate(self) -> CProgram:
        a = self.analysis
        map_decls = self.map_specs()
        attachments = self.internal_attachments()
        functions = self.probe_functions(attachments)
        parts = [PRELUDE_HEAD, C_PRELUDE_TYPES, *self.tuples.defs, *self.event_structs, "",
                 f"BPF_RINGBUF_OUTPUT({EVENTS_MAP}, {self.options.ringbuf_pages});",
                 f"BPF_PERCPU_ARRAY({LOST_MAP}, u64, 1);",
                 f"BPF_ARRAY({CONFIG_MAP}, u64, {CONFIG_SLOTS});"]
        if self.uses_stacks:
            parts.append(f"BPF_STACK_TRACE({STACKS_MAP}, {STACK_MAP_ENTRIES});")
        if self.func_name_size:
            parts.append(f"struct pytrace_func_name {{ char name[{self.func_name_size}]; }};")
            parts.append(f"BPF_ARRAY({FUNCS_MAP}, struct pytrace_func_name, {len(self.probe_names)});")
        parts += map_decls
        parts.append(PRELUDE_HELPERS)
        if self.name_tables:
            decls, init = self.name_tables_c()
            parts += decls
            functions.append(init)
            # filled first, before the program's own probes are attached
            attachments.insert(0, AttachSpec(ProbeSpec("INIT"), "pytrace_init", -1, internal=True))
        if self.options.scope is not None:
            parts.append(scope_c.prelude(self.options.scope))
        parts += self.callback_parts()
        text = "\n".join(parts) + "\n" + "\n".join(functions)
        begin = next((x.fn_name for x in attachments if x.spec.provider == "BEGIN"), None)
        end = next((x.fn_name for x in attachments if x.spec.provider == "END"), None)
        cfg = a.config
        return CProgram(text, attachments, self.events, self.maps, self.probe_names, begin, end,
                        self.uses_stacks, a.uses_elapsed, a.uses_cpid, self.options.kprobe_mode,
                        print_maps_on_exit=cfg.print_maps_on_exit, str_trunc_trailer=cfg.str_trunc_trailer,
                        max_cat_bytes=cfg.max_cat_bytes)

    def callback_parts(self) -> List[str]:
        """What for loops and map walks need: the frames scratch, the callbacks and their structs."""
        parts = []
        if self.uses_frames:
            parts.append("struct pytrace_frames { u64 ip[127]; };")
            parts.append("BPF_PERCPU_ARRAY(pytrace_frames_scratch, struct pytrace_frames, 1);")
        if self.callbacks or self.map_refs:
            refs = ",".join(f"{i}:{name}" for name, i in self.map_refs.items())
            parts.append(f"/* pytrace-link callbacks={','.join(self.callbacks)} map_refs={refs} */")
            parts += self.var_structs + self.loop_structs + [""] + self.callback_defs
        return parts

    def internal_attachments(self) -> List[AttachSpec]:
        """The runtime's own probes, attached first: the cached scope verdict is only trusted once
        these run (scope.py)."""
        scope = self.options.scope
        if scope is None or not scope.cached:
            return []
        return [AttachSpec(ProbeSpec("rawtracepoint", func="sched_switch"), scope_c.SWITCH_FN, -1, internal=True),
                AttachSpec(ProbeSpec("tracepoint", "cgroup", "cgroup_attach_task"), scope_c.ATTACH_FN, -1,
                           internal=True)]

    def probe_functions(self, attachments: List[AttachSpec]) -> List[str]:
        """One C function per ProbeFunction; its attachments are appended to `attachments`."""
        functions = []
        specials: Dict[str, Tuple[ProbeSpec, List[str]]] = {}
        for fn in self.analysis.functions:
            if not fn.attach:
                continue  # every attach point of the probe was skipped (expand.py)
            name = f"probe_{fn.index}"
            functions.append(FunctionGen(self, fn, name, self.context_type(fn)).generate())
            if fn.provider in ("BEGIN", "END"):
                specials.setdefault(fn.provider, (fn.specs[0], []))[1].append(name)
                continue
            aps = fn.probe.attach_points
            optional = len(aps) > 1 or parse_attach_point(aps[0].raw, self.params).is_wildcard
            for spec in fn.specs:
                attachments.append(AttachSpec(spec, name, self.probe_id(spec), optional=optional,
                                              by_cookie=fn.cookie))
        for prov, (spec, names) in specials.items():
            # bpftrace 0.27 runs every BEGIN (END) probe, in the order of the program
            entry = "pytrace_" + prov.lower()
            calls = "".join(f"    {n}(ctx);\n" for n in names)
            functions.append(f"int {entry}(void *ctx)\n{{\n{calls}    return 0;\n}}\n")
            attachments.append(AttachSpec(spec, entry, self.probe_id(spec)))
        return functions

    def context_type(self, fn: ProbeFunction) -> str:
        if fn.specs[0].is_fentry(self.options.kprobe_mode):
            return "u64 *"
        if fn.provider in ("kprobe", "kretprobe", "uprobe", "uretprobe", "usdt"):
            return "struct pt_regs *"
        return "void *"


PRELUDE_HEAD = """\
/* generated by kubectl-pytrace */
/* No kernel headers beyond BCC's own: they cost most of the compile time, and kernel
   struct layouts come from BTF. Registers are read by their index in x86-64's pt_regs. */
#define PYTRACE_REG(ctx, i) (((u64 *)(ctx))[i])
"""

PRELUDE_HELPERS = f"""
static __always_inline void pytrace_lost_event(void)
{{
    u32 zero = 0;
    u64 *n = {LOST_MAP}.lookup(&zero);
    if (n) *n += 1;
}}

/* bpf_map_lookup_percpu_elem, for the map a marker names (bcc_compile.py) */
static void *(*pytrace_lookup_percpu)(void *map, const void *key, u32 cpu) = (void *)195;

static __always_inline u64 pytrace_config_get(u32 i)
{{
    u64 *v = {CONFIG_MAP}.lookup(&i);
    return v ? *v : 0;
}}

/* signed division without BPF's sdiv (cpu v4): on magnitudes, C's signs */
static __always_inline s64 pytrace_sdiv(s64 a, s64 b)
{{
    if (!b) return 0;
    u64 ua = a < 0 ? -(u64)a : (u64)a, ub = b < 0 ? -(u64)b : (u64)b;
    u64 q = ua / ub;
    return ((a < 0) != (b < 0)) ? -(s64)q : (s64)q;
}}

static __always_inline s64 pytrace_smod(s64 a, s64 b)
{{
    if (!b) return 0;
    u64 ua = a < 0 ? -(u64)a : (u64)a, ub = b < 0 ? -(u64)b : (u64)b;
    u64 r = ua % ub;
    return a < 0 ? -(s64)r : (s64)r;
}}

/* hist(v, k) buckets, as bpftrace 0.27: 0 for negatives, v + 1 below 2^k, then each
   power of 2 split in 2^k: 1 + ((l - k + 1) << k | the k bits after the leading 1) */
static __always_inline u64 pytrace_log2_bucket(s64 v, u64 k)
{{
    if (v < 0) return 0;
    u64 mask = (1ULL << k) - 1;
    if ((u64)v <= mask) return (u64)v + 1;
    u64 n = v, l = 0;
    if (n >> 32) {{ n >>= 32; l += 32; }}
    if (n >> 16) {{ n >>= 16; l += 16; }}
    if (n >> 8) {{ n >>= 8; l += 8; }}
    if (n >> 4) {{ n >>= 4; l += 4; }}
    if (n >> 2) {{ n >>= 2; l += 2; }}
    if (n >> 1) {{ l += 1; }}
    l -= k;
    return ((l + 1) << k) + (((u64)v >> l) & mask) + 1;
}}
"""


def generate(analysis: Analysis, options: Optional[CodegenOptions] = None,
             params: Optional[List[str]] = None) -> CProgram:
    return Generator(analysis, options or CodegenOptions(), params or []).generate()
