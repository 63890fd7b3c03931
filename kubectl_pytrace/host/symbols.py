"""User-space symbolization: (pid, address) -> "function+offset", through /proc/PID/maps
(kernel/procfs.read_maps) and ELF symbols. The file is opened through /proc/PID/root, so
processes in containers resolve against their own files."""

from __future__ import annotations

import bisect
import os
from typing import Dict, List, Optional, Tuple

from kubectl_pytrace.host.elf import ELFError, open_elf
from kubectl_pytrace.kernel import procfs


class UserSymbols:
    def __init__(self, proc_root: str = "/proc"):
        self.proc_root = proc_root
        self._maps: Dict[int, Tuple[List[int], List[procfs.Mapping]]] = {}

    def _mappings(self, pid: int) -> Tuple[List[int], List[procfs.Mapping]]:
        if pid not in self._maps:
            maps = procfs.read_maps(self.proc_root, pid)
            self._maps[pid] = ([m.start for m in maps], maps)
        return self._maps[pid]

    def resolve(self, pid: int, addr: int) -> Optional[Tuple[str, int, str]]:
        """(function, offset, file) or None."""
        starts, maps = self._mappings(pid)
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or addr >= maps[i].end:
            return None
        m = maps[i]
        host_path = f"{self.proc_root}/{pid}/root{m.path}"
        if not os.path.exists(host_path):
            host_path = m.path
        try:
            elf = open_elf(host_path)
        except ELFError:
            return None
        vaddr = elf.offset_to_vaddr(addr - m.start + m.offset)
        if vaddr is None:
            return None
        found = elf.symbolize(vaddr)
        if found is None:
            return None
        return found[0], found[1], m.path

    def usym(self, pid: int, addr: int, offset: bool = False) -> str:
        found = self.resolve(pid, addr)
        if found is None:
            return f"0x{addr:x}"
        return f"{found[0]}+{found[1]}" if offset else found[0]
