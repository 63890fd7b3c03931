"""What the compiler hands to the runtime: the C text plus how to attach, decode and print.

Kept apart from the code generator so that the tracer can load a compiled program from its cache
without importing the compiler (start-up time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from kubectl_pytrace.lang.layout import Record
from kubectl_pytrace.lang.probes import ProbeSpec
from kubectl_pytrace.lang.scope import PidView, ScopeFilter
from kubectl_pytrace.lang.types import AggT, Type

MAP_MAX_ENTRIES = 4096  # bpftrace's default (BPFTRACE_MAP_KEYS_MAX)
STACK_MAP_ENTRIES = 4096


@dataclass(frozen=True)
class CodegenOptions:
    scope: Optional[ScopeFilter] = None  # trace only one container's tasks (lang/scope.py)
    ns_pids: bool = False  # `pid`/`tid` as seen inside the target's pid namespace
    pid_view: Optional[PidView] = None  # `pid`/`tid` in the tracer's namespace, when not the initial one
    ringbuf_pages: int = 4096  # 16 MiB: 300k printf events fit without a reader
    map_max_entries: int = MAP_MAX_ENTRIES
    kprobe_mode: str = "kprobe"  # or "fentry" where kprobes are not available
    unsafe: bool = False  # --unsafe: system(), signal() and override() are allowed


@dataclass
class EventSpec:
    """One kind of record in the ring buffer, identified by the u64 at its start."""

    id: int
    kind: str  # printf print_value print_map time exit clear zero join cat
    record: Record  # the fields after the id
    fmt: object = None  # parsed printf format (printf, cat), strftime text (time), separator (join)
    map: Optional[str] = None  # print_map / clear / zero
    top: int = 0
    div: int = 0
    where: Optional[Tuple[str, int, int, str]] = None  # errorf/warnf: file, line, column, "file:l:c-e"


@dataclass
class MapSpec:
    name: str
    cname: str
    key: Optional[Record]  # None for a scalar map (u64 key 0)
    value_type: Type  # storage type, or AggT
    bucketed: bool = False  # hist/lhist: the key ends with a u64 bucket number

    @property
    def per_cpu(self) -> bool:
        return isinstance(self.value_type, AggT)


@dataclass
class AttachSpec:
    """One attachment the tracer must make: spec -> C function."""

    spec: ProbeSpec
    fn_name: str
    probe_id: int
    internal: bool = False  # a probe of the runtime's own (container scope), not of the program
    # one of several attach points of a probe, or a wildcard's match: bpftrace 0.17 skips such an
    # attachment when it fails ("could not attach probe X, skipping."); a lone one is an error
    optional: bool = False
    by_cookie: bool = False  # the function reads probe_id from the attachment's BPF cookie


@dataclass
class CProgram:
    text: str
    attachments: List[AttachSpec]
    events: Dict[int, EventSpec]
    maps: Dict[str, MapSpec]
    probe_names: List[str]
    begin_fn: Optional[str] = None
    end_fn: Optional[str] = None
    uses_stacks: bool = False
    uses_elapsed: bool = False
    uses_cpid: bool = False
    kprobe_mode: str = "kprobe"
    # from the program's config block
    print_maps_on_exit: bool = True
    str_trunc_trailer: str = ".."
    max_cat_bytes: int = 10240


# The runtime's own maps, in every program: declared by the code generator, opened by the tracer
# by these names (the container scope's maps are named in scope.py).
EVENTS_MAP = "pytrace_events"  # the ring buffer every event goes through
LOST_MAP = "pytrace_lost"  # per-CPU count of events the full ring buffer refused
CONFIG_MAP = "pytrace_config"  # u64 slots the tracer writes before attaching:
CONFIG_SLOTS = 4
CONFIG_START_NS = 0  # the start time (for `elapsed`)
CONFIG_CPID = 1  # the -c command's pid (`cpid`)
STACKS_MAP = "pytrace_stacks"  # stack traces (kstack/ustack), only in programs that take them
FUNCS_MAP = "pytrace_funcs"  # probe id -> `func`, for functions that read it by cookie
