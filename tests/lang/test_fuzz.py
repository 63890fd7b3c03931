"""Fuzzing the compiler: whatever the input, the result is a Compiled program or a CompileError whose
diagnostics render (file:line:col: ERROR: ..., the source line, an underline) - never another
exception (IndexError, AttributeError, lark internals, AssertionError, ...).

Deterministic and quick in CI (derandomize, ~300 examples per test). For a long local campaign:
    PYTRACE_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/lang/test_fuzz.py
    .venv/bin/python -m tests.lang.fuzz_campaign 200000 SEED   (collects every distinct failure)
Inputs that once failed are kept below as @example regressions.
"""

from __future__ import annotations

import os
import random
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kubectl_pytrace.lang import CompileError, Compiled, compile_program

from .corpus import CORPUS
from .fakeenv import FakeEnv
from .mutate import CHARS, OPS, VOCAB, check, gen_program, mutate

EXAMPLES = int(os.environ.get("PYTRACE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

mutations = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)),
                     min_size=1, max_size=6)


@pytest.mark.parametrize("program", CORPUS)
def test_corpus_programs_compile(program):
    assert isinstance(compile_program(program, env=FakeEnv(), params=["7", "text"], has_cpid=True), Compiled)


# Inputs the fuzzer found (each crashed the compiler before its fix; commit in parentheses).
@example('uprobe:/bin/x:0x1234 { printf("%s\\n", str(arg0, 0108)); }')  # ValueError out of lark (8039b9e)
@example("BEGIN { @h = hist(10); @l = lhist(15, 0, 100,9e9910); }")  # 10**9910, int->str limit (8039b9e)
@example("BEGIN { @x = " + "9" * 5000 + "; }")  # int() digit limit (8039b9e)
@example("BEGIN { @x = 1e999999999999; }")  # would compute a huge power (8039b9e)
@example('BEGIN { $s = (struct sock *)0; printf("%s\\n", ntop(2, $s->sk_daddr)); '
         '@a = ntop($s->sk_v6_daddr); }')  # AssertionError in codegen (9e8e4bc)
@example('BEGIN { printf("%s\\n", ntop("abcd")); }')  # AssertionError in codegen (9e8e4bc)
@example('tracepoint:sched:sched_switch { @ = ntop(args.prev_comm); }')  # u8[16] field (9e8e4bc)
@example("BEGIN { @m = 1; print(@m, 1, -0); }")  # AttributeError in codegen (ae296fb)
@example('BEGIN { @s = strncmp(comm, "abc", -0); }')  # AttributeError in codegen (ae296fb)
@example("BEGIN { @l = lhist(1, 0, 100000000000000000000000, 1000000000000000000000); }")  # (f8530f2)
@example("END { @a = @b; @k[@b] = 1; @t = (1, @b); } BEGIN { @b = \"str\"; }")  # wrong type (503c204)
@example("interval:s:18446744074 { }")  # period overflowed u64 (66213ea)
# Found by reading the code while writing these tests (same classes of crash):
@example("BEGIN { @ = $" + "9" * 5000 + "; }")  # int() digit limit (9b7d60f)
@example("kprobe:f { @ = arg" + "9" * 5000 + " + sarg" + "9" * 5000 + "; }")  # (9b7d60f)
@example("BEGIN { $t = (1, 2); @ = $t." + "9" * 5000 + "; }")  # (9b7d60f)
@example("BEGIN { @x = 1" + " + 1" * 400 + "; }")  # RecursionError in codegen (e961037)
@example("BEGIN { " + "if (1) { " * 200 + "}" * 200 + " }")  # RecursionError in lark (e961037)
@example("BEGIN { $t = curtask; @c = $t->comm[1]; }")  # AssertionError in codegen (issue 7)
@example("")
@example("\x00")
@example("BEGIN { @x = 1 }\n#!")
@given(st.text(alphabet=CHARS + string.ascii_letters, max_size=80))
@FUZZ
def test_random_program_text(text):
    check(text)


@given(st.text(max_size=60))
@FUZZ
def test_random_unicode_text(text):
    check(text)


@given(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=30).map(" ".join))
@FUZZ
def test_random_token_sequences(text):
    check(text)


@given(st.sampled_from(CORPUS), mutations)
@FUZZ
def test_mutated_corpus_programs(program, muts):
    check(mutate(program, muts, CORPUS))


@given(st.randoms(use_true_random=False))
@FUZZ
def test_generated_programs(rng):
    check(gen_program(rng))


def test_corpus_and_its_mutations_compile_or_diagnose():
    """Issue 7: every program of the corpus, and a fixed set of mutations of each, is a compiled
    program or a CompileError; no other exception escapes compile()."""
    rng = random.Random(7)
    for program in CORPUS:
        check(program)
        for _ in range(20):
            muts = [(rng.choice(OPS), rng.randrange(10 ** 6), rng.randrange(10 ** 6))
                    for _ in range(rng.randint(1, 4))]
            check(mutate(program, muts, CORPUS))


def test_generated_programs_reach_the_code_generator():
    """The grammar-based generator is only useful if a good share of its programs compile."""
    rng = random.Random(1)
    compiled = 0
    for _ in range(300):
        try:
            compile_program(gen_program(rng), env=FakeEnv(), params=["7", "text"], has_cpid=True)
            compiled += 1
        except CompileError:
            pass
    assert compiled >= 45  # 72 of 300 when written
