"""User-space symbolization: (pid, address) -> "function+offset", through /proc/PID/maps and ELF symbols.

A line of /proc/PID/maps:
    55d0c1a3e000-55d0c1a3f000 r-xp 00001000 fe:01 1311862    /usr/bin/calls
The file is opened through /proc/PID/root, so processes in containers resolve against their own files.
"""

from __future__ import annotations

import bisect
import os
from typing import Dict, List, Optional, Tuple

from kubectl_pytrace.tracer.elf import ELFError, open_elf

Mapping = Tuple[int, int, int, str]  # start, end, file offset, path


def read_maps(pid: int, proc_root: str = "/proc") -> List[Mapping]:
    out = []
    try:
        with open(f"{proc_root}/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6 or not parts[5].startswith("/"):
                    continue
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end, int(parts[2], 16), parts[5].rstrip("\n")))
    except OSError:
        return []
    return sorted(out)


class UserSymbols:
    def __init__(self, proc_root: str = "/proc"):
        self.proc_root = proc_root
        self._maps: Dict[int, List[Mapping]] = {}

    def _mappings(self, pid: int) -> List[Mapping]:
        if pid not in self._maps:
            self._maps[pid] = read_maps(pid, self.proc_root)
        return self._maps[pid]

    def resolve(self, pid: int, addr: int) -> Optional[Tuple[str, int, str]]:
        """(function, offset, file) or None."""
        maps = self._mappings(pid)
        i = bisect.bisect_right(maps, (addr, float("inf"), 0, "")) - 1
        if i < 0 or addr >= maps[i][1]:
            return None
        start, _end, off, path = maps[i]
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        host_path = f"{self.proc_root}/{pid}/root{path}"
        if not os.path.exists(host_path):
            host_path = path
        try:
            elf = open_elf(host_path)
        except ELFError:
            return None
        vaddr = elf.offset_to_vaddr(addr - start + off)
        if vaddr is None:
            return None
        found = elf.symbolize(vaddr)
        if found is None:
            return None
        return found[0], found[1], path

    def usym(self, pid: int, addr: int, offset: bool = False) -> str:
        found = self.resolve(pid, addr)
        if found is None:
            return f"0x{addr:x}"
        return f"{found[0]}+{found[1]}" if offset else found[0]
