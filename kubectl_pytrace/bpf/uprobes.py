"""Many uprobes on one file through uprobe_multi links, skipping the offsets the kernel refuses and
those it would execute wrongly.

    refused = attach_many(prog_fd, path, offsets, cookies, retprobe, keep=links.append)
    why = unsafe(first_bytes(path, [offset])[0])     # None, or why a uprobe there breaks the program

A uprobe_multi link is all or nothing: one offset whose first instruction the kernel's uprobe
decoder rejects (LOCK or segment prefixes, most VEX-encoded AVX code: libc has a few dozen) fails
the whole link, and the kernel does not say which. Each failed attempt costs ~40-60 ms (an RCU
grace period: the uprobes registered so far are unregistered), unless attempts fail at the same
time. So the offsets whose first instruction looks suspect get a link each, attempted SUSPECTS at
a time (16 refusals: 0.04 s instead of 0.6 s); the rest go in one link; a group that still fails
is halved, down to single offsets. Refused offsets are remembered for this file and kernel (the
cache below), so that the next trace does not pay again. As bpftrace 0.17 skips a wildcard's
matches that cannot be attached, the caller skips those.

Unsafe offsets: x86 uprobes emulate some instructions instead of single-stepping them (jumps,
calls, pushes, nops), chosen by the opcode byte alone; a VEX/EVEX-encoded vector instruction whose
opcode byte is one of those is then "emulated" as a branch or push and never executed. Measured on
Linux 6.18: a uprobe on libc's __memset_avx512_unaligned_erms (vpbroadcastb %esi,%zmm16: EVEX,
opcode 0x7a, "jp") made every process's memset write garbage. Such offsets are never attached.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from kubectl_pytrace.bpf import links
from kubectl_pytrace.files import atomic_write, cache_dir, file_identity

SPLIT = 2  # parts a failed group is split into
SUSPECTS = 8  # single-offset attempts in flight at once

_LEGACY_PREFIXES = frozenset(b"\x66\x67\xf2\xf3")
_BAD_PREFIXES = frozenset(b"\xf0\x26\x2e\x36\x3e")  # LOCK, ES/CS/SS/DS: refused by the kernel
_VECTOR_ESCAPES = {0xC5: 1, 0xC4: 2, 0x62: 3}  # VEX (2 and 3 bytes), EVEX: payload bytes before the opcode
_EMULATED_OPCODES = frozenset([*range(0x50, 0x58), *range(0x70, 0x80), 0x90, 0xE8, 0xE9, 0xEB])
UNSAFE = ("its first instruction is a VEX/EVEX vector instruction that the kernel would emulate as a "
          "jump, call or push instead of running it (x86 uprobes), breaking the traced program")


def _opcode_start(code: bytes) -> int:
    """Index of the first byte after legacy and REX prefixes (len(code): prefixes only)."""
    for i, b in enumerate(code):
        if not (b in _LEGACY_PREFIXES or b in _BAD_PREFIXES or 0x40 <= b <= 0x4F):
            return i
    return len(code)


def unsafe(code: bytes) -> Optional[str]:
    """Why a uprobe on the x86-64 instruction starting `code` must not be attached, or None."""
    i = _opcode_start(code)
    payload = _VECTOR_ESCAPES.get(code[i]) if i < len(code) else None
    if payload is not None and i + 1 + payload < len(code) and code[i + 1 + payload] in _EMULATED_OPCODES:
        return UNSAFE
    return None


def suspect(code: bytes) -> bool:
    """Whether uprobes may refuse the instruction starting `code`: a guess that only orders the
    attempts (a wrong one costs time, never a probe)."""
    i = _opcode_start(code)
    return i == len(code) or any(b in _BAD_PREFIXES for b in code[:i]) or code[i] in _VECTOR_ESCAPES


def first_bytes(path: str, offsets: Sequence[int], n: int = 16) -> List[bytes]:
    with open(path, "rb") as f:
        fd = f.fileno()
        return [os.pread(fd, n, off) for off in offsets]


Group = List[int]  # indices into offsets


def attach_many(prog_fd: int, path: str, offsets: Sequence[int], cookies: Sequence[int], retprobe: bool,
                keep: Callable[[int], None]) -> Dict[int, OSError]:
    """Hands every link made to keep(fd) at once; returns {index: error} of the offsets the
    kernel refused (or would break: errno 0, UNSAFE)."""
    code = first_bytes(path, offsets)
    known = RefusedCache(path)
    refused: Dict[int, OSError] = {}
    odd: List[int] = []
    plain: List[int] = []
    for i, c in enumerate(code):
        if unsafe(c):
            refused[i] = OSError(0, UNSAFE)
        elif offsets[i] in known.errnos:
            refused[i] = OSError(known.errnos[offsets[i]], os.strerror(known.errnos[offsets[i]]))
        else:
            (odd if suspect(c) else plain).append(i)
    for group, result in _attempt_all(prog_fd, path, offsets, cookies, retprobe, [[i] for i in odd]):
        if isinstance(result, OSError):
            refused[group[0]] = result
            known.add(offsets[group[0]], result.errno)
        else:
            keep(result)
    groups: List[Group] = [plain] if plain else []
    while groups:  # one after another: halving a failed group
        group = groups.pop(0)
        try:
            keep(_link(prog_fd, path, offsets, cookies, retprobe, group))
        except OSError as e:
            if len(group) == 1:
                refused[group[0]] = e
                known.add(offsets[group[0]], e.errno)
            else:
                size = -(-len(group) // SPLIT)
                groups[:0] = [group[k:k + size] for k in range(0, len(group), size)]
    known.save()
    return refused


def _link(prog_fd: int, path: str, offsets: Sequence[int], cookies: Sequence[int], retprobe: bool,
          group: Group) -> int:
    return links.uprobe_multi(prog_fd, path, [offsets[i] for i in group], [cookies[i] for i in group], retprobe)


def _attempt_all(prog_fd: int, path: str, offsets: Sequence[int], cookies: Sequence[int], retprobe: bool,
                 groups: List[Group]) -> List[Tuple[Group, Union[int, OSError]]]:
    """Each group's link fd or error, SUSPECTS attempts at a time (their grace periods overlap)."""
    def attempt(group: Group) -> Union[int, OSError]:
        try:
            return _link(prog_fd, path, offsets, cookies, retprobe, group)
        except OSError as e:
            return e

    if len(groups) < 2:
        return [(g, attempt(g)) for g in groups]
    with ThreadPoolExecutor(SUSPECTS) as pool:
        return list(zip(groups, pool.map(attempt, groups)))


class RefusedCache:
    """The offsets of one file the running kernel refused to probe, with their errno: the kernel
    decides by the instruction there, so they stay refused while the file and the kernel stay."""

    def __init__(self, path: str):
        ident = json.dumps([file_identity(path), os.uname().release, os.path.realpath(path)])
        self.path = cache_dir("uprobes", hashlib.sha256(ident.encode()).hexdigest() + ".json")
        try:
            with open(self.path) as f:
                self.errnos: Dict[int, int] = {int(k): v for k, v in json.load(f).items()}
        except (OSError, ValueError, AttributeError):
            self.errnos = {}
        self.changed = False

    def add(self, offset: int, errno: int) -> None:
        if errno and self.errnos.get(offset) != errno:
            self.errnos[offset] = errno
            self.changed = True

    def save(self) -> None:
        if self.changed:
            atomic_write(self.path, json.dumps(self.errnos).encode())
