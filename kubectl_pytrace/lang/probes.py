"""Attach points: `uprobe:/bin/bash:readline` -> ProbeSpec(provider="uprobe", target=..., func=...).

The parser keeps an attach point as written; parse_attach_point() splits it (colons inside double
quotes do not split, so C++ symbols can be written `uprobe:/bin/x:"ns::f"`), expands bpftrace's
short aliases and validates the shape of each provider.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

ALIASES = {
    "t": "tracepoint", "u": "uprobe", "ur": "uretprobe", "U": "usdt", "k": "kprobe",
    "kr": "kretprobe", "p": "profile", "i": "interval", "f": "kfunc", "fr": "kretfunc",
    "fentry": "kfunc", "fexit": "kretfunc", "begin": "BEGIN", "end": "END", "rt": "rawtracepoint",
    "s": "software", "h": "hardware", "it": "iter",
}
PROVIDERS = ("BEGIN", "END", "tracepoint", "uprobe", "uretprobe", "usdt", "kprobe", "kretprobe",
             "kfunc", "kretfunc", "profile", "interval", "rawtracepoint", "software", "hardware", "iter")

# perf_event_open(2)'s events: name -> (perf type id, the period bpftrace uses without a count)
SOFTWARE_EVENTS = {
    "cpu-clock": (0, 1000000), "task-clock": (1, 1), "page-faults": (2, 100), "context-switches": (3, 1000),
    "cpu-migrations": (4, 1), "minor-faults": (5, 100), "major-faults": (6, 1), "alignment-faults": (7, 1),
    "emulation-faults": (8, 1), "dummy": (9, 1), "bpf-output": (10, 1),
}
HARDWARE_EVENTS = {
    "cpu-cycles": (0, 1000000), "instructions": (1, 1000000), "cache-references": (2, 1000000),
    "cache-misses": (3, 1000000), "branch-instructions": (4, 100000), "branch-misses": (5, 100000),
    "bus-cycles": (6, 100000), "frontend-stalls": (7, 1000000), "backend-stalls": (8, 1000000),
    "ref-cycles": (9, 1000000),
}
EVENT_ALIASES = {"cpu": "cpu-clock", "faults": "page-faults", "cs": "context-switches", "cycles": "cpu-cycles",
                 "branches": "branch-instructions"}

# nanoseconds per unit of profile:/interval: rates ("hz" is a frequency, handled apart)
TIME_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "hz": 0}


class AttachPointError(ValueError):
    pass


@dataclass(frozen=True)
class ProbeSpec:
    provider: str
    target: str = ""  # tracepoint category, binary/library path, usdt path, kernel module
    func: str = ""  # tracepoint name, symbol, usdt probe name, kernel function
    ns: str = ""  # usdt provider
    address: Optional[int] = None  # uprobe:PATH:0xADDR
    unit: str = ""  # profile/interval unit
    rate: int = 0  # profile/interval value
    literal: bool = False  # the function was written in double quotes: '*' in it is no wildcard
    # a uretprobe on Go: a uprobe at one of the function's RET instructions (this many bytes from
    # its start), not the kernel's return probe (which plants a return address on the stack)
    ret_site: Optional[int] = None

    @property
    def is_return(self) -> bool:
        return self.provider in ("uretprobe", "kretprobe", "kretfunc")

    @property
    def kernel_return(self) -> bool:
        """Attached as the kernel's return probe (uretprobe, kretprobe): not at a RET site."""
        return self.provider in ("uretprobe", "kretprobe") and self.ret_site is None

    @property
    def is_wildcard(self) -> bool:
        return any(_has_glob(x) for x in (self.target, self.ns)) or (not self.literal and _has_glob(self.func))

    def is_fentry(self, kprobe_mode: str) -> bool:
        """Whether this probe runs as an fentry/fexit program (arguments and return value in a u64
        array, types from BTF): kfunc/kretfunc always, kprobe/kretprobe where the kernel has no
        kprobes (kprobe_mode "fentry")."""
        return self.provider in ("kfunc", "kretfunc") or (
            self.provider in ("kprobe", "kretprobe") and kprobe_mode == "fentry")

    def name(self) -> str:
        """The full probe name, as the `probe` builtin prints it."""
        p = self.provider
        if p in ("BEGIN", "END"):
            return p.lower()  # bpftrace 0.27 names them begin/end
        if p in ("profile", "interval"):
            return f"{p}:{self.unit}:{self.rate}"
        if p in ("software", "hardware"):  # as written, the count as a number
            return f"{p}:{self.func}:{self.rate}" if self.rate else f"{p}:{self.func}"
        if p == "tracepoint":
            return f"tracepoint:{self.target}:{self.func}"
        if p in ("uprobe", "uretprobe"):
            func = hex(self.address) if self.address is not None else self.func
            return f"{p}:{self.target}:{func}"
        if p == "usdt":
            return f"usdt:{self.target}:{self.ns}:{self.func}" if self.ns else f"usdt:{self.target}:{self.func}"
        if self.target:
            return f"{p}:{self.target}:{self.func}"
        return f"{p}:{self.func}"

    def with_match(self, **kw) -> "ProbeSpec":
        return replace(self, **kw)


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def glob_match(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def split_attach_point(raw: str, params: Sequence[str] = ()) -> List[str]:
    """Split on ':' outside double quotes; quotes are removed. A positional parameter ($1, $2...)
    outside quotes is replaced by its value, as bpftrace does: the value is one piece of the part it
    stands in (a ':' in it does not split), `usdt:$1:postgresql:query__start`, `uprobe:$1:$2`."""
    return _split(raw, params)[0]


def _split(raw: str, params: Sequence[str] = ()) -> Tuple[List[str], List[bool]]:
    """(parts, whether each part was written in double quotes: a quoted name is literal)."""
    parts: List[str] = []
    cur: List[str] = []
    quoted_parts: List[bool] = []
    quoted, was_quoted, i = False, False, 0
    while i < len(raw):
        c = raw[i]
        m = None if quoted else _POSITIONAL.match(raw, i)
        if m:
            cur.append(_positional(int(m.group(1)), params))
            i = m.end()
            continue
        if c == '"':
            quoted, was_quoted = not quoted, True
        elif c == ":" and not quoted:
            parts.append("".join(cur))
            quoted_parts.append(was_quoted)
            cur, was_quoted = [], False
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    quoted_parts.append(was_quoted)
    return parts, quoted_parts


_POSITIONAL = re.compile(r"\$(\d+)")


def _positional(index: int, params: Sequence[str]) -> str:
    if index == 0:
        raise AttachPointError("positional parameters start at $1")
    if index > len(params):
        given = f"only {len(params)} were given" if params else "none were given"
        raise AttachPointError(f"the attach point uses positional parameter ${index}, but {given}")
    if params[index - 1] == "":
        raise AttachPointError(f"positional parameter ${index} is empty")
    return params[index - 1]


def _rate(provider: str, parts: List[str]) -> ProbeSpec:
    if len(parts) == 1 and parts[0] not in TIME_UNITS:
        # interval:1s, interval:100ms, interval:1000000 (ns): bpftrace 0.27 keeps it in microseconds
        from kubectl_pytrace.lang.literals import parse_int

        try:
            ns = parse_int(parts[0])
        except ValueError:
            raise AttachPointError(f"invalid {provider} period '{parts[0]}': a duration (1s, 100ms) or a "
                                   f"number of nanoseconds") from None
        if ns < 1000:
            raise AttachPointError(f"Invalid rate of {provider} probe. Minimum is 1000 or 1us. Found: {ns} "
                                   f"nanoseconds")
        return _rate(provider, ["us", str(ns // 1000)])
    if len(parts) != 2:
        raise AttachPointError(f"{provider} probe takes a unit and a rate: {provider}:s:1, "
                               f"{provider}:ms:100 or {provider}:hz:99")
    unit, value = parts
    if unit not in TIME_UNITS:
        raise AttachPointError(f"invalid {provider} unit '{unit}': use one of s, ms, us, hz")
    try:
        rate = int(value, 0)
    except ValueError:
        raise AttachPointError(f"invalid {provider} rate '{value}': not an integer") from None
    if rate <= 0:
        raise AttachPointError(f"invalid {provider} rate '{value}': must be positive")
    if rate * max(1, TIME_UNITS[unit]) >= 1 << 64:  # the period in ns (or the frequency) is a u64
        raise AttachPointError(f"invalid {provider} rate '{value}': too large")
    return ProbeSpec(provider, unit=unit, rate=rate)


def parse_attach_point(raw: str, params: Sequence[str] = ()) -> ProbeSpec:
    """params: the program's positional parameters, which the attach point may use ($1...)."""
    parts, quoted = _split(raw, params)
    provider = ALIASES.get(parts[0], parts[0])
    rest = parts[1:]
    if provider in ("BEGIN", "END"):
        if rest:
            raise AttachPointError(f"{provider} takes no arguments")
        return ProbeSpec(provider)
    if provider not in PROVIDERS:
        raise AttachPointError(f"unknown probe type '{parts[0]}'")
    if provider in ("software", "hardware") and len(rest) == 2 and rest[1] == "":
        rest = rest[:1]  # software:event: (no count)
    if any(p == "" for p in rest) or not rest:
        raise AttachPointError(f"incomplete attach point '{raw}'")
    if provider == "tracepoint":
        if len(rest) != 2:
            raise AttachPointError("tracepoint probes are written tracepoint:CATEGORY:NAME")
        return ProbeSpec(provider, target=rest[0], func=rest[1])
    if provider in ("uprobe", "uretprobe"):
        if len(rest) < 2:
            raise AttachPointError(f"{provider} probes are written {provider}:PATH:FUNCTION "
                                   f"or {provider}:PATH:0xADDRESS")
        target, func = rest[0], ":".join(rest[1:])
        if any(quoted[2:]):  # "main.(*Server).Handle": the name itself, no wildcard
            return ProbeSpec(provider, target=target, func=func, literal=True)
        if func.lower().startswith("0x"):
            try:
                return ProbeSpec(provider, target=target, address=int(func, 16))
            except ValueError:
                raise AttachPointError(f"invalid address '{func}'") from None
        return ProbeSpec(provider, target=target, func=func)
    if provider == "usdt":
        if len(rest) == 2:
            return ProbeSpec(provider, target=rest[0], func=rest[1])
        if len(rest) == 3:
            return ProbeSpec(provider, target=rest[0], ns=rest[1], func=rest[2])
        raise AttachPointError("usdt probes are written usdt:PATH:[PROVIDER:]NAME")
    if provider in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
        if len(rest) == 1:
            return ProbeSpec(provider, func=rest[0])
        if len(rest) == 2:
            return ProbeSpec(provider, target=rest[0], func=rest[1])
        raise AttachPointError(f"{provider} probes are written {provider}:FUNCTION")
    if provider == "rawtracepoint":  # rawtracepoint[:module]:event
        if len(rest) == 1:
            return ProbeSpec(provider, func=rest[0])
        if len(rest) == 2:
            return ProbeSpec(provider, target=rest[0], func=rest[1])
        raise AttachPointError("rawtracepoint probes are written rawtracepoint[:MODULE]:EVENT")
    if provider in ("software", "hardware"):  # software:event[:count]
        events = SOFTWARE_EVENTS if provider == "software" else HARDWARE_EVENTS
        if len(rest) > 2:
            raise AttachPointError(f"{provider} probes are written {provider}:EVENT[:COUNT]")
        if EVENT_ALIASES.get(rest[0], rest[0]) not in events:
            raise AttachPointError(f"{rest[0]} is not a {provider} probe")
        rate = 0
        if len(rest) == 2:
            from kubectl_pytrace.lang.literals import parse_int

            try:
                rate = parse_int(rest[1])
            except ValueError:
                raise AttachPointError(f"invalid {provider} count '{rest[1]}'") from None
            if rate <= 0 or rate >= 1 << 64:
                raise AttachPointError(f"invalid {provider} count '{rest[1]}': must be positive")
        return ProbeSpec(provider, func=rest[0], rate=rate)
    if provider == "iter":  # iter:task, iter:task_file, iter:task_vma
        if len(rest) != 1:
            raise AttachPointError("iter probes are written iter:NAME (pinning them is not supported)")
        return ProbeSpec(provider, func=rest[0])
    return _rate(provider, rest)  # profile, interval
