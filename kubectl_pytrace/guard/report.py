"""The counters of a firewall or a shaper as the user reads them: text tables or JSON lines.

    text(kind, report, label="") -> str        several lines, ending in a newline
    as_json(kind, report, labels) -> str       one JSON object and a newline

Used on this host (`--local`) and by the plugin for the records its tracer pods send.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _bits(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.0f} bit/s"


def _header(kind: str, r: Dict[str, Any], label: str) -> str:
    when = "final counters" if r.get("final") else f"after {r.get('elapsed', 0):.1f} s"
    where = f"{label} " if label else ""
    return f"{where}{kind} on {r.get('interface')} ({r.get('target')}), {when}:\n"


def _firewall(r: Dict[str, Any], label: str) -> str:
    rows = [(x["rule"], x["packets"], x["bytes"]) for x in r.get("rules", [])]
    rows.append(("(passed)", r["passed"]["packets"], r["passed"]["bytes"]))
    if r.get("non_ip", {}).get("packets"):
        rows.append(("(not IP: passed)", r["non_ip"]["packets"], r["non_ip"]["bytes"]))
    width = max(len(row[0]) for row in rows + [("RULE", 0, 0)])
    verb = "DROPPED" if r.get("mode") == "drop" else "MATCHED"
    out = [f"  {'RULE':<{width}}  {verb + ' PACKETS':>16}  {'BYTES':>12}"]
    out += [f"  {name:<{width}}  {packets:>16}  {_size(nbytes):>12}" for name, packets, nbytes in rows]
    return _header("firewall", r, label) + "\n".join(out) + "\n"


def _shape(r: Dict[str, Any], label: str) -> str:
    lines = [f"  passed  {r['passed']['packets']:>9} packets  {_size(r['passed']['bytes']):>10}",
             f"  delayed {r['delayed']['packets']:>9} packets  {_size(r['delayed']['bytes']):>10}",
             f"  dropped {r['dropped']['packets']:>9} packets  {_size(r['dropped']['bytes']):>10}"]
    if r.get("to"):
        lines.append(f"  other   {r['other']['packets']:>9} packets  {_size(r['other']['bytes']):>10}  "
                     f"(not to {', '.join(r['to'])}: not shaped)")
    lines.append(f"  sent at {_bits(r.get('sent_bps', 0))} since the last report (limit {_bits(r['rate_bps'])}, "
                 f"{r['mode']})")
    return _header("shaper", r, label) + "\n".join(lines) + "\n"


def text(kind: str, r: Dict[str, Any], label: str = "") -> str:
    return _firewall(r, label) if kind == "firewall" else _shape(r, label)


def as_json(kind: str, r: Dict[str, Any], labels: Optional[Dict[str, str]] = None) -> str:
    return json.dumps({"type": kind, **r, **(labels or {})}) + "\n"


def describe_start(kind: str, r: Dict[str, Any]) -> str:
    """The line said once the program is attached."""
    if kind == "firewall":
        n = len(r.get("rules", []))
        replaced = f"; --force took off the XDP program that was there ({r['replaced']})" if r.get("replaced") else ""
        return (f"kubectl-pytrace: firewall on {r['interface']} ({r['target']}): {r['attach']}, {n} rule"
                f"{'s' if n != 1 else ''}, mode {r['mode']}{replaced}")
    return (f"kubectl-pytrace: shaper on {r['interface']} ({r['target']}): {r['attach']}, "
            f"{_bits(r['rate_bps'])}, burst {_size(r['burst_bytes'])}; {r['why']}")
