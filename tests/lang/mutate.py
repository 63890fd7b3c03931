"""Program mutations shared by test_fuzz.py (hypothesis) and fuzz_campaign.py (long local runs)."""

from __future__ import annotations

import re
from typing import List, Sequence, Tuple

from kubectl_pytrace.lang import CompileError, Compiled, compile_program
from kubectl_pytrace.lang.env import Environment

from .fakeenv import FakeEnv

# A rough lexer: good enough to cut programs into pieces a mutation can move around.
_TOKEN_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"?|//[^\n]*|/\*.*?\*/|[A-Za-z_@$][A-Za-z0-9_]*|'
                       r"0[xX][0-9a-fA-F]+|[0-9][0-9_]*(?:[eE][0-9]+)?|<<=|>>=|->|\+\+|--|&&|\|\||"
                       r"[-+*/%&|^!=<>]=|<<|>>|\s+|.", re.S)

VOCAB = [
    # keywords, probes and punctuation
    "if", "else", "unroll", "while", "break", "continue", "return", "struct", "union",
    "BEGIN", "END", "tracepoint:syscalls:sys_enter_openat", "t:sched:sched_switch", "t:*:*",
    "kprobe:f", "kretprobe:f", "uprobe:/bin/x:foo", "ur:/bin/x:foo", "usdt:/bin/x:prov:start",
    "profile:hz:99", "interval:s:0", "kfunc:vfs_read", "kretfunc:vfs_read", "uprobe:/bin/x:0x10",
    "{", "}", "(", ")", "[", "]", ";", ",", ".", "->", "/", "?", ":", "=", "==", "+=", "<<=",
    "++", "--", "+", "-", "*", "%", "&", "|", "^", "!", "~", "<", ">", "<<", ">>", "&&", "||",
    "#include <x.h>\n", "//c\n", "/* c */", "\n", "\t", " ",
    # values
    "0", "1", "-1", "0x10", "0b11", "010", "1_000", "1e3", "9e99", "18446744073709551615",
    "18446744073709551616", "9223372036854775808", "100", "1024",
    '"s"', '""', '"%d"', '"%s\\n"', '"a\\x41\\101\\0b"', '"\\q"', '"\\x"', '"%-5.3lx %r %c"',
    '"unterminated', "'c'",
    "$x", "$y", "$t", "@", "@m", "@h", "$1", "$2", "$0", "$#", "$99",
    # builtins, functions, types
    "pid", "tid", "comm", "nsecs", "elapsed", "cpu", "cgroup", "retval", "args", "args.filename",
    "args->prev_comm", "func", "probe", "curtask", "rand", "kstack", "ustack", "cpid", "ctx",
    "username", "arg0", "arg9", "sarg0", "arg1000000000000000000000",
    "arg" + "9" * 4400, "$" + "9" * 4400, ".9" + "9" * 4400, "9" * 4400,
    "(" * 300, ")" * 300, "if (1) { " * 100, "}" * 100, "unroll(100) { " * 3, " + 1" * 300,
    "printf", "print", "time", "exit", "str", "ksym", "usym", "ntop", "delete", "clear", "zero",
    "has_key", "strncmp", "count", "sum", "avg", "min", "max", "stats", "hist", "lhist",
    "system", "kaddr", "nosuch", "perf", "raw", "bpftrace",
    "uint8", "int16", "uint32", "int64", "bool", "(struct task_struct *)", "(uint8)", "(int32 *)",
    "struct sock", "->pid", "->comm", "->real_parent", ".0", ".1", ".x", ".99",
    # bpftrace 0.27
    "let", "macro", "config", "for", "..", ":", "true", "false", "begin", "end", "$kv", "$i",
    "lruhash(10)", "hash", "percpuhash", "let @l = lruhash(2);", "macro m(x) { x + 1 }", "m(1)",
    "config = { max_strlen = 8 }", "missing_probes", "for ($i : 0..3)", "for ($kv : @m)",
    "1s", "20ms", "3us", "4ns", "2m", "1h", "interval:1s", "rawtracepoint:sched_switch", "rt:sched_*",
    "software:faults:1", "s:cs", "hardware:cycles", "iter:task", "ctx", "ctx->task",
    "sizeof", "offsetof", "sizeof(struct task_struct)", "offsetof(struct task_struct, comm)",
    "len", "strlen", "strstr", "strcontains", "memcmp", "errorf", "warnf", "assert", "static_assert",
    "getopt", "strftime", "strerror", "syscall_name", "signal_name", "cgroup_path", "cgroupid",
    "macaddr", "uaddr", "reg", "kptr", "uptr", "signal", "override", "nsecs(monotonic)", "pid(init)",
    "jiffies", "ncpus", "ppid", "pcomm", "usermode", "numaid", "(enum tcp_state)", "(pid_t)",
    "struct Foo { int a; char b[4]; };", "enum e { A, B = 3 };", "(struct Foo *)", "*curtask",
    "delete(@m, 1)", "has_key(@m, 1)", "$t[0]", '"abc"[1]', "->comm[1]", ".real_parent.pid",
]


