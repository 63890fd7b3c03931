"""spin_cpus.py SECONDS: keeps every CPU this process may run on busy for SECONDS, one pinned
child process per CPU; exits 0 once all are done. The workload of the profile:hz cases (an idle
CPU is sampled less often, and how much less depends on its idle state)."""

import os
import sys
import time


def spin_on(cpu: int, until: float) -> None:
    os.sched_setaffinity(0, {cpu})
    while time.monotonic() < until:
        pass


def main() -> int:
    until = time.monotonic() + float(sys.argv[1])
    children = []
    for cpu in sorted(os.sched_getaffinity(0)):
        pid = os.fork()
        if pid == 0:
            spin_on(cpu, until)
            os._exit(0)
        children.append(pid)
    return max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children)


if __name__ == "__main__":
    sys.exit(main())
