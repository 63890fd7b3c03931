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
from kubectl_pytrace.lang.diagnostics import Diagnostics, Span
from kubectl_pytrace.lang.env import Environment, LookupFailed, StructField, TracepointField
from kubectl_pytrace.lang.probes import ProbeSpec

if TYPE_CHECKING:
    from kubectl_pytrace.lang.expand import ProbeGroup
from kubectl_pytrace.lang.types import (
    COMM_LEN, INT64, INT_TYPE_NAMES, STRLEN, UINT64, VOID, AggT, ArrayT, BufT, InetT, IntT, KsymT,
    ProbeT, PtrT, StackT, StrT, StructT, TupleT, Type, UsymT, VoidT, common_type, is_char_array,
    is_integer_like, storage_type,
)

AGGREGATIONS = ("count", "sum", "avg", "min", "max", "stats", "hist", "lhist")
KPROBE_LIKE = ("kprobe", "kretprobe", "uprobe", "uretprobe", "usdt")
MAX_UNROLL = 100
MAX_UNROLL_COPIES = 10000  # unroll(100) inside unroll(100) is already too big for the verifier
MAX_LHIST_BUCKETS = 1000
STACK_MODES = ("bpftrace", "perf", "raw")


@dataclass
class MapInfo:
    name: str  # "@" or "@name"
    index: int  # the C name is map_<index>
    key: Optional[TupleT] = None  # None: a scalar map (no [keys])
    value: Optional[Type] = None  # a storage type, or AggT for aggregation maps
    span: Span = Span(0, 0)
    key_known: bool = False  # set at the first access, which fixes whether the map has keys
    deferred: bool = False  # assigned only by statements left for the node (remote environment)

    @property
    def is_agg(self) -> bool:
        return isinstance(self.value, AggT)


