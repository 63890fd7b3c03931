"""The semantic pass: types every expression, checks every use, and fixes the type of each map.

One probe body becomes one or more ProbeFunctions (a function per attach point when the body depends
on which attach point fired: `args`, `probe`, `func`, USDT arguments; otherwise one function shared
by all of them). Each ProbeFunction is typed separately and keeps its types in side tables keyed by
node identity. Maps are global: their key and value types are fixed by a fixpoint over all bodies,
because an END probe may read a map that a later probe fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang import printf as printf_format
from kubectl_pytrace.lang.config import Config
from kubectl_pytrace.lang.diagnostics import Diagnostics, Span, location
from kubectl_pytrace.lang.env import (GO_ARG_REGS, GO_REGABI, GO_STACKABI, Environment, LookupFailed, StructField,
                                      TracepointField)
from kubectl_pytrace.lang.probes import ProbeSpec
from kubectl_pytrace.lang.usdt import UsdtArg

if TYPE_CHECKING:
    from kubectl_pytrace.lang.expand import ProbeGroup
from kubectl_pytrace.lang.types import (
    BOOL, BoolT, COMM_LEN, INT64, INT_TYPE_NAMES, STRLEN, UINT64, VOID, WORD_TYPES, AggT, ArrayT, BufT,
    CgroupPathT, InetT, IntT, KsymT, MacT, ProbeT, PtrT, RecordT, StackT, StrT, StructT, TimestampT, TupleT,
    Type, UsernameT, UsymT, VoidT, common_type, is_char_array, is_integer_like, storage_type,
)

AGGREGATIONS = ("count", "sum", "avg", "min", "max", "stats", "hist", "lhist")
KPROBE_LIKE = ("kprobe", "kretprobe", "uprobe", "uretprobe", "usdt")
MAX_UNROLL = 100
MAX_UNROLL_COPIES = 10000  # unroll(100) inside unroll(100) is already too big for the verifier
MAX_LHIST_BUCKETS = 1000
MAX_STRING = 1024
READABLE_AGGREGATIONS = ("count", "sum", "avg", "min", "max")
# bpftrace functions kubectl-pytrace refuses, and why (docs/bpftrace-compat.md)
UNSUPPORTED = {
    "path": "bpf_d_path() is only allowed in fentry/LSM programs, which this tracer does not load",
    "pton": "array values (u8[4], u8[16]) can not be stored or printed yet",
    "tseries": "time series maps are not implemented",
    "skboutput": "writing packets to a pcap file is not implemented",
    "unwatch": "watchpoints are not implemented",
    "signal_thread": "not implemented (signal() is)",
    "str_concat": "not implemented",
}
SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
           "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
           "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
           "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31}
# x86-64's struct pt_regs, in order: reg("name") reads slot X86_REGS.index(name)
X86_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
            "orig_ax", "ip", "cs", "flags", "sp", "ss")
MAX_STORED_RECORD = 256  # bytes of a struct copied into a variable, map or tuple (the BPF stack)
MAX_PRINTED_RECORD = 65536  # print(*$task): straight into the ring buffer record
MAX_CPUS = 1024  # reading an aggregation where the number of CPUs is not known: up to the first missing
TIMESTAMP_MODES = ("monotonic", "boot", "tai", "sw_tai")  # string[N] / buffer[N] sizes the BPF stack can hold in a few copies
STACK_MODES = ("bpftrace", "perf", "raw")


@dataclass
class MapInfo:
    name: str  # "@" or "@name"
    index: int  # the C name is map_<index>
    key: Optional[TupleT] = None  # None: a scalar map (no [keys])
    value: Optional[Type] = None  # a storage type, or AggT for aggregation maps
    span: Span = Span(0, 0)
    key_known: bool = False  # set at the first access, which fixes whether the map has keys
    decl: Optional[ast.MapDecl] = None  # let @m = lruhash(N)
    deferred: bool = False  # assigned only by statements left for the node (remote environment)

    @property
    def is_agg(self) -> bool:
        return isinstance(self.value, AggT)


@dataclass
class VarSlot:
    """One variable: `name` as written, `cname` unique in its function, its type (None until a value
    is assigned), the type a `let $x: T` fixed, and the value the runtime sets ($container_pid)."""

    name: str
    cname: str
    type: Optional[Type] = None
    declared: Optional[Type] = None
    predefined: Optional[int] = None


@dataclass
class ProbeFunction:
    """One generated BPF function: a probe body typed for the attach points it serves."""

    probe: ast.Probe
    specs: List[ProbeSpec]
    index: int  # the C name is probe_<index>
    tp_fields: Optional[Dict[str, TracepointField]] = None
    kfunc_args: Optional[List[Tuple[str, Type]]] = None
    kfunc_ret: Optional[Type] = None
    usdt_args: Optional[List[UsdtArg]] = None  # where the program reads each argument
    convention: Optional[str] = None  # uprobes: C_ABI, GO_REGABI, GO_STACKABI (env.py), None: unknown
    attach: bool = True  # False: none of the probe's attach points exist (checked, not generated)
    cookie: bool = False  # serves several specs: `probe` and `func` from the attachment's cookie
    types: Dict[int, Type] = field(default_factory=dict)
    fields: Dict[int, object] = field(default_factory=dict)  # FieldAccess -> TracepointField/StructField
    formats: Dict[int, list] = field(default_factory=dict)  # printf/time Call -> parsed format
    constants: Dict[int, int] = field(default_factory=dict)  # Identifier/kaddr() Call -> its value
    # variables: one slot (a C variable) per declaration, blocks being scopes; Var node -> slot
    slots: Dict[str, "VarSlot"] = field(default_factory=dict)  # C name -> slot, in declaration order
    var_refs: Dict[int, str] = field(default_factory=dict)  # id(Var) -> C name
    loops: Dict[int, object] = field(default_factory=dict)  # id(For) -> facts for the code generator
    locations: Dict[int, Tuple[str, int, int, str]] = field(default_factory=dict)  # errorf() -> where
    records: Dict[int, Tuple[RecordT, str]] = field(default_factory=dict)  # struct copied whole -> (type, space)

    @property
    def provider(self) -> str:
        return self.specs[0].provider

    @property
    def user_space(self) -> bool:
        return self.provider in ("uprobe", "uretprobe", "usdt")

    def type(self, node: ast.Node) -> Type:
        return self.types[id(node)]


@dataclass
class Analysis:
    functions: List[ProbeFunction]
    maps: Dict[str, MapInfo]
    uses_elapsed: bool = False
    uses_cpid: bool = False
    predefined: Dict[str, int] = field(default_factory=dict)  # variables set by the runtime
    config: Config = field(default_factory=Config)


def const_value(e: ast.Expr, known: Optional[Dict[int, int]] = None) -> Optional[int]:
    """The value of a constant integer expression (literals, true/false, arithmetic, bitwise,
    comparison and logical operators); known: the values the checker computed (sizeof(),
    offsetof(), enum constants) by node id."""
    if isinstance(e, ast.Integer):
        return e.value
    if known is not None and id(e) in known and isinstance(e, (ast.SizeOf, ast.OffsetOf, ast.Identifier)):
        return known[id(e)]
    if isinstance(e, ast.Bool):
        return int(e.value)
    if isinstance(e, ast.Unop) and e.op in ("-", "~", "+", "!"):
        v = const_value(e.operand, known)
        if v is None:
            return None
        return -v if e.op == "-" else ~v if e.op == "~" else int(not v) if e.op == "!" else v
    if isinstance(e, ast.Binop) and e.op in ("==", "!=", "<", ">", "<=", ">=", "&&", "||"):
        a, b = const_value(e.left, known), const_value(e.right, known)
        if a is None or b is None:
            return None
        return int({"==": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b,
                    "&&": bool(a) and bool(b), "||": bool(a) or bool(b)}[e.op])
    if isinstance(e, ast.Binop) and e.op in ("+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^"):
        a, b = const_value(e.left, known), const_value(e.right, known)
        if a is None or b is None or (e.op in "/%" and b == 0) or (e.op in ("<<", ">>") and not 0 <= b < 64):
            return None
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                "/": lambda: int(a / b), "%": lambda: a - b * int(a / b), "<<": lambda: a << b,
                ">>": lambda: a >> b, "&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b}[e.op]()
    return None


def assignable(t: Type, declared: Type) -> bool:
    """Whether a value of type t may be stored in a variable declared with type `declared`."""
    if isinstance(declared, (IntT, PtrT)) and isinstance(t, (IntT, PtrT)):
        return True
    if isinstance(declared, StrT) and (isinstance(t, StrT) or is_char_array(t)):
        return True
    return common_type(storage_type(t), declared) == declared


def _is_agg_call(e: ast.Expr) -> bool:
    return isinstance(e, ast.Call) and e.name in AGGREGATIONS


class _Unknown(Exception):
    """Raised inside expression checking to abandon an expression after an error."""


class _Deferred(_Unknown):
    """Raised, when checking far from the node (analyse(defer=True)), to leave a statement unchecked
    because only the node knows enough to check it: a struct field, a tracepoint's fields, a kernel
    constant. The variables and maps it assigns are deferred too, and so is every statement that
    reads them. The node compiles the program again and checks everything."""


class Checker(ast.NodeVisitor):
    """Types one ProbeFunction. In a non-final round it only learns map types, reporting nothing."""

    def __init__(self, fn: ProbeFunction, maps: Dict[str, MapInfo], shared: "Shared", diags: Diagnostics,
                 final: bool, guess_maps: bool = True):
        self.fn, self.maps, self.env, self.diags, self.final = fn, maps, shared.env, diags, final
        self.shared = shared
        self.includes = shared.includes
        self.params, self.has_cpid, self.guess_maps = shared.params, shared.has_cpid, guess_maps
        self.config = shared.config
        self.strlen = shared.config.max_strlen
        self.c_structs = shared.c_structs  # struct definitions of the program (c_definitions)
        self.changed = False
        self.defer = shared.defer  # leave what the environment does not know for the node (check_program)
        self.deferred_vars: set = set()  # assigned by deferred statements (remote environment)
        self.loops = 0
        self.for_loops = 0
        self.unrolled = 1  # how many copies of the current statement nested unroll()s make
        fn.types.clear()
        fn.fields.clear()
        fn.formats.clear()
        fn.constants.clear()
        fn.slots.clear()
        fn.var_refs.clear()
        fn.loops.clear()
        self.scopes: List[Dict[str, VarSlot]] = [{}]
        self.closed: Dict[str, List[VarSlot]] = {}  # slots of blocks already left, by name
        for name, value in shared.predefined.items():
            slot = self.declare(name)  # $container_pid and the like, set before the probe body
            slot.type, slot.predefined = INT64, value

    # ---- variables and scopes ------------------------------------------------------------------
    def declare(self, name: str) -> VarSlot:
        base = "v_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name[1:])
        cname, n = base, 1
        while cname in self.fn.slots:
            n += 1
            cname = f"{base}_{n}"
        slot = VarSlot(name, cname)
        self.fn.slots[cname] = slot
        self.scopes[-1][name] = slot
        return slot

    def lookup(self, name: str) -> Optional[VarSlot]:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def push_scope(self):
        self.scopes.append({})

    def pop_scope(self):
        for name, slot in self.scopes.pop().items():
            self.closed.setdefault(name, []).append(slot)

    def scoped_block(self, b: ast.Block):
        self.push_scope()
        try:
            self.block(b)
        finally:
            self.pop_scope()

    def reopen(self, name: str, t: Optional[Type]) -> Optional[VarSlot]:
        """bpftrace 0.17 scoped variables to the probe: a variable assigned in a block it has left
        (`if (x) { $a = 1; } else { $a = 2; }`) is still that variable. The latest such slot whose
        type holds t is made visible again (bpftrace 0.27 would call it undeclared)."""
        for slot in reversed(self.closed.get(name, [])):
            if t is None or slot.type is None or common_type(slot.type, t) is not None:
                self.scopes[-1][name] = slot
                return slot
        return None

    def ref(self, v: ast.Var, slot: VarSlot) -> None:
        self.fn.var_refs[id(v)] = slot.cname

    # ---- helpers ------------------------------------------------------------------------------
    def error(self, msg: str, span: Span, hint: Optional[str] = None):
        if self.final:
            self.diags.error(msg, span, hint)
        raise _Unknown()

    def unknown_here(self, msg: str, span: Span, hint: Optional[str] = None):
        """What the environment cannot answer: an error on a host, left for the node far from it."""
        if self.defer:
            raise _Deferred()
        self.error(msg, span, hint)

    def warning(self, msg: str, span: Span):
        if self.final:
            self.diags.warning(msg, span)

    def set(self, node: ast.Node, t: Type) -> Type:
        self.fn.types[id(node)] = t
        return t

    def expr(self, e: ast.Expr) -> Type:
        method = getattr(self, "expr_" + type(e).__name__, None)
        if method is None:
            self.error(f"{type(e).__name__} expressions are not supported yet", e.span)
        return self.set(e, method(e))

    def int_expr(self, e: ast.Expr, what: str) -> Type:
        t = self.expr(e)
        if not is_integer_like(t):
            self.error(f"{what} must be an integer, not {t}", e.span)
        return t

    def stmt(self, s: ast.Stmt):
        try:
            method = getattr(self, "stmt_" + type(s).__name__, None)
            if method is None:
                self.error(f"{type(s).__name__} statements are not supported yet", s.span)
            method(s)
        except _Deferred:
            self.defer_targets(s)
        except _Unknown:
            pass

    def defer_targets(self, s: ast.Stmt):
        """The variable or map a deferred statement assigns is unknown from here on."""
        if isinstance(s, ast.AssignVar) and self.lookup(s.target.name) is None:
            self.deferred_vars.add(s.target.name)
        elif isinstance(s, ast.AssignMap):
            info = self.map_info(s.target)
            if not info.deferred:
                info.deferred = True
                self.changed = True

    def check_map_known(self, info: Optional[MapInfo], m: ast.Map):
        if info is not None and info.value is None and info.deferred:
            raise _Deferred()
        if info is None or info.value is None:
            self.error(f"undefined map '{m.name}'", m.span)

    def run(self):
        p = self.fn.probe
        if p.predicate is not None:
            try:
                t = self.expr(p.predicate)
                if not is_integer_like(t):
                    self.error(f"invalid predicate: it must be an integer, not {t}", p.predicate.span)
            except _Unknown:
                pass
        self.block(p.block)

    def block(self, b: ast.Block):
        for s in b.stmts:
            self.stmt(s)

    # ---- statements ---------------------------------------------------------------------------
    def stmt_ExprStmt(self, s: ast.ExprStmt):
        e = s.expr
        if _is_agg_call(e):
            self.error(f"{e.name}() should be directly assigned to a map", e.span)
        self.expr(e)

    def stmt_AssignVar(self, s: ast.AssignVar):
        if _is_agg_call(s.value):
            self.error(f"{s.value.name}() should be directly assigned to a map", s.value.span)
        t = self.check_storable(self.expr(s.value), s.value.span, s.value)
        self.assign_var(s.target, t, s.span)

    def assign_var(self, target: ast.Var, t: Type, span: Span) -> VarSlot:
        # integers are stored in 64 bits but keep their width, as bpftrace's variables keep their
        # type: bswap($port) of a uint16 swaps two bytes
        st = t if isinstance(t, IntT) else storage_type(t)
        if is_char_array(st):
            st = StrT(st.length + 1)  # type: ignore[union-attr]
        slot = self.lookup(target.name) or self.reopen(target.name, st) or self.declare(target.name)
        if slot.declared is not None:
            if not assignable(t, slot.declared):
                self.error(f"type mismatch for {target.name}: trying to assign value of type '{t}' when "
                           f"variable already has a type '{slot.declared}'", span)
            slot.type = slot.declared
        elif slot.type is not None:
            merged = common_type(slot.type, st)
            if merged is None:
                self.error(f"type mismatch for {target.name}: trying to assign value of type "
                           f"'{t}' when variable already contains a value of type '{slot.type}'", span)
            slot.type = merged
        else:
            slot.type = st
        self.ref(target, slot)
        self.set(target, slot.type)
        return slot

    def stmt_Let(self, s: ast.Let):
        name = s.target.name
        if name in self.scopes[-1] or any(name in sc for sc in self.scopes[:-1]):
            self.error(f"Variable {name} was already declared. Variable shadowing is not allowed.", s.span)
        slot = self.declare(name)
        self.ref(s.target, slot)
        if s.type is not None:
            declared = self.resolve_type(s.type, s.type.span)
            slot.declared = slot.type = declared if isinstance(declared, IntT) else storage_type(declared)
            if isinstance(slot.declared, (StructT, VoidT)):
                self.error(f"cannot declare a variable of type '{slot.declared}'", s.type.span)
        if s.value is not None:
            if _is_agg_call(s.value):
                self.error(f"{s.value.name}() should be directly assigned to a map", s.value.span)
            t = self.check_storable(self.expr(s.value), s.value.span, s.value)
            self.assign_var(s.target, t, s.span)
        elif slot.type is not None:
            self.set(s.target, slot.type)

    def stmt_Discard(self, s: ast.Discard):
        self.expr(s.expr)

    def stmt_BlockStmt(self, s: ast.BlockStmt):
        self.scoped_block(s.body)

    def expr_BlockExpr(self, e: ast.BlockExpr) -> Type:
        self.push_scope()
        try:
            for st in e.stmts:
                self.stmt(st)
            if e.value is None:
                return VOID
            return self.expr(e.value)
        finally:
            self.pop_scope()

    def stmt_AssignMap(self, s: ast.AssignMap):
        info = self.map_info(s.target)
        self.map_keys(s.target, info)
        if _is_agg_call(s.value):
            vt = self.aggregation(s.value)
        else:
            t = self.check_storable(self.expr(s.value), s.value.span, s.value)
            vt = storage_type(t)
        self.learn_map_value(info, vt, s)
        self.set(s.target, info.value or vt)

    def stmt_If(self, s: ast.If):
        try:
            t = self.expr(s.cond)
            if not is_integer_like(t):
                self.error(f"invalid condition in if(): {t}", s.cond.span)
        except _Unknown:
            pass
        self.scoped_block(s.then)
        if s.orelse is not None:
            self.scoped_block(s.orelse)

    def stmt_Unroll(self, s: ast.Unroll):
        n = ast.const_int(s.count)
        if n is None:
            self.error("unroll() needs an integer literal", s.count.span)
        elif not 1 <= n <= MAX_UNROLL:
            self.error(f"unroll() count must be between 1 and {MAX_UNROLL} (got {n})", s.count.span)
        copies = self.unrolled * n  # type: ignore[operator]
        if copies > MAX_UNROLL_COPIES:  # the C would be copies times the body: 100^3 is 380 MB
            self.error(f"nested unroll() would copy its body {copies} times (at most {MAX_UNROLL_COPIES})",
                       s.count.span)
        self.set(s.count, INT64)
        self.unrolled, outer = copies, self.unrolled
        self.scoped_block(s.body)
        self.unrolled = outer

    def stmt_While(self, s: ast.While):
        try:
            t = self.expr(s.cond)
            if not is_integer_like(t):
                self.error(f"invalid condition in while(): {t}", s.cond.span)
        except _Unknown:
            pass
        self.loops += 1
        try:
            self.scoped_block(s.body)
        finally:
            self.loops -= 1

    def stmt_For(self, s: ast.For):
        """for ($i : start..end) (end exclusive, both evaluated once) or for ($kv : @map)."""
        self.push_scope()
        try:
            if s.map is not None:
                m = s.map
                info = self.maps.get(m.name)
                if info is None or info.value is None:
                    if not self.final and self.guess_maps:
                        return
                    self.error(f"undefined map '{m.name}'", m.span)
                if info.key is None:  # type: ignore[union-attr]
                    self.error(f"{m.name} has no keys: a for loop iterates over a map with keys", m.span)
                if isinstance(info.value, AggT):  # type: ignore[union-attr]
                    self.error(f"{m.name} holds {info.value.kind}() values: a for loop iterates over maps "  # type: ignore[union-attr]
                               f"of plain values", m.span)
                self.set(m, info.value)  # type: ignore[union-attr,arg-type]
                keys = info.key.elems  # type: ignore[union-attr]
                key = keys[0] if len(keys) == 1 else TupleT(keys)
                var_t: Type = TupleT((key, info.value))  # type: ignore[arg-type,union-attr]
                self.fn.loops[id(s)] = info
            else:
                ts = [self.int_expr(x, "a for loop's bound") for x in (s.start, s.end)]  # type: ignore[list-item]
                signed = all(getattr(t, "signed", False) for t in ts)
                var_t = IntT(64, signed)
            slot = self.declare(s.var.name)
            slot.type = var_t
            self.ref(s.var, slot)
            self.set(s.var, var_t)
            self.loops += 1
            self.for_loops += 1
            try:
                self.scoped_block(s.body)
            finally:
                self.loops -= 1
                self.for_loops -= 1
        finally:
            self.pop_scope()

    def stmt_Return(self, s: ast.Return):
        if self.for_loops:
            self.error("'return' statement is not allowed in a for-loop", s.span)

    def stmt_Break(self, s: ast.Break):
        if not self.loops:
            self.error("'break' outside a loop", s.span)

    def stmt_Continue(self, s: ast.Continue):
        if not self.loops:
            self.error("'continue' outside a loop", s.span)

    def check_storable(self, t: Type, span: Span, e: Optional[ast.Expr] = None,
                       limit: int = MAX_STORED_RECORD) -> Type:
        """The type a value of type t is stored as: a struct (`*$task`, `args`) becomes its bytes
        (a RecordT) where e is given, within `limit` bytes."""
        if isinstance(t, VoidT):
            self.error("this expression has no value to store", span)
        if isinstance(t, StructT):
            if e is None:
                self.error(f"cannot use a value of type '{t}' here: use one of its fields, or a pointer to it",
                           span)
            rec = self.record_of(t, span)
            if rec.size > limit:
                self.error(f"'{t}' is {rec.size} bytes: too big to store (BPF programs have a 512-byte "
                           f"stack); store the fields you need, or print() it", span)
            self.fn.records[id(e)] = (rec, t.space)  # type: ignore[arg-type]
            return rec
        if isinstance(t, ArrayT) and not is_char_array(t):
            self.error(f"cannot store an array of type '{t}': index it", span)
        return t

    def record_of(self, t: StructT, span: Span) -> RecordT:
        """A struct's members, to copy it whole (tracepoint args from the format file)."""
        if t.cname == "args" or t.cname.startswith("tracepoint "):
            if self.fn.tp_fields is None:
                self.error(f"the args of a '{self.fn.provider}' probe are not a struct in memory: use its "
                           f"fields", span)
            fields = sorted(self.fn.tp_fields.values(), key=lambda f: f.offset)  # type: ignore[union-attr]
            # every tracepoint's record starts with the kernel's struct trace_entry
            members: List[Tuple[str, Type, int, int, int]] = [
                ("common_type", IntT(16, False), 0, 0, 0), ("common_flags", IntT(8, False), 2, 0, 0),
                ("common_preempt_count", IntT(8, False), 3, 0, 0), ("common_pid", IntT(32, True), 4, 0, 0)]
            for f in fields:
                ft = IntT(32, False) if f.data_loc else f.type
                if isinstance(ft, ArrayT) and isinstance(ft.elem, IntT) and ft.elem.bits == 8:
                    ft = ArrayT(IntT(8, True), ft.length)  # char[N]: printed as a string
                members.append((f.name, ft, f.offset, 0, 0))
            size = max((f.offset + f.size for f in fields), default=8)
            spec = self.fn.specs[0]
            return RecordT(f"struct tracepoint:{spec.target}:{spec.func}_args", size, tuple(members))
        if t.cname in self.c_structs:
            return self.c_structs[t.cname].record(self.c_structs, self.env)  # type: ignore[attr-defined]
        try:
            rec = self.env.struct_record(t.cname)
        except LookupFailed as err:
            self.error(str(err), span)
        if rec is None:
            self.error(f"copying a whole '{t.cname}' needs the kernel's BTF", span)
        return rec  # type: ignore[return-value]

    # ---- maps ---------------------------------------------------------------------------------
    def map_info(self, m: ast.Map) -> MapInfo:
        info = self.maps.get(m.name)
        if info is None:
            info = MapInfo(m.name, len(self.maps), span=m.span)
            self.maps[m.name] = info
            self.changed = True
        return info

    def map_keys(self, m: ast.Map, info: MapInfo):
        """Types the keys of one map access and merges them into the map's key type."""
        if not m.keys:
            kt = None
        else:
            elems = []
            for k in m.keys:
                t = self.check_storable(self.expr(k), k.span, k)
                if isinstance(t, (AggT,)):
                    self.error("an aggregation cannot be a map key", k.span)
                elems.append(self.key_storage(t))
            if len(elems) == 1 and isinstance(elems[0], TupleT):
                # @m[$key] with $key = (a, b) is @m[a, b]: several keys are one tuple (bpftrace 0.27)
                elems = list(elems[0].elems)
            kt = TupleT(tuple(elems))
        if not info.key_known:
            info.key, info.key_known = kt, True
            self.changed = True
            return
        old = info.key
        if (old is None) != (kt is None) or (old and kt and len(old.elems) != len(kt.elems)):
            def show(t):
                return "[" + ", ".join(str(e) for e in (t.elems if t else ())) + "]"
            self.error(f"argument mismatch for {m.name}: trying to access with arguments: {show(kt)} "
                       f"when map expects arguments: {show(old)}", m.span)
        if old is not None and kt is not None:
            merged = common_type(old, kt)
            if merged is None:
                self.error(f"argument type mismatch for {m.name}: key {kt} is not compatible with "
                           f"the map's key {old}", m.span)
            if merged != old:
                info.key = merged  # type: ignore[assignment]
                self.changed = True

    @staticmethod
    def key_storage(t: Type) -> Type:
        """How a map key or tuple element is stored. Pointers stay pointers (8 bytes): they keep
        their address space (str(@name[tid]) of a saved user pointer reads user memory) and print
        as bpftrace prints them (0x.. as keys)."""
        if is_char_array(t):
            return StrT(t.length)  # type: ignore[union-attr]
        return storage_type(t)

    def learn_map_value(self, info: MapInfo, vt: Type, s: ast.Stmt):
        if is_char_array(vt):
            vt = StrT(vt.length)  # type: ignore[union-attr]
        old = info.value
        if old is None:
            info.value = vt
            self.changed = True
            return
        if isinstance(old, AggT) or isinstance(vt, AggT):
            same = isinstance(old, AggT) and isinstance(vt, AggT) and old.kind == vt.kind
            if not same:
                self.error(f"type mismatch for {info.name}: trying to assign value of type '{vt}' when "
                           f"map already contains a value of type '{old}'", s.span)
            if old.lhist != vt.lhist:  # type: ignore[union-attr]
                self.error(f"{info.name}: lhist() arguments differ from an earlier use of the map", s.span)
            if old.bits != vt.bits:  # type: ignore[union-attr]
                self.error("Different bits in a single hist unsupported", s.span)
            if old.signed != vt.signed and old.signed:  # type: ignore[union-attr]
                info.value = vt
                self.changed = True
            return
        merged = common_type(old, vt)
        if merged is None:
            self.error(f"type mismatch for {info.name}: trying to assign value of type '{vt}' when map "
                       f"already contains a value of type '{old}'", s.span)
        if merged != old:
            info.value = merged
            self.changed = True

    def aggregation(self, c: ast.Call) -> AggT:
        nargs = {"count": 0, "sum": 1, "avg": 1, "min": 1, "max": 1, "stats": 1, "hist": 1, "lhist": 4}
        n = nargs[c.name]
        if c.name == "hist" and len(c.args) == 2:  # hist(v, k): each power of 2 in 2^k buckets
            n = 2
        if len(c.args) != n:
            self.arg_count_error(c, n)
        self.set(c, VOID)
        if n == 0:
            return AggT("count", False)
        t = self.int_expr(c.args[0], f"{c.name}() argument")
        signed = t.signed if isinstance(t, IntT) else False
        if c.name == "lhist":
            vals = [ast.const_int(a) for a in c.args[1:]]
            for a, v in zip(c.args[1:], vals):
                self.set(a, INT64)
                if v is None:
                    self.error("lhist() min, max and step must be integer literals", a.span)
                if not -(1 << 63) <= v < 1 << 63:  # they become C constants compared with an s64
                    self.error("lhist() min, max and step must fit in a signed 64-bit integer", a.span)
            lo, hi, step = vals  # type: ignore[misc]
            if lo < 0:
                self.error("lhist() min must be non-negative", c.args[1].span)
            if hi <= lo:
                self.error("lhist() max must be greater than min", c.args[2].span)
            if step <= 0:
                self.error("lhist() step must be >= 1", c.args[3].span)
            if (hi - lo) // step > MAX_LHIST_BUCKETS:
                self.error(f"lhist() has too many buckets: (max - min) / step must be at most "
                           f"{MAX_LHIST_BUCKETS}", c.span)
            return AggT("lhist", signed, (lo, hi, step))
        if c.name == "hist":
            bits = 0
            if len(c.args) == 2:
                k = ast.const_int(c.args[1])
                if k is None:
                    self.error("hist: invalid bits value, need integer literal", c.args[1].span)
                if not 0 <= k <= 5:  # type: ignore[operator]
                    self.error(f"hist: bits {k} must be 0..5", c.span)
                self.set(c.args[1], INT64)
                bits = k  # type: ignore[assignment]
            return AggT("hist", signed, bits=bits)
        return AggT(c.name, signed)

    def arg_count_error(self, c: ast.Call, n, what: str = ""):
        if n == 0:
            self.error(f"{c.name}() requires no arguments ({len(c.args)} provided)", c.span)
        plural = "argument" if n == 1 else "arguments"
        word = "one" if n == 1 else str(n)
        self.error(f"{c.name}() requires {word} {plural} ({len(c.args)} provided)", c.span)

    # ---- expressions --------------------------------------------------------------------------
    def expr_Integer(self, e: ast.Integer) -> Type:
        if e.value >= 1 << 64:
            self.error(f"integer {e.value} does not fit in 64 bits", e.span)
        return UINT64 if e.value >= 1 << 63 else INT64

    def expr_Bool(self, e: ast.Bool) -> Type:
        return BOOL

    def expr_String(self, e: ast.String) -> Type:
        if b"\0" in e.value:
            # the rest would be cut off everywhere a C string is used
            pass
        if len(e.value) + 1 > MAX_STRING:  # strings live on the 512-byte BPF stack
            self.error(f"string is too long (over {MAX_STRING} bytes)", e.span)
        return StrT(len(e.value) + 1)

    def expr_Identifier(self, e: ast.Identifier) -> Type:
        """A kernel constant (TASK_RUNNING, AF_INET): a header #define or a BTF enum value; or a
        name of an enum the program defines."""
        if f"enum:{e.name}" in self.c_structs:
            value, enum = self.c_structs[f"enum:{e.name}"]  # type: ignore[misc]
            self.fn.constants[id(e)] = value
            return enum
        try:
            value = self.env.constant(e.name, self.includes)
        except LookupFailed as err:
            self.error(f"unknown builtin '{e.name}'", e.span, hint=str(err))
        if value is None:
            self.unknown_here(f"unknown builtin '{e.name}'", e.span)
        if not -(1 << 63) <= value < 1 << 64:  # type: ignore[operator]
            self.error(f"{e.name} is {value}, which does not fit in 64 bits", e.span)
        self.fn.constants[id(e)] = value  # type: ignore[assignment]
        enum = self.env.enum_type(e.name, self.includes)
        if enum is not None:
            return enum
        return UINT64 if value >= 1 << 63 else INT64  # type: ignore[operator]

    def expr_Positional(self, e: ast.Positional) -> Type:
        if e.count:
            return INT64
        if e.index == 0:
            self.error("positional parameters start at $1", e.span)
        value = self.params[e.index - 1] if e.index <= len(self.params) else ""
        try:
            number = int(value, 0)
        except ValueError:
            # cut to bpftrace's string size, as str($1) does: a long one would not fit the BPF stack
            return StrT(min(len(value.encode()) + 1, self.strlen))
        if not -(1 << 63) <= number < 1 << 64:  # it becomes a C constant
            self.error(f"${e.index} is used as a number but {value!r} does not fit in 64 bits", e.span)
        return INT64

    def expr_Builtin(self, e: ast.Builtin) -> Type:
        name, prov = e.name, self.fn.provider
        if name in ("pid", "tid", "uid", "gid", "cpu", "nsecs", "elapsed", "cgroup", "rand", "jiffies",
                    "numaid"):
            return UINT64
        if name == "ncpus":
            n = self.env.possible_cpus()
            if n is None:
                self.unknown_here("ncpus is only known on the node (the number of its CPUs)", e.span)
            self.fn.constants[id(e)] = n  # type: ignore[assignment]
            return UINT64
        if name == "comm":
            return StrT(COMM_LEN)
        if name == "username":
            return UsernameT()
        if name in ("ppid", "pcomm"):  # curtask.real_parent.pid / .comm, as bpftrace 0.27's macros
            if not self.env.has_btf():
                self.error(f"{name} reads the current task's parent: it needs the kernel's BTF", e.span)
            field = "pid" if name == "ppid" else "comm"
            refs = []
            for member in ("real_parent", field):
                try:
                    refs.append(self.env.struct_field("struct task_struct", member))
                except LookupFailed as err:
                    self.error(f"{name}: {err}", e.span)
            self.fn.fields[id(e)] = tuple(refs)
            return IntT(32, True) if name == "ppid" else StrT(COMM_LEN)
        if name == "usermode":
            if prov in ("BEGIN", "END", "tracepoint", "kfunc", "kretfunc", "interval", "iter", "rawtracepoint"):
                self.error(f"usermode reads the registers of a kprobe, uprobe, profile or software probe, "
                           f"not of a '{prov}' probe", e.span)
            return IntT(8, False)
        if name == "cpid":
            if not self.has_cpid:
                self.error("cpid is only available when a command is run with -c", e.span)
            return UINT64
        if name in ("kstack", "ustack"):
            return StackT(name == "kstack")
        if name == "curtask":
            if self.env.has_btf():
                return PtrT(StructT("struct task_struct"), "kernel")
            return UINT64
        if name == "probe":
            return ProbeT()
        if name == "func":
            if prov not in ("kprobe", "kretprobe", "uprobe", "uretprobe", "kfunc", "kretfunc", "usdt"):
                self.error(f"the func builtin can not be used with '{prov}' probes", e.span)
            if prov in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
                # a kernel function: a ksym (bpftrace 0.27), its address known now when kallsyms is
                # (and the function serves one probe, not a wildcard's matches by cookie)
                try:
                    addr = self.env.kernel_symbol(self.fn.specs[0].func) if len(self.fn.specs) == 1 else None
                except LookupFailed:
                    addr = None
                if addr is not None:
                    self.fn.constants[id(e)] = addr
                return KsymT()
            return StrT(max(len(s.func) for s in self.fn.specs) + 1)
        if name == "retval":
            if prov not in ("kretprobe", "uretprobe", "kretfunc"):
                self.error("the retval builtin can only be used with 'kretprobe', 'uretprobe' and "
                           "'kretfunc' probes", e.span)
            if prov == "kretfunc" and self.fn.kfunc_ret is not None:
                return self.fn.kfunc_ret
            return UINT64
        if name == "args":
            if prov == "tracepoint" or prov in ("kfunc", "kretfunc"):
                return StructT("args")
            if prov == "rawtracepoint":
                if self.fn.kfunc_args is None:
                    self.error(f"the arguments of rawtracepoint:{self.fn.specs[0].target}:{self.fn.specs[0].func} "
                               f"are not in the kernel's BTF: use arg0, arg1...", e.span)
                return StructT("args")
            self.error(f"the args builtin can only be used with tracepoint and kfunc probes, not "
                       f"'{prov}'", e.span)
        if name.startswith(("arg", "sarg")) and len(name.lstrip("sarg")) > 6:
            # argNNN...: int() of thousands of digits fails, and the number ends up in the C
            self.error(f"{name[:16]}...: argument number too large", e.span)
        if name.startswith("arg"):
            if prov not in ("kprobe", "uprobe", "usdt", "rawtracepoint"):
                self.error(f"the {name} builtin can only be used with 'kprobe', 'uprobe', 'usdt' and "
                           f"'rawtracepoint' probes", e.span)
            n = int(name[3:])
            if prov == "rawtracepoint":  # the tracepoint's arguments, in a u64 array
                known = self.fn.kfunc_args
                if known is not None and n >= len(known):
                    self.error(f"{name}: tracepoint {self.fn.specs[0].func} has {len(known)} argument"
                               f"{'s' if len(known) != 1 else ''}", e.span)
                return UINT64
            if prov == "usdt" and self.fn.usdt_args is not None:
                if n >= len(self.fn.usdt_args):
                    spec = self.fn.specs[0]
                    self.error(f"{name}: USDT probe {spec.ns}:{spec.func} has {len(self.fn.usdt_args)} "
                               f"argument{'s' if len(self.fn.usdt_args) != 1 else ''}", e.span)
                return self.fn.usdt_args[n].type
            if prov == "usdt" and n >= 12:
                self.error(f"{name}: USDT probes have at most 12 arguments", e.span)
            elif prov == "usdt" and not self.defer:  # the program reads them where the note says
                spec = self.fn.specs[0]
                self.error(f"{name}: the note of USDT probe {spec.ns + ':' if spec.ns else ''}{spec.func} was not "
                           f"found in {spec.target}, so where its arguments are is unknown", e.span)
            if self.fn.convention == GO_REGABI and n >= len(GO_ARG_REGS):
                self.error(f"{name}: Go passes arg0..arg{len(GO_ARG_REGS) - 1} in registers on amd64", e.span)
            elif self.fn.convention not in (GO_REGABI, GO_STACKABI) and prov != "usdt" and n > 5:
                self.error(f"{name}: only arg0..arg5 are passed in registers on x86_64", e.span)
            return UINT64
        if name.startswith("sarg"):
            if prov not in ("kprobe", "uprobe"):
                self.error(f"the {name} builtin can only be used with 'kprobe' and 'uprobe' probes", e.span)
            return UINT64
        if name == "ctx":
            if prov != "iter":
                self.error(f"the ctx builtin is only supported in iter probes, not '{prov}'", e.span)
            return PtrT(StructT(f"struct bpf_iter__{self.fn.specs[0].func}"), "kernel")
        self.error(f"the {name} builtin is not supported", e.span)
        raise AssertionError

    def expr_Var(self, e: ast.Var) -> Type:
        slot = self.lookup(e.name)
        if slot is None:
            slot = self.reopen(e.name, None)
            if slot is not None and slot.type is not None:
                self.warning(f"{e.name} is used outside the block that assigned it: bpftrace 0.17's "
                             f"value (bpftrace 0.27 calls it undefined)", e.span)
        if (slot is None or slot.type is None) and e.name in self.deferred_vars:
            raise _Deferred()
        if slot is None or slot.type is None:
            self.error(f"Undefined or undeclared variable: {e.name}", e.span)
        self.ref(e, slot)  # type: ignore[arg-type]
        return slot.type  # type: ignore[union-attr,return-value]

    def expr_Map(self, e: ast.Map) -> Type:
        info = self.maps.get(e.name)
        if info is not None and info.value is None and info.deferred:
            raise _Deferred()
        if info is None or info.value is None:
            if not self.final and self.guess_maps:
                # not learnt yet (`@x += 1` reads @x before anything assigned it): guess an
                # integer for this round; the final round reports maps nothing ever assigned
                return INT64
            self.error(f"undefined map '{e.name}'", e.span)
        self.map_keys(e, info)  # type: ignore[arg-type]
        agg = info.value  # type: ignore[union-attr]
        if isinstance(agg, AggT):
            # count/sum/avg/min/max: the CPUs' values combined, as bpftrace 0.27 reads them
            if agg.kind not in READABLE_AGGREGATIONS:
                self.error(f"{e.name} holds {agg.kind}() values, which can only be printed, not read in an "
                           f"expression", e.span)
            ncpus = self.env.possible_cpus()
            self.fn.constants[id(e)] = ncpus or MAX_CPUS
            return UINT64 if agg.kind == "count" else INT64
        return info.value  # type: ignore[union-attr,return-value]

    def expr_Tuple(self, e: ast.Tuple) -> Type:
        elems = []
        for x in e.elems:
            t = self.check_storable(self.expr(x), x.span, x)
            elems.append(self.key_storage(t))
        return TupleT(tuple(elems))

    def expr_Binop(self, e: ast.Binop) -> Type:
        lt, rt = self.expr(e.left), self.expr(e.right)
        op = e.op
        if op in ("==", "!="):
            if isinstance(lt, StrT) or is_char_array(lt) or isinstance(rt, StrT) or is_char_array(rt):
                if (isinstance(lt, StrT) or is_char_array(lt)) and (isinstance(rt, StrT) or is_char_array(rt)):
                    return BOOL
                self.mismatch(e, lt, rt)
            if isinstance(lt, (TupleT, StackT)) or isinstance(rt, (TupleT, StackT)):
                self.error(f"the {op} operator can not be used on expressions of types {lt}, {rt}", e.span)
        if op in ("&&", "||"):
            for side, t in ((e.left, lt), (e.right, rt)):
                if not is_integer_like(t):
                    self.error(f"the {op} operator needs integer operands, not {t}", side.span)
            return BOOL
        if not (is_integer_like(lt) and is_integer_like(rt)):
            if isinstance(lt, StrT) and isinstance(rt, StrT):
                self.error(f"the {op} operator can not be used on expressions of types {lt}, {rt}", e.span)
            self.mismatch(e, lt, rt)
        if op in ("==", "!=", "<", ">", "<=", ">="):
            return BOOL
        if op in ("+", "-") and isinstance(lt, PtrT) != isinstance(rt, PtrT) and not (op == "-" and isinstance(rt, PtrT)):
            # pointer arithmetic counts elements: (int32 *)p + 1 is 4 bytes further
            ptr = lt if isinstance(lt, PtrT) else rt
            target = ptr.target  # type: ignore[union-attr]
            self.fn.constants[id(e)] = 1 if isinstance(target, VoidT) else self.type_size(target, e.span)
            return ptr
        signed = getattr(lt, "signed", False) and getattr(rt, "signed", False)
        return IntT(64, signed)

    def mismatch(self, e: ast.Binop, lt: Type, rt: Type):
        self.error(f"type mismatch for '{e.op}': comparing '{lt}' with '{rt}'", e.span)

    def expr_Unop(self, e: ast.Unop) -> Type:
        t = self.expr(e.operand)
        if e.op == "*":
            if isinstance(t, PtrT):
                if isinstance(t.target, VoidT):
                    self.error("cannot dereference a void pointer: cast it first", e.span)
                return t.target
            if isinstance(t, IntT):
                return INT64  # bpftrace reads 8 bytes at an integer address
            self.error(f"cannot dereference a value of type {t}", e.span)
        if e.op == "&":
            self.error("the address-of operator '&' is not supported", e.span)
        if not is_integer_like(t):
            self.error(f"the {e.op} operator needs an integer operand, not {t}", e.span)
        if e.op == "!":
            return BOOL
        if e.op == "-":
            return INT64
        return IntT(64, getattr(t, "signed", False))

    def expr_Cond(self, e: ast.Cond) -> Type:
        ct = self.expr(e.cond)
        if not is_integer_like(ct):
            self.error(f"invalid condition in ternary: {ct}", e.cond.span)
        a, b = self.expr(e.then), self.expr(e.orelse)
        if is_char_array(a):
            a = StrT(a.length)  # type: ignore[union-attr]
        if is_char_array(b):
            b = StrT(b.length)  # type: ignore[union-attr]
        t = common_type(storage_type(a), storage_type(b))
        if t is None or isinstance(t, (VoidT, StructT)):
            self.error(f"ternary operator branches have different types: '{a}' and '{b}'", e.span)
        return t  # type: ignore[return-value]

    def expr_IncDec(self, e: ast.IncDec) -> Type:
        target = e.target
        if isinstance(target, ast.Var):
            t = self.expr_Var(target)
            if not isinstance(t, (IntT, PtrT)):
                self.error(f"the {e.op} operator needs an integer variable, not {t}", e.span)
            if isinstance(t, PtrT):
                self.fn.constants[id(e)] = 1 if isinstance(t.target, VoidT) else self.type_size(t.target, e.span)
            self.set(target, t)
            return t
        if isinstance(target, ast.Map):
            info = self.map_info(target)
            self.map_keys(target, info)
            if info.value is None:
                info.value = INT64
                self.changed = True
            if not isinstance(info.value, IntT):
                self.error(f"the {e.op} operator needs an integer map, {target.name} holds {info.value}",
                           e.span)
            self.set(target, info.value)
            return info.value
        self.error(f"the {e.op} operator can only be applied to a variable or a map", e.span)
        raise AssertionError

    def resolve_type(self, tn: ast.TypeName, span: Span, space: Optional[str] = None) -> Type:
        """A written type: int8..uint64, bool, string[N], buffer[N], struct/union X, enum X, a typedef
        (pid_t, u64: the kernel's BTF), then its pointer and array suffixes."""
        base = tn.base
        if space is None:
            space = "user" if self.fn.user_space else "kernel"
        suffixes = list(tn.suffixes) or ["*"] * tn.pointer
        t: Type
        if base in INT_TYPE_NAMES:
            t = INT_TYPE_NAMES[base]
        elif base == "void" and suffixes[:1] == ["*"]:
            t = VOID
        elif base in ("string", "buffer", "inet"):
            size = STRLEN
            if suffixes and suffixes[0].startswith("[") and suffixes[0] != "[]":
                size = int(suffixes.pop(0)[1:-1] or STRLEN)
                if not 1 <= size <= MAX_STRING:
                    self.error(f"{base} size must be between 1 and {MAX_STRING}", span)
            t = StrT(size) if base == "string" else BufT(size) if base == "buffer" else InetT()
        elif base.startswith(("struct ", "union ")):
            exists = self.struct_exists(base)
            if exists is None:
                self.unknown_here(f"cannot resolve '{base}': kernel struct access needs the running "
                                  f"kernel's BTF (/sys/kernel/btf/vmlinux), which this host does not have", span)
            if exists is False:
                self.error(f"unknown struct '{base}' (not in the kernel's BTF)", span)
            t = StructT(base)
        elif base.startswith("enum "):
            et = self.c_structs.get(f"type:{base}") or self.env.enum_named(base[5:])
            if et is None:
                self.error(f"unknown enum '{base}'", span)
            t = et  # type: ignore[assignment]
        else:
            try:
                td = self.env.typedef(base)
            except LookupFailed as err:
                self.error(f"Unknown type: {base}", span, hint=str(err))
            if td is None:
                self.error(f"Unknown type: {base}", span)
            t = td  # type: ignore[assignment]
        for sfx in suffixes:
            if sfx == "*":
                t = PtrT(t, space)
            elif sfx == "[]":
                t = ArrayT(t, 0)  # sized by what is cast
            else:
                n = int(sfx[1:-1])
                if not 1 <= n <= 4096:
                    self.error("array size must be between 1 and 4096", span)
                t = ArrayT(t, n)
        return t

    def struct_exists(self, cname: str) -> Optional[bool]:
        if cname in self.c_structs:
            return True
        if not self.env.has_btf():
            return None
        exists = self.env.struct_exists(cname)
        return True if exists is None else exists

    def type_size(self, t: Type, span: Span) -> int:
        """C's sizeof of a language type (structs from BTF or the program's definitions)."""
        if isinstance(t, IntT):
            return max(1, t.bits // 8)
        if isinstance(t, WORD_TYPES):
            return 8
        if isinstance(t, StrT):
            return t.size
        if isinstance(t, ArrayT):
            return self.type_size(t.elem, span) * t.length
        if isinstance(t, StructT):
            if t.cname in self.c_structs:
                return self.c_structs[t.cname].size  # type: ignore[attr-defined]
            try:
                size = self.env.struct_size(t.cname)
            except LookupFailed as err:
                self.error(str(err), span)
            if size is None:
                self.unknown_here(f"the size of '{t.cname}' is only known with the kernel's BTF", span)
            return size  # type: ignore[return-value]
        if isinstance(t, (TupleT, RecordT, BufT, InetT, StackT, UsymT, TimestampT)):
            from kubectl_pytrace.lang.layout import sizeof as storage_size

            return storage_size(t)
        self.error(f"sizeof({t}) is not known", span)
        raise AssertionError

    def expr_SizeOf(self, e: ast.SizeOf) -> Type:
        """sizeof(T) or sizeof(expr): a constant; the expression is typed, never run."""
        if e.type is not None:
            t = self.resolve_type(e.type, e.type.span)
        else:
            t = self.expr(e.expr)  # type: ignore[arg-type]
            if isinstance(t, (VoidT, AggT)):
                self.error(f"sizeof() of a value of type {t}", e.span)
        self.fn.constants[id(e)] = self.type_size(t, e.span)
        return UINT64

    def expr_OffsetOf(self, e: ast.OffsetOf) -> Type:
        """offsetof(struct X, a.b): the member's byte offset, a constant."""
        t = self.resolve_type(e.type, e.type.span)
        if not isinstance(t, StructT):
            self.error(f"offsetof() needs a struct or union type, not {t}", e.type.span)
        offset, cur = 0, t
        for name in e.path:
            if not isinstance(cur, StructT):
                self.error(f"'{name}': {cur} is not a struct", e.span)
            if cur.cname in self.c_structs:
                ref = self.c_structs[cur.cname].field(name)  # type: ignore[attr-defined]
                if ref is None:
                    self.error(f"{cur.cname} has no member '{name}'", e.span)
            else:
                try:
                    ref = self.env.struct_field(cur.cname, name)
                except LookupFailed as err:
                    self.error(str(err), e.span)
                if ref is None:
                    self.unknown_here(f"offsetof({cur.cname}, {name}) is only known with the kernel's BTF", e.span)
            offset += ref.offset  # type: ignore[union-attr]
            cur = ref.type  # type: ignore[union-attr]
        self.fn.constants[id(e)] = offset
        return UINT64

    def expr_Cast(self, e: ast.Cast) -> Type:
        t = self.expr(e.expr)
        space = t.space if isinstance(t, PtrT) else None
        target = self.resolve_type(e.type, e.type.span, space)
        if isinstance(target, StructT):
            self.error(f"cannot cast to '{target}': cast to a pointer ('{target} *')", e.type.span)
        if isinstance(target, ArrayT):
            return self.array_cast(e, t, target)
        if isinstance(target, (IntT, PtrT)):
            if not is_integer_like(t):
                what = "a pointer" if isinstance(target, PtrT) else str(target)
                self.error(f"cannot cast a value of type {t} to {what}", e.span)
            return target
        self.error(f"cannot cast to '{target}'", e.type.span)
        raise AssertionError

    def array_cast(self, e: ast.Cast, t: Type, target: ArrayT) -> Type:
        """(uint8[8])12345: an integer's bytes as an array (and back: (uint64)$arr)."""
        if not isinstance(target.elem, IntT):
            self.error(f"cannot cast to an array of {target.elem}", e.type.span)
        size = t.bits // 8 if isinstance(t, IntT) else 8
        elem = max(1, target.elem.bits // 8)  # type: ignore[union-attr]
        n = target.length or size // elem
        if not isinstance(t, IntT) or n * elem != size:
            self.error(f"cannot cast {t} to {target.elem}[{target.length or n}]: the sizes differ", e.span)
        return ArrayT(target.elem, n)

    def expr_FieldAccess(self, e: ast.FieldAccess) -> Type:
        base = self.expr(e.expr)
        if isinstance(base, TupleT):
            if e.arrow or not e.name.isdigit():
                self.error(f"tuples are indexed with .N, like $t.0", e.span)
            if len(e.name) > 6 or int(e.name) >= len(base.elems):
                self.error(f"tuple index {e.name} out of range for a tuple of {len(base.elems)} elements", e.span)
            i = int(e.name)
            return base.elems[i]
        if isinstance(base, RecordT):  # a struct copied whole: its member, from the copy
            for member in base.members:
                if member[0] == e.name:
                    self.fn.fields[id(e)] = member
                    return member[1]
            self.error(f"{base.cname} has no member '{e.name}'", e.span)
        if isinstance(e.expr, ast.Builtin) and e.expr.name == "args":
            return self.args_field(e)
        # `.` on a pointer to a struct reads through it, `->` is the same (bpftrace 0.27; 0.17 wanted
        # `->` for pointers and `.` for structs)
        if isinstance(base, PtrT) and isinstance(base.target, StructT):
            struct, space = base.target, base.space
        elif isinstance(base, StructT):
            struct, space = base, base.space
        else:
            self.error(f"cannot access field '{e.name}' on a value of type '{base}'", e.span)
        if struct.cname in self.c_structs:
            ref = self.c_structs[struct.cname].field(e.name)  # type: ignore[attr-defined]
            if ref is None:
                self.error(f"{struct.cname} has no member '{e.name}'", e.span)
        else:
            try:
                ref = self.env.struct_field(struct.cname, e.name)
            except LookupFailed as err:
                self.error(str(err), e.span)
        if ref is None:
            self.unknown_here(f"cannot resolve field '{e.name}' of '{struct}': the running kernel's BTF "
                              f"is not available", e.span)
        self.fn.fields[id(e)] = ref
        t = ref.type  # type: ignore[union-attr]
        if space == "user":  # what a user struct holds is in user memory, its pointers point there
            if isinstance(t, StructT):
                t = StructT(t.cname, "user")
            elif isinstance(t, PtrT):
                t = PtrT(t.target, "user")
        return t

    def args_field(self, e: ast.FieldAccess) -> Type:
        if self.fn.provider == "tracepoint":
            fields = self.fn.tp_fields
            if fields is None:
                self.unknown_here("tracepoint fields are unknown here (no tracefs)", e.span)
            f = fields.get(e.name)  # type: ignore[union-attr]
            if f is None:
                spec = self.fn.specs[0]
                names = ", ".join(sorted(fields))  # type: ignore[arg-type]
                self.error(f"tracepoint {spec.target}:{spec.func} has no field '{e.name}'", e.span,
                           hint=f"its fields are: {names}")
            self.fn.fields[id(e)] = f
            return f.type  # type: ignore[union-attr]
        # kfunc / kretfunc
        if self.fn.kfunc_args is None:
            self.unknown_here(f"the arguments of {self.fn.specs[0].func}() are unknown here (no BTF)", e.span)
        for i, (name, t) in enumerate(self.fn.kfunc_args or []):
            if name == e.name:
                self.fn.fields[id(e)] = (i, t)
                return t
        self.error(f"{self.fn.specs[0].func}() has no argument named '{e.name}'", e.span)
        raise AssertionError

    def expr_Index(self, e: ast.Index) -> Type:
        base = self.expr(e.expr)
        if isinstance(base, TupleT):  # $t[1]: a constant index, as $t.1
            self.int_expr(e.index, "an index")
            i = const_value(e.index)
            if i is None:
                self.error("a tuple's index must be a constant integer expression", e.index.span)
            if not 0 <= i < len(base.elems):  # type: ignore[operator]
                self.error(f"tuple index {i} out of range for a tuple of {len(base.elems)} elements", e.index.span)
            self.fn.constants[id(e)] = i  # type: ignore[assignment]
            return base.elems[i]  # type: ignore[index]
        self.int_expr(e.index, "an index")
        if isinstance(base, StrT):  # "/"[0]: a character
            return IntT(8, True)
        if isinstance(base, PtrT) and not isinstance(base.target, (VoidT, StructT)):
            return base.target
        if isinstance(base, ArrayT):
            return base.elem
        self.error(f"cannot index a value of type '{base}'", e.span)
        raise AssertionError

    # ---- calls --------------------------------------------------------------------------------
    def expr_Call(self, c: ast.Call) -> Type:
        if c.name in AGGREGATIONS:
            self.error(f"{c.name}() should be directly assigned to a map", c.span)
        method = getattr(self, "call_" + c.name, None)
        if method is None:
            if c.name in UNSUPPORTED:
                self.error(f"function '{c.name}' is not supported by kubectl-pytrace: {UNSUPPORTED[c.name]}",
                           c.name_span)
            self.error(f"unknown function '{c.name}'", c.name_span)
        return method(c)  # type: ignore[misc]

    def nargs(self, c: ast.Call, lo: int, hi: Optional[int] = None):
        hi = lo if hi is None else hi
        if not lo <= len(c.args) <= hi:
            if lo == hi:
                self.arg_count_error(c, lo)
            self.error(f"{c.name}() takes {lo} to {hi} arguments ({len(c.args)} provided)", c.span)

    def call_printf(self, c: ast.Call) -> Type:
        if not c.args or not isinstance(c.args[0], ast.String):
            self.error(f"{c.name}() needs a string literal as its first argument", c.span)
        fmt_node: ast.String = c.args[0]  # type: ignore[assignment]
        self.set(fmt_node, StrT(len(fmt_node.value) + 1))
        try:
            fmt = printf_format.parse_format(fmt_node.value.decode("utf-8", "surrogateescape"))
        except printf_format.FormatError as err:
            self.error(f"{c.name}: {err.message}", fmt_node.span)
        kinds: List[Optional[Tuple[str, str]]] = []
        for a in c.args[1:]:
            try:
                t = self.expr(a)
            except _Deferred:  # its type is the node's to know; the number of arguments is not
                kinds.append(None)
                continue
            if not isinstance(t, VoidT):
                self.check_storable(t, a.span)
            kinds.append(_printf_kind(t))
        try:
            printf_format.check_args(fmt, [k or printf_format.any_kind(fmt, i) for i, k in enumerate(kinds)],
                                     c.name)
        except printf_format.FormatError as err:
            self.error(err.message, c.span)
        if None in kinds:
            raise _Deferred()
        self.fn.formats[id(c)] = fmt
        return VOID

    # cat("/proc/%d/status", pid): the file's contents, printed by user space (as bpftrace, at most
    # 10 KiB); the name is formatted as printf formats
    call_cat = call_printf

    def call_print(self, c: ast.Call) -> Type:
        self.nargs(c, 1, 3)
        a = c.args[0]
        if isinstance(a, ast.Map) and not a.keys:
            info = self.maps.get(a.name)
            self.check_map_known(info, a)
            self.set(a, info.value)  # type: ignore[arg-type,union-attr]
            for extra in c.args[1:]:
                if ast.const_int(extra) is None or ast.const_int(extra) < 0:  # type: ignore[operator]
                    self.error("print(@map, top, div): top and div must be non-negative integer literals",
                               extra.span)
                self.set(extra, INT64)
            return VOID
        if len(c.args) > 1:
            self.error("print() of a value takes one argument", c.span)
        self.check_storable(self.expr(a), a.span, a, MAX_PRINTED_RECORD)
        return VOID

    def call_time(self, c: ast.Call) -> Type:
        self.nargs(c, 0, 1)
        if c.args:
            if not isinstance(c.args[0], ast.String):
                self.error("time() needs a string literal (a strftime format)", c.args[0].span)
            self.set(c.args[0], StrT(len(c.args[0].value) + 1))  # type: ignore[union-attr]
        return VOID

    def call_nsecs(self, c: ast.Call) -> Type:
        """nsecs(monotonic | boot | tai | sw_tai): that clock's time; nsecs alone is the boot clock."""
        self.nargs(c, 0, 1)
        mode = "boot"
        if c.args:
            a = c.args[0]
            if not isinstance(a, ast.Identifier) or a.name not in TIMESTAMP_MODES:
                self.error(f"nsecs() takes a clock: {', '.join(TIMESTAMP_MODES)}", a.span)
            mode = a.name  # type: ignore[union-attr]
            self.set(a, VOID)
        self.fn.formats[id(c)] = mode  # type: ignore[assignment]
        return UINT64

    def call_strftime(self, c: ast.Call) -> Type:
        """strftime(fmt, nsecs): a time, formatted by user space (%f: microseconds, %k: ns, %l: ms)."""
        self.nargs(c, 2)
        fmt = c.args[0]
        if not isinstance(fmt, ast.String):
            self.error("strftime() needs a string literal as its format", fmt.span)
        self.set(fmt, StrT(len(fmt.value) + 1))  # type: ignore[union-attr]
        self.int_expr(c.args[1], "strftime() timestamp")
        ts = c.args[1]
        mode = "boot"
        if isinstance(ts, ast.Call) and ts.name == "nsecs" and ts.args and isinstance(ts.args[0], ast.Identifier):
            mode = ts.args[0].name
        if mode == "monotonic":
            self.error("strftime() can not take a monotonic timestamp", c.span)
        if ast.const_int(ts) is not None and ast.const_int(ts) < 0:  # type: ignore[operator]
            self.error("strftime() does not accept negative timestamps", c.span)
        self.fn.formats[id(c)] = "tai" if mode in ("tai", "sw_tai") else "boot"  # type: ignore[assignment]
        return TimestampT(fmt.value.decode("utf-8", "surrogateescape"))  # type: ignore[union-attr]

    def call_getopt(self, c: ast.Call) -> Type:
        """getopt("name"[, default[, "description"]]): the named parameter --name[=value] given after
        `--`, typed by its default (a bool without one), fixed when the program compiles."""
        self.nargs(c, 1, 3)
        name = c.args[0]
        if not isinstance(name, ast.String):
            self.error("getopt() needs the parameter's name as a string literal", name.span)
        self.set(name, StrT(len(name.value) + 1))  # type: ignore[union-attr]
        key = name.value.decode("utf-8", "surrogateescape")  # type: ignore[union-attr]
        default: ast.Expr = c.args[1] if len(c.args) > 1 else ast.Bool(False, c.span)
        if len(c.args) == 3 and not isinstance(c.args[2], ast.String):
            self.error("getopt()'s description must be a string literal", c.args[2].span)
        if len(c.args) == 3:
            self.set(c.args[2], StrT(len(c.args[2].value) + 1))  # type: ignore[union-attr]
        given = self.shared.named.get(key)
        if isinstance(default, ast.Bool):
            self.set(default, BOOL)
            value: object = default.value
            if given is not None:
                if given.lower() in ("", "true", "1"):
                    value = True
                elif given.lower() in ("false", "0"):
                    value = False
                else:
                    self.error(f"--{key}={given}: expects a boolean (true, false, 1 or 0)", c.span)
            self.fn.constants[id(c)] = int(value)  # type: ignore[assignment]
            return BOOL
        if isinstance(default, ast.String):
            self.set(default, StrT(len(default.value) + 1))
            text = default.value if given is None else given.encode("utf-8", "surrogateescape")
            self.fn.constants[id(c)] = text  # type: ignore[assignment]
            return StrT(min(len(text) + 1, MAX_STRING))
        n = const_value(default)
        if n is None:
            self.error("getopt()'s default must be a literal: an integer, a string or a bool", default.span)
        self.expr(default)
        if given is not None:
            try:
                n = int(given, 0)
            except ValueError:
                self.error(f"--{key}={given}: expects an integer", c.span)
        self.fn.constants[id(c)] = n  # type: ignore[assignment]
        return INT64 if n >= -(1 << 63) and n < 1 << 63 else UINT64  # type: ignore[operator]

    def call_exit(self, c: ast.Call) -> Type:
        if self.for_loops:
            self.error("exit() is not allowed in a for-loop (it returns from the probe, as 'return')", c.span)
        self.nargs(c, 0, 1)
        if c.args:
            t = self.expr(c.args[0])
            if not is_integer_like(t):
                self.error(f"exit() only supports int arguments ({'string' if isinstance(t, StrT) else t} provided)",
                           c.span)
        return VOID

    def call_len(self, c: ast.Call) -> Type:
        """len(@map): its number of elements; len(ustack), len(kstack): the number of frames."""
        if len(c.args) != 1:
            self.error(f"len() takes one argument ({len(c.args)} provided)", c.span)
        a = c.args[0]
        if isinstance(a, ast.Map) and not a.keys:
            info = self.maps.get(a.name)
            self.check_map_known(info, a)
            if info.key is None:  # type: ignore[union-attr]
                self.error("call to len() expects a map with explicit keys (non-scalar map)", c.span)
            if isinstance(info.value, AggT) and info.value.kind in ("hist", "lhist", "tseries"):  # type: ignore[union-attr]
                self.error(f"len() of a {info.value.kind}() map is not supported", c.span)  # type: ignore[union-attr]
            self.set(a, info.value)  # type: ignore[arg-type,union-attr]
            self.fn.loops[id(c)] = info
            return INT64
        t = self.expr(a)
        if not isinstance(t, StackT):
            self.error("call to len() expects a map, ustack, or kstack", c.span)
        return INT64

    def string_arg(self, c: ast.Call, a: ast.Expr) -> Type:
        """A string, a char array or a pointer to chars (strlen(), strstr(), strcontains())."""
        t = self.expr(a)
        if not (isinstance(t, StrT) or is_char_array(t) or (isinstance(t, PtrT) and isinstance(t.target, IntT)
                                                            and t.target.bits == 8)):
            self.error(f"{c.name}() expects a string, a char array or a char pointer, not {t}", a.span)
        return t

    def call_strlen(self, c: ast.Call) -> Type:
        self.nargs(c, 1)
        self.string_arg(c, c.args[0])
        return UINT64

    def call_strstr(self, c: ast.Call) -> Type:
        """strstr(haystack, needle): the index of needle in haystack, or -1 (bpftrace 0.27's
        documented value: its kfunc path returns -ENOENT, -2); strcontains(): strstr() >= 0."""
        self.nargs(c, 2)
        for a in c.args:
            self.string_arg(c, a)
        return INT64 if c.name == "strstr" else BOOL

    call_strcontains = call_strstr

    def call_memcmp(self, c: ast.Call) -> Type:
        """memcmp(left, right, n): the difference of the first bytes (signed) that differ, or 0."""
        self.nargs(c, 3)
        sizes = []
        for a in c.args[:2]:
            t = self.expr(a)
            if isinstance(t, (VoidT, AggT)):
                self.error(f"memcmp() compares values in memory, not {t}", a.span)
            sizes.append(self.type_size(t, a.span) if not isinstance(t, PtrT) else 8)
        self.int_expr(c.args[2], "memcmp() count")
        n = const_value(c.args[2])
        if n is None or n < 0:
            self.error("memcmp() count must be a non-negative constant", c.args[2].span)
        if n > min(sizes):  # type: ignore[operator]
            self.error(f"memcmp() count {n} is larger than the values compared ({min(sizes)} bytes)", c.args[2].span)
        self.fn.constants[id(c)] = n  # type: ignore[assignment]
        return INT64

    def call_errorf(self, c: ast.Call) -> Type:
        """errorf(fmt, ...), warnf(fmt, ...): a message with the call's location (stderr in text
        mode, a record in JSON); the program goes on."""
        self.call_printf(c)
        self.fn.locations[id(c)] = self.location(c.span)
        return VOID

    call_warnf = call_errorf

    def location(self, span: Span) -> Tuple[str, int, int, str]:
        line, col, _end, head = location(self.diags.source, span, exclusive=True)
        return (self.diags.source.filename, line, col, head)

    def call_assert(self, c: ast.Call) -> Type:
        """assert(cond, "msg"): when cond is false, errorf("assert failed: msg") and exit(1)."""
        self.nargs(c, 2)
        self.int_expr(c.args[0], "assert() condition")
        self.literal(c.args[1], "assert() message must be a string literal")
        self.fn.locations[id(c)] = self.location(c.span)
        return VOID

    def call_static_assert(self, c: ast.Call) -> Type:
        """static_assert(cond, "msg"): cond is a constant; false fails the compilation with msg."""
        self.nargs(c, 2)
        msg = self.literal(c.args[1], "static_assert() message must be a string literal")
        self.int_expr(c.args[0], "static_assert() condition")
        v = const_value(c.args[0], self.fn.constants)
        if v is None:
            self.error("static_assert() condition must be a constant expression", c.args[0].span)
        if not v:
            self.error(msg, c.span)
        return VOID

    def call_str(self, c: ast.Call) -> Type:
        self.nargs(c, 1, 2)
        t = self.expr(c.args[0])
        if isinstance(t, StrT):
            size = t.size
        elif is_char_array(t):
            size = t.length + 1  # type: ignore[union-attr]
        elif is_integer_like(t):
            size = self.strlen
        else:
            self.error(f"str() expects a pointer or an integer address, not {t}", c.args[0].span)
        if len(c.args) == 2:
            self.int_expr(c.args[1], "str() length")
            n = ast.const_int(c.args[1])
            if n is not None:
                if n < 0:
                    self.error("str() length must not be negative", c.args[1].span)
                size = min(size, n)  # bytes with the NUL: str(s, 3) is two characters
        return StrT(max(1, size))

    def call_gostr(self, c: ast.Call) -> Type:
        """gostr(ptr, len): a Go string (or []byte), whose pointer and length come in two registers
        (arg0, arg1) and whose bytes have no NUL after them: exactly len bytes, cut at the string
        size (an extension: bpftrace has no Go strings; str(ptr, len) would keep len - 1 bytes)."""
        self.nargs(c, 2)
        t = self.expr(c.args[0])
        if not is_integer_like(t):
            self.error(f"gostr() expects the string's pointer, not {t}", c.args[0].span)
        self.int_expr(c.args[1], "gostr() length")
        return StrT(self.strlen)

    def call_strerror(self, c: ast.Call) -> Type:
        """strerror(errno), syscall_name(nr), signal_name(sig): a string[64] from a table of the
        x86_64 ABI that the program carries (lang/abi.py), as bpftrace 0.27."""
        self.nargs(c, 1)
        self.int_expr(c.args[0], f"{c.name}() argument")
        return StrT(64)

    call_syscall_name = call_strerror
    call_signal_name = call_strerror

    def call_pid(self, c: ast.Call) -> Type:
        """pid(curr_ns | init), tid(...): in the tracer's pid namespace (as pid) or the initial one."""
        self.nargs(c, 1)
        a = c.args[0]
        if not isinstance(a, ast.Identifier) or a.name not in ("curr_ns", "init"):
            self.error(f"{c.name}() takes a pid namespace: curr_ns or init", a.span)
        return UINT64

    call_tid = call_pid

    def call_comm(self, c: ast.Call) -> Type:
        self.error("comm(pid) is not supported: it needs a kfunc call (bpf_task_from_pid), which "
                   "kubectl-pytrace does not make", c.span)
        raise AssertionError

    def literal(self, a: ast.Expr, message: str) -> str:
        """The text of an argument that must be a string literal (else `message` is the error)."""
        if not isinstance(a, ast.String):
            self.error(message, a.span)
        self.set(a, StrT(len(a.value) + 1))  # type: ignore[union-attr]
        return a.value.decode("utf-8", "surrogateescape")  # type: ignore[union-attr]

    def check_unsafe(self, c: ast.Call) -> None:
        if not self.shared.unsafe:
            self.error(f"{c.name}() is an unsafe function being used in safe mode", c.span)

    def call_system(self, c: ast.Call) -> Type:
        """system(fmt, ...): user space runs the command (a shell's) and prints what it prints."""
        self.check_unsafe(c)
        return self.call_printf(c)

    def call_signal(self, c: ast.Call) -> Type:
        """signal(9), signal("KILL"), signal("SIGKILL"): sent to the current process."""
        self.check_unsafe(c)
        self.nargs(c, 1)
        if self.fn.provider in ("BEGIN", "END", "interval", "iter"):
            self.error(f"signal() can not be used for this probetype {self.fn.specs[0].name().split(':')[0]}",
                       c.span)
        a = c.args[0]
        if isinstance(a, ast.String):
            name = a.value.decode("utf-8", "replace")
            self.set(a, StrT(len(a.value) + 1))
            num = SIGNALS.get(name[3:] if name.startswith("SIG") else name)
            if num is None:
                self.error(f"Invalid string for signal: {name}", a.span)
            self.fn.constants[id(c)] = num  # type: ignore[assignment]
        else:
            self.int_expr(a, "signal() argument")
            n = const_value(a)
            if n is not None and not 1 <= n <= 64:
                self.error(f"{n} is not a valid signal (1 to 64)", a.span)
        return VOID

    def call_override(self, c: ast.Call) -> Type:
        """override(rc): the probed kernel function returns rc without running (kprobes only)."""
        self.check_unsafe(c)
        self.nargs(c, 1)
        spec = self.fn.specs[0]
        if spec.provider != "kprobe":
            self.error(f"override() can only be used with kprobes, not '{spec.provider}'", c.span)
        if spec.is_fentry("fentry" if self.env.kprobes_available is False else "kprobe"):
            self.error("override() needs kprobes, which this kernel does not have", c.span)
        self.int_expr(c.args[0], "override() return value")
        return VOID

    def call_kptr(self, c: ast.Call) -> Type:
        """kptr(p), uptr(p): p, as a pointer into kernel (user) memory."""
        self.nargs(c, 1)
        t = self.expr(c.args[0])
        if not is_integer_like(t):
            self.error(f"{c.name}() expects a pointer or an address, not {t}", c.args[0].span)
        space = "kernel" if c.name == "kptr" else "user"
        if isinstance(t, PtrT):
            return PtrT(t.target, space)
        return t

    call_uptr = call_kptr

    def call_reg(self, c: ast.Call) -> Type:
        """reg("ip"): a register of the probed context (pt_regs, x86-64 names)."""
        self.nargs(c, 1)
        a = c.args[0]
        name = self.literal(a, "reg() needs a string literal: a register's name")
        prov = self.fn.provider
        if prov not in ("kprobe", "kretprobe", "uprobe", "uretprobe", "usdt", "profile", "software", "hardware") \
                or self.fn.specs[0].is_fentry("fentry" if self.env.kprobes_available is False else "kprobe"):
            self.error(f'reg can not be used with "{self.fn.specs[0].name().split(":")[0]}" probes', c.span)
        if name not in X86_REGS:
            self.error(f"'{name}' is not a register on x86_64 (one of {', '.join(X86_REGS)})", a.span)
        self.fn.constants[id(c)] = X86_REGS.index(name)
        return UINT64

    def call_uaddr(self, c: ast.Call) -> Type:
        """uaddr("sym"): the address of a symbol of the probed binary, typed by its size."""
        self.nargs(c, 1)
        name = self.literal(c.args[0], "uaddr() needs a string literal: a symbol's name")
        spec = self.fn.specs[0]
        if spec.provider not in ("uprobe", "uretprobe", "usdt"):
            self.error(f"uaddr can only be used with uprobes and usdt probes, not '{spec.provider}'", c.span)
        try:
            found = self.env.user_symbol(spec.target, name)
        except LookupFailed as err:
            self.error(f'uaddr("{name}"): {err}', c.span)
        if found is None:
            self.unknown_here(f'uaddr("{name}") is only known on the node (its binaries)', c.span)
        addr, size, pie = found  # type: ignore[misc]
        here = None
        if pie:  # loaded anywhere: the symbol is as far from the probed function as in the file
            if spec.provider != "uprobe" or spec.address is not None or len(self.fn.specs) > 1:
                self.error(f'uaddr("{name}") in a position-independent binary works in a uprobe on one '
                           f'function (its address then tells where the binary is loaded)', c.span)
            try:
                probe = self.env.user_symbol(spec.target, spec.func)
            except LookupFailed as err:
                self.error(f'uaddr("{name}"): {err}', c.span)
            here = probe[0]  # type: ignore[index]
        self.fn.constants[id(c)] = (addr, here)  # type: ignore[assignment]
        bits = size * 8 if size in (1, 2, 4, 8) else 64
        return PtrT(IntT(bits, False), "user")

    def call_cgroup_path(self, c: ast.Call) -> Type:
        """cgroup_path(id [, "filter"]): the id, printed as its paths by user space."""
        self.nargs(c, 1, 2)
        self.int_expr(c.args[0], "cgroup_path() cgroup id")
        pattern = "*"
        if len(c.args) == 2:
            pattern = self.literal(c.args[1], "cgroup_path()'s filter must be a string literal")
        return CgroupPathT(pattern)

    def call_cgroupid(self, c: ast.Call) -> Type:
        """cgroupid("/sys/fs/cgroup/..."): the cgroup's id, known now."""
        self.nargs(c, 1)
        path = self.literal(c.args[0], "cgroupid() needs a string literal: a cgroup's path")
        try:
            ident = self.env.cgroup_id(path)
        except LookupFailed as err:
            self.error(f"Failed to get `cgroupid` for path: \"{path}\": {err}", c.span)
        if ident is None:
            self.unknown_here("cgroupid() is only known on the node (its cgroup file system)", c.span)
        self.fn.constants[id(c)] = ident  # type: ignore[assignment]
        return UINT64

    def call_macaddr(self, c: ast.Call) -> Type:
        """macaddr(char[6] or an address): six bytes, printed AA:BB:CC:DD:EE:FF."""
        self.nargs(c, 1)
        if isinstance(c.args[0], ast.String):
            self.error("macaddr() does not support literal string arguments", c.span)
        t = self.expr(c.args[0])
        if isinstance(t, ArrayT):
            if t.length * max(1, getattr(t.elem, "bits", 8) // 8) < 6:
                self.error(f"macaddr() needs at least 6 bytes, not {t}", c.args[0].span)
        elif isinstance(t, StrT):
            if t.size < 6:
                self.error(f"macaddr() needs at least 6 bytes, not {t}", c.args[0].span)
        elif not is_integer_like(t):
            self.error(f"macaddr() expects an array or an address, not {t}", c.args[0].span)
        return MacT()

    def call_strncmp(self, c: ast.Call) -> Type:
        self.nargs(c, 3)
        for a in c.args[:2]:
            t = self.expr(a)
            if not (isinstance(t, StrT) or is_char_array(t)):
                self.error(f"strncmp() compares strings, not {t}", a.span)
        n = ast.const_int(c.args[2])
        if n is None or n < 0:
            self.error("strncmp() length must be a non-negative integer literal", c.args[2].span)
        self.set(c.args[2], INT64)
        return INT64

    def call_join(self, c: ast.Call) -> Type:
        """join(char *arr[] [, sep]): the strings of a NULL-terminated array, printed joined."""
        self.nargs(c, 1, 2)
        t = self.expr(c.args[0])
        if not is_integer_like(t):
            self.error(f"join() expects an array of strings (char *[]), not {t}", c.args[0].span)
        if len(c.args) == 2:
            sep = c.args[1]
            if not isinstance(sep, ast.String):
                self.error("join() separator must be a string literal", sep.span)
            self.set(sep, StrT(len(sep.value) + 1))  # type: ignore[union-attr]
        return VOID

    def call_kaddr(self, c: ast.Call) -> Type:
        """The address of a kernel symbol, resolved now (bpftrace: "compile time")."""
        self.nargs(c, 1)
        name = self.literal(c.args[0], "kaddr() needs a string literal: the name of a kernel symbol")
        try:
            addr = self.env.kernel_symbol(name)
        except LookupFailed as err:
            self.error(f"kaddr(\"{name}\"): {err}", c.span)
        if addr is None:
            self.unknown_here(f"kaddr(\"{name}\"): the kernel's symbols are only known on the node", c.span)
        self.fn.constants[id(c)] = addr  # type: ignore[assignment]
        return UINT64

    def call_buf(self, c: ast.Call) -> Type:
        """buf(data, length): raw bytes (printed with %r); the length of an array is its size."""
        self.nargs(c, 1, 2)
        t = self.expr(c.args[0])
        if len(c.args) == 1:
            # char arrays are strings to bpftrace; u8 arrays (addresses) are arrays
            string = isinstance(t, StrT) or (is_char_array(t) and t.elem.signed)  # type: ignore[union-attr]
            if not isinstance(t, ArrayT) or string:
                what = "string" if string else str(t)
                self.error(f"buf() expects a length argument for non-array type {what}", c.span)
            size = t.length * max(1, getattr(t.elem, "bits", 8) // 8)  # type: ignore[union-attr]
        else:
            if not (is_integer_like(t) or isinstance(t, (ArrayT, StrT))):
                self.error(f"buf() reads from an address, not from a value of type {t}", c.args[0].span)
            self.int_expr(c.args[1], "buf() length")
            n = ast.const_int(c.args[1])
            if n is not None and n < 0:
                self.error("buf() length must not be negative", c.args[1].span)
            size = self.strlen if n is None else n
            if isinstance(t, StrT):  # buf("abc", 2), buf($s, n): the string's own bytes
                size = t.size if n is None else min(n, t.size)
        if size > self.strlen:
            self.warning(f"buf() length is too long and will be shortened to {self.strlen} bytes "
                         f"(see max_strlen)", c.span)
            size = self.strlen
        return BufT(max(1, size))

    def call_bswap(self, c: ast.Call) -> Type:
        """Byte order reversed within the argument's width: uint8/16/32/64 bswap(n)."""
        self.nargs(c, 1)
        t = self.int_expr(c.args[0], "bswap() argument")
        return IntT(t.bits if isinstance(t, IntT) else 64, False)

    def call_ksym(self, c: ast.Call) -> Type:
        self.nargs(c, 1)
        self.int_expr(c.args[0], "ksym() argument")
        return KsymT()

    def call_usym(self, c: ast.Call) -> Type:
        self.nargs(c, 1)
        self.int_expr(c.args[0], "usym() argument")
        return UsymT()

    def _stack(self, c: ast.Call, kernel: bool) -> Type:
        self.nargs(c, 0, 2)
        limit, mode = 127, "bpftrace"
        for a in c.args:
            if isinstance(a, ast.Identifier):
                if a.name not in STACK_MODES:
                    self.error(f"unknown stack mode '{a.name}': use one of {', '.join(STACK_MODES)}", a.span)
                mode = a.name
                self.set(a, VOID)
                continue
            n = ast.const_int(a)
            if n is None or not 1 <= n <= 1024:
                self.error(f"{c.name}() limit must be an integer literal between 1 and 1024", a.span)
            limit = min(n, 127)  # type: ignore[type-var]
            self.set(a, INT64)
        return StackT(kernel, limit, mode)

    def call_kstack(self, c: ast.Call) -> Type:
        return self._stack(c, True)

    def call_ustack(self, c: ast.Call) -> Type:
        return self._stack(c, False)

    def call_ntop(self, c: ast.Call) -> Type:
        self.nargs(c, 1, 2)
        if len(c.args) == 2:
            self.int_expr(c.args[0], "ntop() address family")
        t = self.expr(c.args[-1])
        if not (is_integer_like(t) or isinstance(t, ArrayT)):
            self.error(f"ntop() expects an integer IPv4 address or a 4/16-byte array, not {t}", c.args[-1].span)
        if isinstance(t, ArrayT) and t.elem.bits * t.length not in (32, 128):  # type: ignore[union-attr]
            self.error(f"ntop() expects a 4 or 16-byte address, not {t}", c.args[-1].span)
        return InetT()

    def _map_arg(self, c: ast.Call, keyed: Optional[bool]) -> MapInfo:
        self.nargs(c, 1)
        m = c.args[0]
        if not isinstance(m, ast.Map):
            self.error(f"{c.name}() expects a map argument", m.span)
        info = self.maps.get(m.name)  # type: ignore[union-attr]
        self.check_map_known(info, m)  # type: ignore[arg-type]
        if keyed is False and m.keys:  # type: ignore[union-attr]
            self.error(f"{c.name}() takes a whole map, without [keys]", m.span)
        if keyed:
            self.map_keys(m, info)  # type: ignore[arg-type]
        self.set(m, info.value)  # type: ignore[union-attr,arg-type]
        return info  # type: ignore[return-value]

    def keyed_access(self, c: ast.Call) -> Tuple[ast.Map, MapInfo]:
        """delete()/has_key() in both spellings: (@m, key) and bpftrace 0.17's (@m[key]); the map
        access they make, kept on the call (its types are looked up by node)."""
        if not 1 <= len(c.args) <= 2:
            self.error(f"{c.name}() takes a map and a key: {c.name}(@map, key)", c.span)
        m = c.args[0]
        if not isinstance(m, ast.Map):
            self.error(f"{c.name}() expects a map as its first argument", m.span)
        if len(c.args) == 2 and m.keys:  # type: ignore[union-attr]
            self.error(f"{c.name}(@map, key): the map without [keys]", m.span)
        info = self.maps.get(m.name)  # type: ignore[union-attr]
        self.check_map_known(info, m)  # type: ignore[arg-type]
        access = getattr(c, "map_access", None)
        if access is None:
            keys = c.args[1:] if len(c.args) == 2 else m.keys  # type: ignore[union-attr]
            access = ast.Map(m.name, list(keys), m.span)  # type: ignore[union-attr]
            c.map_access = access  # type: ignore[attr-defined]
        self.set(m, info.value)  # type: ignore[union-attr,arg-type]
        if access.keys or info.key is not None:  # type: ignore[union-attr]
            self.map_keys(access, info)  # type: ignore[arg-type]
        return access, info  # type: ignore[return-value]

    def call_delete(self, c: ast.Call) -> Type:
        """delete(@m, key) / delete(@m[key]) / delete(@scalar): true when the key was there."""
        access, info = self.keyed_access(c)
        if isinstance(info.value, AggT) and info.value.kind in ("hist", "lhist"):
            self.error(f"delete() of a key of a {info.value.kind}() map is not supported: clear() it", c.span)
        return BOOL

    def call_has_key(self, c: ast.Call) -> Type:
        access, info = self.keyed_access(c)
        if info.key is None:
            self.error("call to has_key() expects a map with explicit keys (non-scalar map)", c.span)
        return BOOL

    def call_clear(self, c: ast.Call) -> Type:
        self._map_arg(c, False)
        return VOID

    def call_zero(self, c: ast.Call) -> Type:
        self._map_arg(c, False)
        return VOID


def _printf_kind(t: Type) -> Tuple[str, str]:
    """(kind, bpftrace's type name) of a printf argument, as printf_format.check_args wants it."""
    if isinstance(t, VoidT):
        return ("none", "none")
    if isinstance(t, (IntT, PtrT)):
        return ("integer", str(t))
    if isinstance(t, BufT):
        return ("buffer", str(t))
    if is_char_array(t):
        return ("other", f"string[{t.length}]")  # type: ignore[union-attr]
    return ("other", str(t))


@dataclass
class Shared:
    """What every Checker of one program reads: the environment, parameters, config, definitions."""

    env: Environment
    params: List[str]  # positional: $1, $2...
    named: Dict[str, str]  # named, for getopt(): --name=value (the value "" for --name)
    has_cpid: bool
    predefined: Dict[str, int]
    includes: Tuple[str, ...]
    config: Config
    c_structs: Dict[str, object]
    map_decls: Dict[str, ast.MapDecl]
    unsafe: bool = False  # --unsafe
    defer: bool = False  # far from the node: leave what only it knows unchecked (check_program)


def split_params(params: List[str]) -> Tuple[List[str], Dict[str, str]]:
    """Positional parameters and getopt()'s named ones (--name=value, --name), as bpftrace reads its
    arguments after `--`."""
    positional, named = [], {}
    for p in params:
        if p.startswith("--") and len(p) > 2:
            name, _, value = p[2:].partition("=")
            named[name] = value if "=" in p else ""
        else:
            positional.append(p)
    return positional, named


def analyse(program: ast.Program, groups: "List[ProbeGroup]",
            env: Environment, diags: Diagnostics, params: Optional[List[str]] = None,
            has_cpid: bool = False, predefined: Optional[Dict[str, int]] = None,
            config: Optional[Config] = None, unsafe: bool = False, defer: bool = False) -> Analysis:
    """Types every ProbeFunction. `groups` come from the probe expansion pass."""
    functions = [ProbeFunction(g.probe, g.specs, i, tp_fields=g.tp_fields, kfunc_args=g.kfunc_args,
                               kfunc_ret=g.kfunc_ret, usdt_args=g.usdt_args, convention=g.convention,
                               attach=g.attach, cookie=g.cookie)
                 for i, g in enumerate(groups)]
    iters = [g for g in groups if g.specs[0].provider == "iter"]
    if iters and len(groups) > 1:
        diags.error("an iter probe can not be used with any other probe (it is the whole program)",
                    iters[0].probe.attach_points[0].span)
    maps: Dict[str, MapInfo] = {}
    positional, named = split_params(params or [])
    from kubectl_pytrace.lang.c_definitions import read_definitions

    shared = Shared(env, positional, named, has_cpid, dict(predefined or {}), tuple(program.includes),
                    config or Config(), read_definitions(program.c_definitions, env, diags),
                    check_map_decls(program.map_decls, diags), unsafe, defer)
    # Learn map types until nothing changes (an END probe may read a map filled by a later probe),
    # then check everything once more, this time reporting errors. First without guessing: a
    # statement that reads a map whose type is still unknown is skipped, so `END { @a = @b; }`
    # does not fix @a as an integer before `BEGIN { @b = "str"; }` is seen. Then maps that only
    # their own reads define (`@x += 1`, `@n++`) are guessed to be integers.
    for guess in (False, True):
        for _ in range(8):
            changed = False
            for fn in functions:
                ch = Checker(fn, maps, shared, diags, False, guess_maps=guess)
                ch.run()
                changed |= ch.changed
            if not changed:
                break
    for fn in functions:
        Checker(fn, maps, shared, diags, True).run()
    for info in maps.values():
        if info.value is None and not info.deferred and not diags.has_errors():
            diags.error(f"map '{info.name}' is used but never assigned a value", info.span)
    for name, decl in shared.map_decls.items():
        if name not in maps:
            diags.warning(f"Unused map: {name}", decl.span)
            continue
        info = maps[name]
        percpu = isinstance(info.value, AggT)  # aggregations are kept per CPU
        if percpu != decl.kind.startswith("percpu"):
            diags.error(f"Incompatible map types. Type from declaration: {decl.kind}. Type from value/key type: "
                        f"{'percpuhash' if percpu else 'hash'}", info.span)
        info.decl = decl
    uses = {n.name for fn in functions for n in fn.probe.walk() if isinstance(n, ast.Builtin)}
    return Analysis(functions, maps, uses_elapsed="elapsed" in uses, uses_cpid="cpid" in uses,
                    predefined=dict(predefined or {}), config=shared.config)


MAP_KINDS = ("hash", "lruhash", "percpuhash", "percpulruhash")


def check_map_decls(decls: List[ast.MapDecl], diags: Diagnostics) -> Dict[str, ast.MapDecl]:
    out: Dict[str, ast.MapDecl] = {}
    for d in decls:
        if d.name in out:
            diags.error(f"map {d.name} is declared twice", d.span)
        elif d.kind not in MAP_KINDS:
            diags.error(f"Invalid bpf map type: {d.kind}", d.span,
                        hint="Valid map types: " + ", ".join(reversed(MAP_KINDS)))
        elif not 1 <= d.max_entries <= 1 << 24:
            diags.error(f"a map's max entries must be between 1 and {1 << 24}", d.span)
        else:
            out[d.name] = d
    return out
