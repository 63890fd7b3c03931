"""`--merge`: the maps of several tracers (one per node) combined into one, as if one program had
seen every event: counts and sums added, histograms added bucket by bucket, min/max of the
minima/maxima, avg/stats from the summed counts and totals. Plain values (`@start[tid] = nsecs`)
are united; where two tracers have the same key, the later tracer's value wins.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence, Tuple

from kubectl_pytrace.output.values import MapDump


def _combine(kind: str, a: Any, b: Any) -> Any:
    if kind in ("count", "sum"):
        return a + b
    if kind == "min":
        return min(a, b)
    if kind == "max":
        return max(a, b)
    if kind in ("avg", "stats"):  # (count, total)
        return (a[0] + b[0], a[1] + b[1])
    if kind in ("hist", "lhist"):
        out = dict(a)
        for bucket, n in b.items():
            out[bucket] = out.get(bucket, 0) + n
        return out
    return b  # a plain value: the later one


def merge_dumps(dumps: Sequence[MapDump]) -> MapDump:
    """One map from the same map of several tracers (same name, same kind)."""
    first = dumps[0]
    entries: Dict[Tuple, Any] = {}
    for d in dumps:
        if d.kind != first.kind:
            raise ValueError(f"map {d.name} is a {d.kind} on one node and a {first.kind} on another")
        for key, value in d.entries:
            entries[key] = _combine(d.kind, entries[key], value) if key in entries else value
    return MapDump(first.name, first.kind, list(entries.items()), lhist=first.lhist,
                   value_type=first.value_type, key_kinds=first.key_kinds, hist_bits=first.hist_bits,
                   signed=first.signed, scalar=first.scalar)


def merge_all(per_tracer: Iterable[List[MapDump]]) -> List[MapDump]:
    """Every map, merged across tracers, in first-seen order."""
    by_name: Dict[str, List[MapDump]] = {}
    for dumps in per_tracer:
        for d in dumps:
            by_name.setdefault(d.name, []).append(d)
    return [merge_dumps(ds) for ds in by_name.values()]