def tokens(text: str) -> List[str]:
    return _TOKEN_RE.findall(text)


# (operation, position seed, vocabulary/char seed)
Mutation = Tuple[str, int, int]
OPS = ("delete_token", "insert_token", "replace_token", "duplicate_token", "swap_tokens",
       "delete_char", "insert_char", "replace_char", "splice")
CHARS = '{}()[];,@$/"\\ \n\t+-*<>=!~&|^%?:.#0123456789abcxyzé\x00\x7f'


def mutate(text: str, mutations: Sequence[Mutation], corpus: Sequence[str]) -> str:
    for op, pos, pick in mutations:
        if op.endswith("_char") and op != "insert_char" and not text:
            continue
        if op.endswith("char"):
            i = pos % (len(text) + 1)
            c = CHARS[pick % len(CHARS)]
            if op == "delete_char":
                text = text[:i] + text[i + 1:]
            elif op == "insert_char":
                text = text[:i] + c + text[i:]
            else:
                text = text[:i] + c + text[i + 1:]
            continue
        toks = tokens(text)
        n = len(toks)
        i = pos % (n + 1)
        word = VOCAB[pick % len(VOCAB)]
        if op == "insert_token":
            toks.insert(i, word)
        elif op == "splice":
            other = tokens(corpus[pick % len(corpus)])
            j = pick % (len(other) + 1)
            toks = toks[:i] + other[j:]
        elif n == 0:
            toks = [word]
        elif op == "delete_token":
            del toks[i % n]
        elif op == "replace_token":
            toks[i % n] = word
        elif op == "duplicate_token":
            toks.insert(i % n, toks[i % n])
        else:  # swap_tokens
            j = pick % n
            toks[i % n], toks[j] = toks[j], toks[i % n]
        text = "".join(toks)
    return text


_DIAG_HEAD = re.compile(r"^[^\n:]+:\d+:\d+(-\d+)?: (ERROR|WARNING): \S")


def compile_or_diagnose(text: str, env: Environment) -> object:
    """Compiles text; returns Compiled or the CompileError, whose text must be well-formed.

    Anything else (IndexError, AssertionError, lark's own exceptions, ...) propagates: that is the
    bug the fuzzer looks for."""
    try:
        return compile_program(text, env=env, params=["7", "text"], has_cpid=True)
    except CompileError as err:
        rendered = str(err)
        assert err.diagnostics.errors, "CompileError without an error"
        assert _DIAG_HEAD.match(rendered), rendered
        lines = rendered.split("\n")
        assert len(lines) >= 3 and "~" in lines[2], rendered
        return err


ENVS = (Environment(), FakeEnv())


def check(text: str) -> None:
    for env in ENVS:
        result = compile_or_diagnose(text, env)
        assert isinstance(result, (Compiled, CompileError))


# ---- well-formed programs from a small grammar (reach the semantic pass and the code generator) --

