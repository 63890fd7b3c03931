"""strftime() values: a kernel timestamp and a format, printed as bpftrace 0.27 prints them.

The kernel sends (clock, nanoseconds): the boot clock (nsecs) is turned into wall-clock time by
adding the time the system booted (CLOCK_REALTIME - CLOCK_BOOTTIME, measured once, as bpftrace
does at start); a TAI clock value is taken as seconds since the epoch as it is. Besides strftime(3)'s
conversions, %f is the microseconds (6 digits), %k the nanoseconds (9), %l the milliseconds (3).
"""

from __future__ import annotations

import time
from typing import Optional

MONOTONIC, BOOT, TAI = 0, 1, 2

_boot_offset: Optional[int] = None


def boot_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_BOOTTIME in ns: the smallest of a few samples' skews, as bpftrace."""
    global _boot_offset
    if _boot_offset is None:
        best = None
        for _ in range(10):
            before = time.clock_gettime_ns(time.CLOCK_REALTIME)
            boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            after = time.clock_gettime_ns(time.CLOCK_REALTIME)
            if best is None or after - before < best[0]:
                best = (after - before, before + (after - before) // 2 - boot)
        _boot_offset = best[1]  # type: ignore[index]
    return _boot_offset


def format_timestamp(mode: int, nsecs: int, fmt: str) -> str:
    ns = nsecs + (boot_offset_ns() if mode == BOOT else 0)
    secs, rem = divmod(ns, 1_000_000_000)
    if secs == 0:
        return "(?)"
    fmt = fmt.replace("%f", "%06d" % (rem // 1000)).replace("%k", "%09d" % rem).replace("%l", "%03d" % (rem // 1_000_000))
    try:
        text = time.strftime(fmt, time.localtime(secs))
    except (ValueError, OverflowError):
        return "(?)"
    return text if text else "(?)"
