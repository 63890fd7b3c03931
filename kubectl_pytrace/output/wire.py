"""The tracer pod's output: one JSON object per line on stdout, read back by the plugin through the
pod's logs and printed there with the user's -o (text or JSON), prefixes and --merge.

A record is a dict with one of these keys (plus "src" where an event has a source):

    {"hello": {"version": "0.1.0", "node": "worker-1", "targets": [...]}}  first line
    {"status": "compiling"}                 progress: compiling, attaching
    {"stderr": "Attached 3 probes"}         what `run --local` prints on stderr
    {"attached": 3}
    {"printf": "text", "src": 1}            src: which of the tracer's targets (1-based) the event
    {"time": ..}, {"cat": ..}, {"join": ..}, {"syscall": ..}    came from; 0: none (BEGIN, END...)
    {"value": V, "src": 1}                  print(value)
    {"map": M, "top": 0, "div": 0}          print(@m)
    {"lost": 12}
    {"errorf": "text", "where": [file, line, col, "file:line:col-end"], "severity": "ERROR", "src": 1}
    {"maps": [M, ...]}                      the maps at exit (after "\\n\\n" in text)
    {"exit": 0, "error": null, "hint": null}      last line

V is a value of output/values.py in a tagged form (to_wire/from_wire); M a MapDump. Strings keep
every kernel byte: they are surrogate-escaped str, which json.dumps writes as \\udcXX escapes and
json.loads reads back. Lines that are not JSON objects are the tracer process's own stderr (a
Python traceback, a BCC message) and are shown as they are.
"""

from __future__ import annotations

import json
from typing import IO, Any, Dict, Iterable, List, Optional, Tuple

from kubectl_pytrace.output.printer import Output
from kubectl_pytrace.output.values import Array, Buffer, MapDump, Record, Symbolic

PROTOCOL = 1


# ---- values -----------------------------------------------------------------------------------

def to_wire(v: Any) -> Any:
    """A primitive of output/values.py as JSON: ints and strings as they are, the rest tagged."""
    if v is None:
        return {"none": True}
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return v
    if isinstance(v, Symbolic):
        return {"sym": str(v), "n": v.numeric}
    if isinstance(v, str):
        return v
    if isinstance(v, Record):
        return {"record": [[name, to_wire(x)] for name, x in v]}
    if isinstance(v, Array):
        return {"array": [to_wire(x) for x in v]}
    if isinstance(v, tuple):
        return {"tuple": [to_wire(x) for x in v]}
    if isinstance(v, Buffer):
        return {"buf": bytes(v).hex()}
    raise TypeError(f"no wire form for {type(v).__name__}")


def from_wire(w: Any) -> Any:
    if not isinstance(w, dict):
        return w
    if "none" in w:
        return None
    if "bool" in w:
        return bool(w["bool"])
    if "sym" in w:
        return Symbolic(w["sym"], int(w["n"]))
    if "record" in w:
        return Record((name, from_wire(x)) for name, x in w["record"])
    if "array" in w:
        return Array(from_wire(x) for x in w["array"])
    if "tuple" in w:
        return tuple(from_wire(x) for x in w["tuple"])
    if "buf" in w:
        return Buffer(bytes.fromhex(w["buf"]))
    raise ValueError(f"unknown wire value {w!r}")


def _agg_to_wire(kind: str, v: Any) -> Any:
    if kind in ("hist", "lhist"):
        return [[b, n] for b, n in sorted(v.items())]
    if kind in ("avg", "stats"):
        return list(v)
    if kind == "value":
        return to_wire(v)
    return v


def _agg_from_wire(kind: str, w: Any) -> Any:
    if kind in ("hist", "lhist"):
        return {int(b): int(n) for b, n in w}
    if kind in ("avg", "stats"):
        return (int(w[0]), int(w[1]))
    if kind == "value":
        return from_wire(w)
    return int(w)


def map_to_wire(d: MapDump) -> dict:
    return {"name": d.name, "kind": d.kind, "lhist": list(d.lhist) if d.lhist else None,
            "value_type": d.value_type, "key_kinds": [list(k) for k in d.key_kinds] if d.key_kinds else None,
            "hist_bits": d.hist_bits, "signed": d.signed, "scalar": d.scalar,
            "entries": [[[to_wire(k) for k in key], _agg_to_wire(d.kind, v)] for key, v in d.entries]}