# probe -> atoms that are valid in it (besides the common ones)
PROBES = {
    "BEGIN": [], "END": [],
    "tracepoint:syscalls:sys_enter_openat": ["args.filename", "args.dfd", "args.flags", "probe"],
    "t:sched:sched_switch": ["args.prev_comm", "args.next_pid", "args.next_comm"],
    "t:syscalls:sys_*_read": ["probe", "args.__syscall_nr"],
    "tracepoint:sched:sched_process_exec": ["args.filename", "args.pid"],
    "uprobe:/bin/x:foo": ["arg0", "arg1", "arg5", "sarg0", "func", "ustack", "probe"],
    "uretprobe:/bin/x:foo": ["retval", "func", "ustack"],
    "usdt:/bin/x:prov:start": ["arg0", "arg1", "probe", "func"],
    "profile:hz:99": ["kstack", "ustack"],
    "interval:ms:10": [],
    "kprobe:vfs_read": ["arg0", "arg2", "sarg1", "func", "kstack"],
    "kretprobe:vfs_read": ["retval", "kstack"],
    "kfunc:vfs_read": ["args.count", "args.file", "func"],
    "kretfunc:vfs_read": ["retval", "args.count"],
    "u:/bin/x:foo*": ["func", "arg0", "probe"],
    "uprobe:/bin/x:0x40": ["arg3"],
}
COMMON = ["0", "-0", "1", "-1", "7", "0x7f", "255", "18446744073709551615", "9223372036854775807",
          '"a"', '""', '"str%d"', '"\\x00z"', '"\\xff\\x80"', "pid", "tid", "comm", "nsecs", "cpu",
          "curtask", "rand", "cpid", "$1", "$2", "$#", "$x", "$y", "$t", "@a[1]", "@i", "@str",
          "@tup", "@b[1, \"k\"]", "elapsed", "uid", "gid", "cgroup", "$t.0", "$t.1", "@tup.1",
          "@i++", "$x--", "true", "false", "1s", "5ms", "jiffies", "ncpus", "ppid", "pcomm", "@c + 1",
          "curtask->comm[1]", "curtask.real_parent.pid", "$t[0]", "\"xyz\"[2]", "sizeof(int32)",
          "offsetof(struct task_struct, pid)", "username", "numaid"]
INVALID = ["nosuch", "args.nosuch", "retval", "arg0", "$nope", "@nope", "@agg", "$0", "func",
           "args", "ctx", "username", "@b[1]"]
PRELUDE = '$x = 1; $y = "s"; $t = (2, "t"); @i = 3; @str = "v"; @tup = (1, "u"); @agg = count(); @a[1] = 1; @b[1, "k"] = 2; @c = 3; '
AGGS = ["count()", "sum({e})", "avg({e})", "min({e})", "max({e})", "stats({e})", "hist({e})",
        "lhist({e}, 0, 100, 10)", "lhist({e}, 0, {e}, 1)", "lhist({e}, -0, 5, -0)"]
CALLS = ["str({e})", "str({e}, {e})", "ksym({e})", "usym({e})", "ntop({e})", "ntop(2, {e})",
         "kstack({e})", "ustack(perf, 3)", "kstack(raw)", "strncmp({e}, {e}, 2)", "strncmp({e}, {e}, -0)", "str({e}, -0)", "has_key({m}[{e}])",
         "print({e})", "print({m})", "print({m}, 2, {e})", "print({m}, -0, -0)", "delete({m}[{e}])", "clear({m})", "zero({m})",
         "exit()", "time()", "time(\"%H\")", "printf(\"%d %s\\n\", {e}, {e})", "printf(\"%s\", {e})",
         "printf(\"%-8.3lx|%c|%r|%p\", {e}, {e}, {e}, {e})", "printf({e})", "nosuch({e})", "system(\"x\")",
         # bpftrace 0.27
         "len({m})", "len(ustack)", "delete({m}, {e})", "has_key({m}, {e})", "strlen({e})", "strstr({e}, {e})",
         "strcontains({e}, {e})", "memcmp({e}, {e}, 2)", "errorf(\"%d\", {e})", "warnf(\"w\")",
         "assert({e}, \"m\")", "static_assert({e}, \"m\")", "exit({e})", "strftime(\"%H\", {e})",
         "strerror({e})", "syscall_name({e})", "signal_name({e})", "cgroup_path({e})", "macaddr({e})",
         "kptr({e})", "uptr({e})", "sizeof({e})", "buf({e}, 3)", "nsecs(boot)", "pid(init)", "getopt(\"g\", {e})",
         "hist({e}, 2)", "*{e}"]
BINOPS = ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>", "==", "!=", "<", ">", "<=", ">=",
          "&&", "||"]
UNOPS = ["-", "!", "~", "*", "&", "+", "++", "--"]
CASTS = ["(uint8)", "(int16)", "(uint32)", "(int64)", "(bool)", "(struct task_struct *)",
         "(struct sock *)", "(int8 *)", "(uint64 **)", "(struct nosuch *)", "(struct task_struct)"]
