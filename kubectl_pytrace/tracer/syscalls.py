"""The system calls a container makes on this host, counted in the kernel: the trace of
guard/seccomp.PROGRAM, scoped like any trace (`seccomp --local`; in a cluster the tracer pods run
the same trace and k8s/guard.py takes the maps).

    counts = record(container_id="3f2a9c1e0b7d", pid=None, seconds=30.0)    # {nr: calls}
"""

from __future__ import annotations

import io
import sys
from typing import IO, Dict, Optional

from kubectl_pytrace.guard import seccomp
from kubectl_pytrace.output.wire import WireOutput, maps_of, parse_line
from kubectl_pytrace.tracer import session


def record(container_id: Optional[str], pid: Optional[int], seconds: float, stderr: IO = sys.stderr) -> Dict[int, int]:
    """Counts until `seconds` have passed (or SIGINT/SIGTERM); the map as the tracer leaves it."""
    buf = io.StringIO()
    spec = session.TraceSpec(text=seccomp.PROGRAM, filename="seccomp.bt", deadline=seconds,
                             container_ids=[container_id] if container_id else [], pid=pid)
    session.run(spec, stderr=stderr, output=WireOutput(buf), announce=lambda n: None)
    dumps = [d for line in buf.getvalue().splitlines() for d in maps_of(parse_line(line) or {})]
    return seccomp.syscall_counts(dumps)
