"""A long fuzz campaign (run by hand, not by pytest): mutated corpus programs and random text.

    .venv/bin/python -m tests.lang.fuzz_campaign 20000 [seed]

Prints each distinct failure (exception type and the compiler line that raised it) with the
smallest input that triggered it; add those inputs to test_fuzz.py as @example regressions.
"""

from __future__ import annotations

import random
import sys
import time
import traceback

from .corpus import CORPUS
from .mutate import CHARS, OPS, VOCAB, check, gen_program, mutate


def random_input(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return gen_program(rng)
    if kind < 0.7:
        muts = [(rng.choice(OPS), rng.randrange(10 ** 6), rng.randrange(10 ** 6))
                for _ in range(rng.randint(1, 6))]
        return mutate(rng.choice(CORPUS), muts, CORPUS)
    if kind < 0.8:
        return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 30)))
    if kind < 0.95:
        return "".join(rng.choice(CHARS + "abcdefghijklmnop") for _ in range(rng.randint(0, 60)))
    return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randint(0, 40)))


def main(argv):
    n = int(argv[1]) if len(argv) > 1 else 20000
    rng = random.Random(int(argv[2]) if len(argv) > 2 else 1)
    failures = {}
    start = time.monotonic()
    for _ in range(n):
        text = random_input(rng)
        try:
            check(text)
        except Exception as e:  # noqa: BLE001 - collecting every kind of failure is the point
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f"{f.filename.split('/')[-1]}:{f.lineno}" for f in reversed(tb)
                          if "kubectl_pytrace" in f.filename), "?")
            key = (type(e).__name__, where)
            if key not in failures or len(text) < len(failures[key][0]):
                failures[key] = (text, str(e).split("\n")[0][:200])
    took = time.monotonic() - start
    print(f"{n} inputs in {took:.0f}s, {len(failures)} distinct failures")
    for (kind, where), (text, msg) in sorted(failures.items()):
        print(f"--- {kind} at {where}: {msg}\n    {text!r}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
