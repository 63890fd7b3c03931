"""One fixed BPF program of this package, compiled by BCC (in a subprocess, cached) and loaded with
plain bpf(2), with its maps.

    prog = LoadedProgram.load(C_SOURCE, "pytrace_fw", "xdp")
    prog.fd, prog.map("fw_rules") -> RawMap, prog.close()

The C is a constant of the module that uses it: values the user gives (rules, rates) reach the
program through maps only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict

from kubectl_pytrace.bpf.loader import Loader
from kubectl_pytrace.bpf.objects import CompileFailed, compile_bpf
from kubectl_pytrace.bpf.syscalls import BPFError, RawMap, VerifierError
from kubectl_pytrace.errors import KernelError, TraceError
from kubectl_pytrace.kernel import headers as kheaders

PROG_TYPES = {"sched_cls": 3, "xdp": 6}
PER_CPU_MAP_TYPES = {5, 6, 10}  # percpu hash, percpu array, lru percpu hash


def _headers() -> str:
    found = kheaders.find_headers()
    os.environ.update(found.env())
    return f"{found.path}:{found.release}"


@dataclass
class LoadedProgram:
    loader: Loader
    name: str
    fd: int

    @staticmethod
    def load(source: str, name: str, kind: str) -> "LoadedProgram":
        if os.geteuid() != 0:
            raise TraceError("loading BPF programs needs root (CAP_BPF and CAP_NET_ADMIN)", hint="run it with sudo")
        try:
            obj = compile_bpf(source, [name], headers=_headers())
        except CompileFailed as e:
            raise KernelError(f"BCC could not compile the {name} program: {e}", hint=e.log[-2000:] or None) from None
        loader = Loader(obj, "")
        try:
            loader.create_maps()
            fd = loader.load(name, PROG_TYPES[kind])
        except VerifierError as e:
            loader.close()
            raise TraceError(f"the kernel refused the {name} program: {e.strerror}", hint=e.log[-3000:]) from None
        except BPFError as e:
            loader.close()
            raise TraceError(f"cannot load the {name} program: {e.strerror}") from None
        return LoadedProgram(loader, name, fd)

    def map(self, name: str) -> RawMap:
        m = self.loader.obj.maps[name]
        return RawMap(self.loader.map_fds[name], m.key_size, m.value_size, per_cpu=m.type in PER_CPU_MAP_TYPES)

    def maps(self) -> Dict[str, RawMap]:
        return {n: self.map(n) for n in self.loader.obj.maps}

    def close(self) -> None:
        self.loader.close()