@dataclass
class ProbeFunction:
    """One generated BPF function: a probe body typed for the attach points it serves."""

    probe: ast.Probe
    specs: List[ProbeSpec]
    index: int  # the C name is probe_<index>
    tp_fields: Optional[Dict[str, TracepointField]] = None
    kfunc_args: Optional[List[Tuple[str, Type]]] = None
    kfunc_ret: Optional[Type] = None
    usdt_args: Optional[List[Type]] = None
    attach: bool = True  # False: none of the probe's attach points exist (checked, not generated)
    cookie: bool = False  # serves several specs: `probe` and `func` from the attachment's cookie
    types: Dict[int, Type] = field(default_factory=dict)
    fields: Dict[int, object] = field(default_factory=dict)  # FieldAccess -> TracepointField/StructField
    formats: Dict[int, list] = field(default_factory=dict)  # printf/time Call -> parsed format
    constants: Dict[int, int] = field(default_factory=dict)  # Identifier/kaddr() Call -> its value
    vars: Dict[str, Type] = field(default_factory=dict)

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

    def __init__(self, fn: ProbeFunction, maps: Dict[str, MapInfo], env: Environment,
                 diags: Diagnostics, final: bool, params: List[str], has_cpid: bool,
                 guess_maps: bool = True, predefined: Optional[Dict[str, int]] = None,
                 includes: Sequence[str] = (), defer: bool = False):
        self.fn, self.maps, self.env, self.diags, self.final = fn, maps, env, diags, final
        self.includes = tuple(includes)
        self.params, self.has_cpid, self.guess_maps = params, has_cpid, guess_maps
        self.changed = False
        self.defer = defer  # leave what the environment does not know for the node (check_program)
        self.deferred_vars: set = set()  # assigned by deferred statements (remote environment)
        self.loops = 0
        self.unrolled = 1  # how many copies of the current statement nested unroll()s make
        fn.types.clear()
        fn.fields.clear()
        fn.formats.clear()
        fn.constants.clear()
        fn.vars.clear()
        for name in predefined or {}:
            fn.vars[name] = INT64  # $container_pid and the like, set before the probe body

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
        return self.set(e, getattr(self, "expr_" + type(e).__name__)(e))

    def int_expr(self, e: ast.Expr, what: str) -> Type:
        t = self.expr(e)
        if not is_integer_like(t):
            self.error(f"{what} must be an integer, not {t}", e.span)
        return t

    def stmt(self, s: ast.Stmt):
        try:
            getattr(self, "stmt_" + type(s).__name__)(s)
        except _Deferred:
            self.defer_targets(s)
        except _Unknown:
            pass

    def defer_targets(self, s: ast.Stmt):
        """The variable or map a deferred statement assigns is unknown from here on."""
        if isinstance(s, ast.AssignVar) and s.target.name not in self.fn.vars:
            self.deferred_vars.add(s.target.name)
        elif isinstance(s, ast.AssignMap):
            info = self.map_info(s.target)
            if not info.deferred:
                info.deferred = True
                self.changed = True

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
        t = self.expr(s.value)
        self.check_storable(t, s.value.span)
        # integers are stored in 64 bits but keep their width, as bpftrace's variables keep their
        # type: bswap($port) of a uint16 swaps two bytes
        st = t if isinstance(t, IntT) else storage_type(t)
        old = self.fn.vars.get(s.target.name)
        if old is not None:
            merged = common_type(old, st)
            if merged is None or (isinstance(old, StrT) and isinstance(st, StrT) and st.size > old.size
                                  and False):
                self.error(f"type mismatch for {s.target.name}: trying to assign value of type "
                           f"'{t}' when variable already contains a value of type '{old}'", s.span)
            if merged != old:
                self.fn.vars[s.target.name] = merged
        else:
            self.fn.vars[s.target.name] = st
        self.set(s.target, self.fn.vars[s.target.name])

    def stmt_AssignMap(self, s: ast.AssignMap):
        info = self.map_info(s.target)
        self.map_keys(s.target, info)
        if _is_agg_call(s.value):
            vt = self.aggregation(s.value)
        else:
            t = self.expr(s.value)
            self.check_storable(t, s.value.span)
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
        self.block(s.then)
        if s.orelse is not None:
            self.block(s.orelse)

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
        self.block(s.body)
        self.unrolled = outer

    def stmt_While(self, s: ast.While):
        try:
            t = self.expr(s.cond)
            if not is_integer_like(t):
                self.error(f"invalid condition in while(): {t}", s.cond.span)
        except _Unknown:
            pass
        self.loops += 1
        self.block(s.body)
        self.loops -= 1

    def stmt_Return(self, s: ast.Return):
        pass

    def stmt_Break(self, s: ast.Break):
        if not self.loops:
            self.error("'break' outside a while loop", s.span)

    def stmt_Continue(self, s: ast.Continue):
        if not self.loops:
            self.error("'continue' outside a while loop", s.span)

    def check_storable(self, t: Type, span: Span):
        if isinstance(t, VoidT):
            self.error("this expression has no value to store", span)
        if isinstance(t, StructT):
            self.error(f"cannot store a value of type '{t}': store one of its fields, or a pointer to it",
                       span)
        if isinstance(t, ArrayT) and not is_char_array(t):
            self.error(f"cannot store an array of type '{t}': index it", span)

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
                t = self.expr(k)
                self.check_storable(t, k.span)
                if isinstance(t, (AggT,)):
                    self.error("an aggregation cannot be a map key", k.span)
                elems.append(self.key_storage(t))
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
            return AggT("hist", signed)
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

    def expr_String(self, e: ast.String) -> Type:
        if b"\0" in e.value:
            # the rest would be cut off everywhere a C string is used
            pass
        if len(e.value) + 1 > STRLEN:  # as bpftrace: strings live on the 512-byte BPF stack
            self.error(f"string is too long (over {STRLEN} bytes)", e.span)
        return StrT(len(e.value) + 1)

    def expr_Identifier(self, e: ast.Identifier) -> Type:
        """A kernel constant (TASK_RUNNING, AF_INET): a header #define or a BTF enum value."""
        try:
            value = self.env.constant(e.name, self.includes)
        except LookupFailed as err:
            self.error(f"unknown builtin '{e.name}'", e.span, hint=str(err))
        if value is None:
            self.unknown_here(f"unknown builtin '{e.name}'", e.span)
        if not -(1 << 63) <= value < 1 << 64:  # type: ignore[operator]
            self.error(f"{e.name} is {value}, which does not fit in 64 bits", e.span)
        self.fn.constants[id(e)] = value  # type: ignore[assignment]
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
            return StrT(min(len(value.encode()) + 1, STRLEN))
        if not -(1 << 63) <= number < 1 << 64:  # it becomes a C constant
            self.error(f"${e.index} is used as a number but {value!r} does not fit in 64 bits", e.span)
        return INT64

    def expr_Builtin(self, e: ast.Builtin) -> Type:
        name, prov = e.name, self.fn.provider
        if name in ("pid", "tid", "uid", "gid", "cpu", "nsecs", "elapsed", "cgroup", "rand"):
            return UINT64
        if name == "comm":
            return StrT(COMM_LEN)
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
            self.error(f"the args builtin can only be used with tracepoint and kfunc probes, not "
                       f"'{prov}'", e.span)
        if name.startswith(("arg", "sarg")) and len(name.lstrip("sarg")) > 6:
            # argNNN...: int() of thousands of digits fails, and the number ends up in the C
            self.error(f"{name[:16]}...: argument number too large", e.span)
        if name.startswith("arg"):
            if prov not in ("kprobe", "uprobe", "usdt"):
                self.error(f"the {name} builtin can only be used with 'kprobe', 'uprobe' and 'usdt' "
                           f"probes", e.span)
            n = int(name[3:])
            if prov == "usdt" and self.fn.usdt_args is not None:
                if n >= len(self.fn.usdt_args):
                    spec = self.fn.specs[0]
                    self.error(f"{name}: USDT probe {spec.ns}:{spec.func} has {len(self.fn.usdt_args)} "
                               f"argument{'s' if len(self.fn.usdt_args) != 1 else ''}", e.span)
                return self.fn.usdt_args[n]
            if prov == "usdt" and n >= 12:
                self.error(f"{name}: USDT probes have at most 12 arguments", e.span)
            if prov != "usdt" and n > 5:
                self.error(f"{name}: only arg0..arg5 are passed in registers on x86_64", e.span)
            return UINT64
        if name.startswith("sarg"):
            if prov not in ("kprobe", "uprobe"):
                self.error(f"the {name} builtin can only be used with 'kprobe' and 'uprobe' probes", e.span)
            return UINT64
        self.error(f"the {name} builtin is not supported", e.span)
        raise AssertionError

    def expr_Var(self, e: ast.Var) -> Type:
        t = self.fn.vars.get(e.name)
        if t is None and e.name in self.deferred_vars:
            raise _Deferred()
        if t is None:
            self.error(f"undefined variable '{e.name}'", e.span)
        return t  # type: ignore[return-value]

    def check_map_known(self, info: Optional[MapInfo], m: ast.Map):
        if info is not None and info.value is None and info.deferred:
            raise _Deferred()
        if info is None or info.value is None:
            self.error(f"undefined map '{m.name}'", m.span)

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
        if isinstance(info.value, AggT):  # type: ignore[union-attr]
            self.error(f"{e.name} holds {info.value.kind}() values, which are kept per CPU and can only "
                       f"be printed, not read in an expression", e.span)
        return info.value  # type: ignore[union-attr,return-value]

    def expr_Tuple(self, e: ast.Tuple) -> Type:
        elems = []
        for x in e.elems:
            t = self.expr(x)
            self.check_storable(t, x.span)
            elems.append(self.key_storage(t))
        return TupleT(tuple(elems))

    def expr_Binop(self, e: ast.Binop) -> Type:
        lt, rt = self.expr(e.left), self.expr(e.right)
        op = e.op
        if op in ("==", "!="):
            if isinstance(lt, StrT) or is_char_array(lt) or isinstance(rt, StrT) or is_char_array(rt):
                if (isinstance(lt, StrT) or is_char_array(lt)) and (isinstance(rt, StrT) or is_char_array(rt)):
                    return INT64
                self.mismatch(e, lt, rt)
            if isinstance(lt, (TupleT, StackT)) or isinstance(rt, (TupleT, StackT)):
                self.error(f"the {op} operator can not be used on expressions of types {lt}, {rt}", e.span)
        if op in ("&&", "||"):
            for side, t in ((e.left, lt), (e.right, rt)):
                if not is_integer_like(t):
                    self.error(f"the {op} operator needs integer operands, not {t}", side.span)
            return INT64
        if not (is_integer_like(lt) and is_integer_like(rt)):
            if isinstance(lt, StrT) and isinstance(rt, StrT):
                self.error(f"the {op} operator can not be used on expressions of types {lt}, {rt}", e.span)
            self.mismatch(e, lt, rt)
        if op in ("==", "!=", "<", ">", "<=", ">="):
            return INT64
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
            return INT64
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
            t = self.fn.vars.get(target.name)
            if t is None:
                self.error(f"undefined variable '{target.name}'", target.span)
            if not isinstance(t, IntT):
                self.error(f"the {e.op} operator needs an integer variable, not {t}", e.span)
            self.set(target, t)  # type: ignore[arg-type]
            return t  # type: ignore[return-value]
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

    def expr_Cast(self, e: ast.Cast) -> Type:
        t = self.expr(e.expr)
        tn = e.type
        if tn.base.startswith("struct "):
            if tn.pointer == 0:
                self.error(f"cannot cast to '{tn.base}': cast to a pointer ('{tn.base} *')", tn.span)
            exists = self.env.struct_exists(tn.base)
            if not self.env.has_btf():
                self.unknown_here(f"cannot resolve '{tn.base}': kernel struct access needs the running "
                                  f"kernel's BTF (/sys/kernel/btf/vmlinux), which this host does not have",
                                  tn.span)
            if exists is False:
                self.error(f"unknown struct '{tn.base}' (not in the kernel's BTF)", tn.span)
            target: Type = StructT(tn.base)
        else:
            target = INT_TYPE_NAMES[tn.base]
            if tn.pointer == 0:
                if not is_integer_like(t):
                    self.error(f"cannot cast a value of type {t} to {tn.base}", e.span)
                return target
        if not is_integer_like(t):
            self.error(f"cannot cast a value of type {t} to a pointer", e.span)
        space = "user" if self.fn.user_space else "kernel"
        if isinstance(t, PtrT):
            space = t.space
        for _ in range(tn.pointer):
            target = PtrT(target, space)
        return target

    def expr_FieldAccess(self, e: ast.FieldAccess) -> Type:
        base = self.expr(e.expr)
        if isinstance(base, TupleT):
            if e.arrow or not e.name.isdigit():
                self.error(f"tuples are indexed with .N, like $t.0", e.span)
            if len(e.name) > 6 or int(e.name) >= len(base.elems):
                self.error(f"tuple index {e.name} out of range for a tuple of {len(base.elems)} elements", e.span)
            i = int(e.name)
            return base.elems[i]
        if isinstance(e.expr, ast.Builtin) and e.expr.name == "args":
            return self.args_field(e)
        if e.arrow:
            if not (isinstance(base, PtrT) and isinstance(base.target, StructT)):
                self.error(f"cannot access field '{e.name}' with '->' on type '{base}': it is not a pointer "
                           f"to a struct", e.span)
            struct = base.target  # type: ignore[union-attr]
        else:
            if isinstance(base, PtrT) and isinstance(base.target, StructT):
                self.error(f"cannot access field '{e.name}' on type '{base}'; try dereferencing it first, "
                           f"or use '->'", e.span)
            if not isinstance(base, StructT):
                self.error(f"cannot access field '{e.name}' on a value of type '{base}'", e.span)
            struct = base
        try:
            ref = self.env.struct_field(struct.cname, e.name)  # type: ignore[union-attr]
        except LookupFailed as err:
            self.error(str(err), e.span)
        if ref is None:
            self.unknown_here(f"cannot resolve field '{e.name}' of '{struct}': the running kernel's BTF "
                              f"is not available", e.span)
        self.fn.fields[id(e)] = ref
        return ref.type  # type: ignore[union-attr]

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
        self.int_expr(e.index, "an index")
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
            if c.name in ("system", "signal", "override", "reg", "uaddr",
                          "cgroupid", "sizeof", "macaddr", "path", "strftime", "skboutput",
                          "unwatch", "offsetof", "strerror", "pton"):
                self.error(f"function '{c.name}' is not supported by kubectl-pytrace", c.name_span)
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
        kinds: List[Optional[str]] = []
        for a in c.args[1:]:
            try:
                t = self.expr(a)
            except _Deferred:  # its type is the node's to know; the number of arguments is not
                kinds.append(None)
                continue
            self.check_storable(t, a.span)
            kinds.append(_printf_kind(t))
        convs = printf_format.conversions(fmt)
        try:
            printf_format.check_args(fmt, [k or (convs[i].type_name if i < len(convs) else "integer")
                                           for i, k in enumerate(kinds)], c.name)
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
        t = self.expr(a)
        self.check_storable(t, a.span)
        return VOID

    def call_time(self, c: ast.Call) -> Type:
        self.nargs(c, 0, 1)
        if c.args:
            if not isinstance(c.args[0], ast.String):
                self.error("time() needs a string literal (a strftime format)", c.args[0].span)
            self.set(c.args[0], StrT(len(c.args[0].value) + 1))  # type: ignore[union-attr]
        return VOID

    def call_exit(self, c: ast.Call) -> Type:
        self.nargs(c, 0)
        return VOID

    def call_str(self, c: ast.Call) -> Type:
        self.nargs(c, 1, 2)
        t = self.expr(c.args[0])
        if isinstance(t, StrT):
            size = t.size
        elif is_char_array(t):
            size = t.length + 1  # type: ignore[union-attr]
        elif is_integer_like(t):
            size = STRLEN
        else:
            self.error(f"str() expects a pointer or an integer address, not {t}", c.args[0].span)
        if len(c.args) == 2:
            self.int_expr(c.args[1], "str() length")
            n = ast.const_int(c.args[1])
            if n is not None:
                if n < 0:
                    self.error("str() length must not be negative", c.args[1].span)
                size = min(size, n + 1)
        return StrT(max(1, size))

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
        a = c.args[0]
        if not isinstance(a, ast.String):
            self.error("kaddr() needs a string literal: the name of a kernel symbol", a.span)
        self.set(a, StrT(len(a.value) + 1))  # type: ignore[union-attr]
        name = a.value.decode("utf-8", "replace")  # type: ignore[union-attr]
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
            if not (is_integer_like(t) or isinstance(t, ArrayT)):
                self.error(f"buf() reads from an address, not from a value of type {t}", c.args[0].span)
            self.int_expr(c.args[1], "buf() length")
            n = ast.const_int(c.args[1])
            if n is not None and n < 0:
                self.error("buf() length must not be negative", c.args[1].span)
            size = STRLEN if n is None else n
        if size > STRLEN:
            self.warning(f"buf() length is too long and will be shortened to {STRLEN} bytes "
                         f"(see BPFTRACE_STRLEN)", c.span)
            size = STRLEN
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

    def call_delete(self, c: ast.Call) -> Type:
        self._map_arg(c, True)
        return VOID

    def call_has_key(self, c: ast.Call) -> Type:
        info = self._map_arg(c, True)
        if info.key is None:
            self.error(f"has_key() needs a map with keys; {info.name} has none", c.span)
        return INT64

    def call_clear(self, c: ast.Call) -> Type:
        self._map_arg(c, False)
        return VOID

    def call_zero(self, c: ast.Call) -> Type:
        self._map_arg(c, False)
        return VOID


