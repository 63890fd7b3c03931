"""The `config = { ... }` block: bpftrace 0.27's configuration variables, checked as it checks them.

    config = {
        missing_probes = warn;      # attach points that do not exist: error | warn | ignore
        max_strlen = 128;           # bytes str() and buf() read at most
        print_maps_on_exit = false;
    }

Keys may be spelled stack_mode, STACK_MODE or BPFTRACE_STACK_MODE. A key that does not exist, or a
value of the wrong kind, is an error at the item. Keys that only tune bpftrace's own resources
(log_size, max_probes, perf_rb_pages, ...) are accepted and have no effect here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang.diagnostics import Diagnostics
from kubectl_pytrace.lang.types import STRLEN

STACK_MODES = ("bpftrace", "perf", "raw", "build_id")
LICENSES = ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL")
MAX_STRLEN = 1024  # the most one string may hold here (kubectl-pytrace keeps strings on the BPF stack)


@dataclass
class Config:
    # None: kubectl-pytrace's default, bpftrace 0.17's rules: a missing uprobe function or a kprobe
    # wildcard matching nothing is skipped with a warning, anything else is an error (bpftrace
    # 0.27's default is error for all; `warn` and `ignore` skip any missing attach point)
    missing_probes: Optional[str] = None
    max_strlen: int = STRLEN
    print_maps_on_exit: bool = True
    max_map_keys: int = 4096
    stack_mode: str = "bpftrace"
    str_trunc_trailer: str = ".."
    max_cat_bytes: int = 10240
    license: str = "GPL"


_INT, _BOOL, _STR = "int", "bool", "str"
# key -> kind of value; None: accepted, no effect here
KEYS = {
    "missing_probes": _STR, "max_strlen": _INT, "print_maps_on_exit": _BOOL, "max_map_keys": _INT,
    "stack_mode": _STR, "str_trunc_trailer": _STR, "max_cat_bytes": _INT, "license": _STR,
    "cache_user_symbols": None, "cpp_demangle": None, "lazy_symbolication": None, "log_size": None,
    "max_bpf_progs": None, "max_probes": None, "on_stack_limit": None, "perf_rb_pages": None,
    "show_debug_info": None, "use_blazesym": None, "unstable_import_statement": None,
    "unstable_tseries": None, "unstable_typeinfo": None, "unstable_dw_ustack": None, "unstable_map_decl": None,
}
RENAMED = {"strlen": "max_strlen", "no_cpp_demangle": "cpp_demangle", "cat_bytes_max": "max_cat_bytes",
           "map_keys_max": "max_map_keys"}
ENV_ONLY = ("btf", "kernel_build", "kernel_source", "vmlinux")


def _bool(value) -> object:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return None


def read_config(items: List[ast.ConfigItem], diags: Diagnostics) -> Config:
    cfg = Config()
    for item in items:
        key = item.key.lower()
        if key.startswith("bpftrace_"):
            key = key[len("bpftrace_"):]
        if key in RENAMED:
            diags.error(f"{item.key}: key has been renamed to '{RENAMED[key]}'", item.span)
            continue
        if key in ENV_ONLY:
            diags.error(f"{item.key}: can only be set as an environment variable", item.span)
            continue
        if key not in KEYS:
            diags.error(f"{item.key}: not a known configuration option", item.span)
            continue
        value = item.value
        kind = KEYS[key]
        if key.startswith("unstable_"):
            ok = _bool(value) is not None or str(value) in ("enable", "warn", "error")
            if not ok:
                diags.error(f"{item.key}: Invalid value for unstable config: valid values are enable, warn, "
                            f"and error.", item.span)
            continue
        if kind is None:
            continue
        if kind == _INT:
            if isinstance(value, bool) or not isinstance(value, int):
                diags.error(f"{item.key}: expecting a number, got {value}", item.span)
                continue
        elif kind == _BOOL:
            value = _bool(value)
            if value is None:
                diags.error(f"{item.key}: Invalid bool value: valid values are true, false, 1 or 0.", item.span)
                continue
        else:
            value = str(value)
        if key == "missing_probes" and value not in ("error", "warn", "ignore"):
            diags.error(f"{item.key}: Invalid value for missing_probes: valid values are ignore, warn, and "
                        f"error.", item.span)
            continue
        if key == "stack_mode" and value not in STACK_MODES:
            diags.error(f"{item.key}: Invalid value for stack_mode: valid values are "
                        f"{', '.join(STACK_MODES)}.", item.span)
            continue
        if key == "license" and value not in LICENSES:
            diags.error(f"{item.key}: Invalid value for license. Found: {value}. Valid values: "
                        f"{', '.join(LICENSES)}", item.span)
            continue
        if key == "max_strlen" and not 1 <= value <= MAX_STRLEN:  # type: ignore[operator]
            diags.error(f"{item.key}: kubectl-pytrace reads strings of at most {MAX_STRLEN} bytes", item.span)
            continue
        if key == "max_map_keys" and not 1 <= value <= 1 << 24:  # type: ignore[operator]
            diags.error(f"{item.key}: must be between 1 and {1 << 24}", item.span)
            continue
        setattr(cfg, key, value)
    return cfg