FIELDS = [".0", ".1", ".2", "->pid", "->comm", "->real_parent", "->in_execve", "->sk_daddr",
          "->sk_v6_daddr", ".pid", "[0]", "[1]"]
MAPS = ["@a", "@b", "@c", "@s", "@i", "@str", "@tup", "@agg", "@"]


class _Gen:
    def __init__(self, rng, probe: str):
        self.rng, self.atoms = rng, COMMON + PROBES.get(probe, [])

    def expr(self, depth: int = 0) -> str:
        rng = self.rng
        k = rng.random() if depth < 4 else 0.0
        if k < 0.4:
            return rng.choice(INVALID) if rng.random() < 0.03 else rng.choice(self.atoms)
        if k < 0.6:
            return f"{self.expr(depth + 1)} {rng.choice(BINOPS)} {self.expr(depth + 1)}"
        if k < 0.65:
            return f"{rng.choice(UNOPS)}{self.expr(depth + 1)}"
        if k < 0.72:
            return f"{rng.choice(CASTS)}{self.expr(depth + 1)}"
        if k < 0.78:
            return f"({self.expr(depth + 1)}){rng.choice(FIELDS)}"
        if k < 0.83:
            return f"({self.expr(depth + 1)} ? {self.expr(depth + 1)} : {self.expr(depth + 1)})"
        if k < 0.88:
            return "(" + ", ".join(self.expr(depth + 1) for _ in range(rng.randint(2, 3))) + ")"
        return self.fill(rng.choice(CALLS), depth)

    def fill(self, template: str, depth: int) -> str:
        while "{e}" in template or "{m}" in template:
            template = template.replace("{e}", self.expr(depth + 1), 1).replace("{m}", self.rng.choice(MAPS), 1)
        return template

    def stmt(self, depth: int = 0) -> str:
        rng = self.rng
        k = rng.random() if depth < 3 else 0.0
        if rng.random() < 0.5:  # a fresh map or variable takes any type
            k = rng.randrange(10 ** 6)
            target = self.fill(rng.choice([f"$v{k}", f"@f{k}", f"@g{k}[{{e}}]"]), 2)
        else:
            target = self.fill(rng.choice(["$x", "$y", "$t", "$new", "@a[{e}]", "@b[{e}, {e}]", "@s[comm]",
                                           "@c", "@i", "@str", "@tup", "@"]), 2)
        if k < 0.3:
            return f"{target} = {self.expr()}"
        if k < 0.45:
            return f"{target} = {self.fill(rng.choice(AGGS), 2)}"
        if k < 0.52:
            return f"{target} {rng.choice(['+=', '-=', '<<=', '%=', '|='])} {self.expr()}"
        if k < 0.65:
            return self.expr()
        if k < 0.72:
            return f"if ({self.expr()}) {{ {self.body(depth + 1)} }} else {{ {self.body(depth + 1)} }}"
        if k < 0.78:
            return f"while ({self.expr()}) {{ {self.body(depth + 1)} break; }}"
        if k < 0.83:
            return f"unroll({rng.choice(['1', '3', '2', '101', '$x', '0'])}) {{ {self.body(depth + 1)} }}"
        if k < 0.88:
            over = rng.choice([f"{self.expr()}..{self.expr()}", "0..3", rng.choice(MAPS)])
            return f"for ($i : {over}) {{ {self.body(depth + 1)} }}"
        if k < 0.91:
            return f"let $l{rng.randrange(100)} = {self.expr()}"
        return rng.choice(["return", f"{target}++", f"--{target}", "exit()"])

    def body(self, depth: int = 0) -> str:
        return " ".join(self.stmt(depth) + ";" for _ in range(self.rng.randint(0, 3)))


def gen_program(rng) -> str:
    probes = []
    names = list(PROBES)
    for p in rng.sample(names, rng.randint(1, 3)):
        aps = p if rng.random() < 0.8 else f"{p}, {rng.choice(names)}"
        g = _Gen(rng, p)
        pred = f" /{re.sub(r'[$][xyt]', '@c', g.expr(2))}/" if rng.random() < 0.3 else ""
        probes.append(f"{aps}{pred} {{ {PRELUDE}{g.body()} }}")
    return "\n".join(probes)