def map_from_wire(w: dict) -> MapDump:
    kind = w["kind"]
    entries = [(tuple(from_wire(k) for k in key), _agg_from_wire(kind, v)) for key, v in w["entries"]]
    kinds = w.get("key_kinds")
    return MapDump(w["name"], kind, entries, lhist=tuple(w["lhist"]) if w.get("lhist") else None,
                   value_type=w.get("value_type"), key_kinds=tuple((k, int(n)) for k, n in kinds) if kinds else None,
                   hist_bits=int(w.get("hist_bits", 0)), signed=bool(w.get("signed", True)), scalar=w.get("scalar"))


# ---- the tracer's side ------------------------------------------------------------------------

class WireOutput(Output):
    """An Output that writes records instead of text, each event labelled with its source."""

    def __init__(self, stream: IO):
        super().__init__(stream, autoflush=False)

    def record(self, rec: Dict[str, Any]) -> None:
        self.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def _event(self, kind: str, data: Any) -> None:
        self.record({kind: data, "src": self.source})

    def attached_probes(self, n: int) -> None:
        self.record({"attached": n})

    def printf(self, text: str) -> None:
        self._event("printf", text)

    def time(self, text: str) -> None:
        self._event("time", text)

    def cat(self, text: str) -> None:
        self._event("cat", text)

    def syscall(self, text: str) -> None:
        self._event("syscall", text)

    def join(self, text: str) -> None:
        self._event("join", text)

    def lost_events(self, n: int) -> None:
        self.record({"lost": n})

    def errorf(self, text: str, where: Tuple[str, int, int, str], severity: str = "ERROR") -> None:
        self.record({"errorf": text, "where": list(where), "severity": severity, "src": self.source})

    def print_value(self, value: Any) -> None:
        self._event("value", to_wire(value))

    def print_map(self, dump: MapDump, top: int = 0, div: int = 0) -> None:
        self.record({"map": map_to_wire(dump), "top": top, "div": div})

    def map(self, name: str, value: Any) -> None:  # pragma: no cover - print_map and exit_dump send dumps
        raise NotImplementedError("maps are sent as dumps (print_map, exit_dump), not formatted")

    def exit_dump(self, dumps: Iterable[MapDump]) -> None:
        """The maps at exit; none when the program's config says print_maps_on_exit = false (the
        plugin still prints the end marker)."""
        self.record({"maps": [map_to_wire(d) for d in dumps] if self.print_maps_on_exit else []})
        self.flush()


class WireStderr:
    """A text stream for the engine's stderr: every line becomes a {"stderr": ...} record."""

    def __init__(self, out: WireOutput):
        self.out = out
        self._partial = ""

    def write(self, s: str) -> int:
        text = self._partial + s
        *lines, self._partial = text.split("\n")
        for line in lines:
            self.out.record({"stderr": line})
        self.out.flush()
        return len(s)

    def flush(self) -> None:
        if self._partial:
            self.out.record({"stderr": self._partial})
            self._partial = ""
        self.out.flush()


# ---- the plugin's side ------------------------------------------------------------------------

def parse_line(line: str) -> Optional[dict]:
    """The record of a log line, or None for a line that is not one (the tracer's own stderr)."""
    if not line.startswith("{"):
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


EVENT_KINDS = ("printf", "time", "cat", "join", "syscall")


def replay(rec: dict, out: Output) -> bool:
    """Prints one output record with `out`; False for records that are not output (hello,
    status, stderr, exit: the caller's)."""
    for kind in EVENT_KINDS:
        if kind in rec:
            getattr(out, kind)(rec[kind])
            return True
    if "value" in rec:
        out.print_value(from_wire(rec["value"]))
    elif "map" in rec:
        out.print_map(map_from_wire(rec["map"]), rec.get("top", 0), rec.get("div", 0))
    elif "lost" in rec:
        out.lost_events(int(rec["lost"]))
    elif "errorf" in rec:
        out.errorf(rec["errorf"], tuple(rec["where"]), rec.get("severity", "ERROR"))  # type: ignore[arg-type]
    elif "maps" in rec:
        out.exit_dump([map_from_wire(m) for m in rec["maps"]])
    else:
        return False
    return True


def maps_of(rec: dict) -> List[MapDump]:
    return [map_from_wire(m) for m in rec.get("maps", [])]
