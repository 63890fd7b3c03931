"""`firewall` and `shape` from their settings to the end: what `--local` and the tracer pod both run.

    settings = firewall_settings(deny, deny_from, mode, interface, ...)   # checked, JSON-able
    run("firewall", settings, [NetTarget...], emit, deadline, updates)

The settings are what the trace's configuration carries to the node (traceconfig "options"): rule
texts, rates as numbers, the interface name. Everything is parsed again where it is used, so a
bad value is refused on the client before anything is created and on the node all the same.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from kubectl_pytrace.errors import UsageError
from kubectl_pytrace.guard import report, rules, runner
from kubectl_pytrace.guard.netns import NetTarget
from kubectl_pytrace.guard.runner import Emit, Unit

KINDS = ("firewall", "shape")
_IFNAME = re.compile(r"^[^\s/:]{1,15}$")


def check_interface(name: str) -> str:
    if not _IFNAME.match(name) or name in (".", ".."):
        raise UsageError(f"invalid interface name {name!r}",
                         hint="a Linux interface name: 1-15 characters, no space, '/' or ':'")
    return name


def firewall_settings(deny: Sequence[str], deny_from: Sequence[str], mode: str, interface: str,
                      interval: float, force: bool) -> Dict[str, Any]:
    parsed = rules.parse_rules(deny, deny_from)
    return {"rules": rules.to_config(parsed), "mode": mode, "interface": check_interface(interface),
            "interval": interval, "force": force, "generation": 1}


def shape_settings(rate: str, burst: Optional[str], to: Sequence[str], mode: str, interface: str,
                   interval: float, force: bool) -> Dict[str, Any]:
    from kubectl_pytrace.guard import shape

    bps = shape.parse_rate(rate)
    nets = [str(rules.parse_cidr(c)) for c in to]
    burst_bytes = shape.parse_size(burst) if burst else None
    return {"rate": bps, "burst": burst_bytes, "to": nets, "mode": mode, "interface": check_interface(interface),
            "interval": interval, "force": force, "generation": 1}


# ---- starting units --------------------------------------------------------------------------

def _firewall(settings: Dict[str, Any], target: NetTarget) -> Unit:
    from kubectl_pytrace.guard.firewall import Firewall

    return Firewall.start(target, settings["interface"], rules.from_config(settings["rules"]),
                          settings["mode"], bool(settings.get("force")))


def _shape(settings: Dict[str, Any], target: NetTarget) -> Unit:
    from kubectl_pytrace.guard import shape

    return shape.Shaper.start(target, settings["interface"], int(settings["rate"]), settings.get("burst"),
                              [rules.parse_cidr(c) for c in settings.get("to", [])], settings["mode"],
                              bool(settings.get("force")))


def _apply(kind: str) -> Callable[[Unit, Dict[str, Any]], str]:
    def apply(unit: Unit, settings: Dict[str, Any]) -> str:
        if kind == "firewall":
            new = rules.from_config(settings["rules"])
            unit.update(new)  # type: ignore[attr-defined]
            return f"firewall rules updated (generation {settings.get('generation')}): {', '.join(r.text for r in new)}"
        unit.update(int(settings["rate"]), settings.get("burst"))  # type: ignore[attr-defined]
        return f"shaper rate updated (generation {settings.get('generation')}): {settings['rate']} bit/s"
    return apply


def start(kind: str, settings: Dict[str, Any], targets: Sequence[NetTarget], emit: Emit) -> List[Unit]:
    """One unit per target, attached; on a failure those already attached are detached."""
    make = _firewall if kind == "firewall" else _shape
    units: List[Unit] = []
    try:
        for i, t in enumerate(targets, 1):
            units.append(make(settings, t))
            emit({"stderr": report.describe_start(kind, units[-1].report()), "src": i})
    except BaseException:
        for u in units:
            u.close()
        raise
    return units


Updates = Optional[Callable[[], Optional[Dict[str, Any]]]]


def run(kind: str, settings: Dict[str, Any], targets: Sequence[NetTarget], emit: Emit,
        deadline: Optional[float] = None, updates: Updates = None,
        applied: Optional[Callable[[Dict[str, Any]], None]] = None,
        started: Optional[Callable[[], None]] = None) -> str:
    """Attaches (then calls started()), then reports until the end (runner.run); updates() is
    polled for new settings and applied() told once they are in place."""
    units = start(kind, settings, targets, emit)
    try:
        if started is not None:
            started()
    except BaseException:
        for u in units:
            u.close()
        raise
    job = runner.Job(kind, units, float(settings.get("interval") or 5.0), deadline, updates, _apply(kind), applied)
    return runner.run(job, emit)
