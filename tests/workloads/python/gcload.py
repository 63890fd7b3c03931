"""A Python workload for the USDT tests: forced garbage collections and one slow function.

Usage: gcload.py ROUNDS — each round builds reference cycles, collects them (gc.collect fires
python:gc__start/gc__done) and calls slow_function (function__entry/return, ~20 ms).
Prints "ready" first and "done N" at the end.
"""

import gc
import sys
import time


class Node:
    def __init__(self):
        self.other = self


def slow_function():
    time.sleep(0.02)


def main(rounds: int) -> None:
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
    for _ in range(rounds):
        junk = [Node() for _ in range(20000)]
        del junk
        gc.collect()
        slow_function()
    print(f"done {rounds}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