_PRINTF_KINDS = {StrT: "string", BufT: "buffer", IntT: "integer", PtrT: "pointer", KsymT: "ksym",
                 UsymT: "usym", InetT: "inet", ProbeT: "probe", TupleT: "tuple"}


def _printf_kind(t: Type) -> str:
    """bpftrace's name of a type, as printf's argument check knows it."""
    if is_char_array(t):
        return "string"
    if isinstance(t, StackT):
        return "kstack" if t.kernel else "ustack"
    return _PRINTF_KINDS.get(type(t), str(t))


def analyse(program: ast.Program, groups: "List[ProbeGroup]",
            env: Environment, diags: Diagnostics, params: Optional[List[str]] = None,
            has_cpid: bool = False, predefined: Optional[Dict[str, int]] = None,
            defer: bool = False) -> Analysis:
    """Types every ProbeFunction. `groups` come from the probe expansion pass."""
    functions = [ProbeFunction(g.probe, g.specs, i, tp_fields=g.tp_fields, kfunc_args=g.kfunc_args,
                               kfunc_ret=g.kfunc_ret, usdt_args=g.usdt_args, attach=g.attach, cookie=g.cookie)
                 for i, g in enumerate(groups)]
    maps: Dict[str, MapInfo] = {}
    params = params or []
    # Learn map types until nothing changes (an END probe may read a map filled by a later probe),
    # then check everything once more, this time reporting errors. First without guessing: a
    # statement that reads a map whose type is still unknown is skipped, so `END { @a = @b; }`
    # does not fix @a as an integer before `BEGIN { @b = "str"; }` is seen. Then maps that only
    # their own reads define (`@x += 1`, `@n++`) are guessed to be integers.
    for guess in (False, True):
        for _ in range(8):
            changed = False
            for fn in functions:
                ch = Checker(fn, maps, env, diags, False, params, has_cpid, guess_maps=guess,
                             predefined=predefined, includes=program.includes, defer=defer)
                ch.run()
                changed |= ch.changed
            if not changed:
                break
    for fn in functions:
        Checker(fn, maps, env, diags, True, params, has_cpid, predefined=predefined,
                includes=program.includes, defer=defer).run()
    for info in maps.values():
        if info.value is None and not info.deferred and not diags.has_errors():
            diags.error(f"map '{info.name}' is used but never assigned a value", info.span)
    uses = {n.name for fn in functions for n in fn.probe.walk() if isinstance(n, ast.Builtin)}
    return Analysis(functions, maps, uses_elapsed="elapsed" in uses, uses_cpid="cpid" in uses,
                    predefined=dict(predefined or {}))
