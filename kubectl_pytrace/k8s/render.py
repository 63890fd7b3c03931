"""The user's view of a trace's tracers: their records (output/wire.py) printed with -o text|json.

    view = TraceView(output="text", merge=False, stdout, stderr)
    view.tracer("node-a").record(rec)     # for every record of that tracer's log
    view.finish()                          # the maps at exit (merged with --merge)

In text, one tracer (a pod/ or node/ target, a workload with one replica) prints exactly what
`run --local` prints; with several targets, lines are prefixed with the pod they came from
(`[pod/web-1/server] ...`, as `kubectl logs --prefix`). In JSON, bpftrace's records carry
"node", and events of a pod "namespace", "pod" and "container". Each tracer's maps are printed
under its node (text: a header line; JSON: labelled records), or once for all with --merge.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any, Dict, List, Optional

from kubectl_pytrace.output.merge import merge_all
from kubectl_pytrace.output.printer import JsonOutput, Output, TextOutput
from kubectl_pytrace.output.values import MapDump
from kubectl_pytrace.output.wire import maps_of, replay


class LabelledJson(JsonOutput):
    """bpftrace's JSON records with where they came from added to each."""

    def __init__(self, stream: IO, labels: Dict[str, str]):
        super().__init__(stream, autoflush=True)
        self.labels = labels
        self.per_source: Dict[int, Dict[str, str]] = {}

    def write(self, s: str) -> None:
        if s.startswith("{") and s.endswith("}\n"):
            labels = dict(self.labels, **self.per_source.get(self.source, {}))
            extra = "".join(f', "{k}": {json.dumps(v)}' for k, v in labels.items())
            s = s[:-2] + extra + "}\n"
        super().write(s)


class PrefixedText(TextOutput):
    """bpftrace's text, every line of an event prefixed with its source's label."""

    def __init__(self, stream: IO, prefix_of: Dict[int, str], default: str):
        super().__init__(stream, autoflush=True)
        self.prefix_of = prefix_of
        self.default = default
        self.partial: Dict[int, bool] = {}  # sources whose last text did not end its line

    def _prefixed(self, text: str) -> None:
        src = self.source
        prefix = self.prefix_of.get(src, self.default)
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if last and not line:
                break
            start = "" if (i == 0 and self.partial.get(src)) else prefix
            out.append(start + line + ("" if last else "\n"))
        self.partial[src] = not text.endswith("\n") and bool(text)
        super().write("".join(out))

    def printf(self, text: str) -> None:
        self._prefixed(text)

    def time(self, text: str) -> None:
        self._prefixed(text)

    def cat(self, text: str) -> None:
        self._prefixed(text)

    def join(self, text: str) -> None:
        self._prefixed(text + "\n")


class TracerView:
    """What one tracer (one node) prints."""

    def __init__(self, view: "TraceView", node: str):
        self.view = view
        self.node = node
        self.targets: List[Dict[str, str]] = []
        self.out: Output = view.output_for(self)
        self.maps: Optional[List[MapDump]] = None
        self.exit: Optional[Dict[str, Any]] = None
        self.attached: Optional[int] = None
        self.ps: Optional[List[Dict[str, Any]]] = None  # the node's BPF programs (`ps`)

    def label(self) -> str:
        if not self.targets:
            return f"node/{self.node}"
        return ", ".join(f"pod/{t['pod']}/{t['container']}" for t in self.targets)

    def record(self, rec: Dict[str, Any]) -> None:
        if "t" in rec:
            self.view.mark(next(iter(rec)), rec["t"])
        if "hello" in rec:
            self.targets = rec["hello"].get("targets") or []
            self.out = self.view.output_for(self)
            self.view.mark("tracer process", rec["hello"].get("started") or rec.get("t", 0))
        elif "stderr" in rec:
            self.view.note(self, rec["stderr"])
        elif "attached" in rec:
            self.attached = int(rec["attached"])
            self.view.note(self, f"Attached {self.attached} probe{'s' if self.attached != 1 else ''}")
        elif "lost" in rec and self.view.format == "text":
            self.view.note(self, f"Lost {rec['lost']} events")
        elif "errorf" in rec and self.view.format == "text":  # errorf()/warnf(): on stderr, as bpftrace
            self.view.note(self, f"{rec['where'][3]}: {rec.get('severity', 'ERROR')}: {rec['errorf']}")
        elif "maps" in rec:
            self.maps = maps_of(rec)
        elif "exit" in rec:
            self.exit = rec
        elif "status" in rec:
            self.view.progress(self, rec["status"])
        elif "ps" in rec:
            self.ps = rec["ps"]
        else:
            self.view.mark("first event", time.time())
            self.out.source = int(rec.get("src", 0))
            replay(rec, self.out)

    def raw(self, line: str) -> None:
        """A line of the tracer's log that is not a record (its process's own stderr)."""
        self.view.note(self, line)


class TraceView:
    def __init__(self, output: str, merge: bool, stdout: IO, stderr: IO, tracers_expected: int = 1,
                 targets_expected: int = 1):
        self.format = output
        self.merge = merge
        self.stdout = stdout
        self.stderr = stderr
        self.many_tracers = tracers_expected > 1
        self.many_targets = targets_expected > 1
        self.tracers: Dict[str, TracerView] = {}
        self.marks: Dict[str, float] = {}  # when things first happened (wall clock): for -v

    def mark(self, what: str, when: float) -> None:
        self.marks.setdefault(what, when)

    def tracer(self, node: str) -> TracerView:
        if node not in self.tracers:
            self.tracers[node] = TracerView(self, node)
        return self.tracers[node]

    def output_for(self, t: TracerView) -> Output:
        if self.format == "json":
            out = LabelledJson(self.stdout, {"node": t.node})
            for i, target in enumerate(t.targets, 1):
                out.per_source[i] = {"namespace": target["namespace"], "pod": target["pod"],
                                     "container": target["container"]}
            return out
        if not self.many_targets:
            return TextOutput(self.stdout, autoflush=True)
        prefixes = {i: f"[pod/{x['pod']}/{x['container']}] " for i, x in enumerate(t.targets, 1)}
        return PrefixedText(self.stdout, prefixes, f"[node/{t.node}] ")

    def note(self, t: TracerView, text: str) -> None:
        prefix = f"[node/{t.node}] " if self.many_tracers else ""
        self.stdout.flush()
        print(prefix + text, file=self.stderr, flush=True)

    def progress(self, t: TracerView, status: str) -> None:
        self.note(t, f"kubectl-pytrace: {status}")

    def finish(self) -> None:
        """The maps at exit, once every tracer has ended."""
        done = [t for t in self.tracers.values() if t.maps is not None]
        if not done:
            return
        if self.merge or len(done) == 1:
            out = self.output_for(done[0]) if len(done) == 1 else self._plain()
            out.exit_dump(merge_all(t.maps for t in done) if len(done) > 1 else done[0].maps)  # type: ignore[misc]
            out.flush()
            return
        for t in done:
            if self.format == "text":
                self.stdout.write(f"\n=== maps of node/{t.node} ({t.label()}) ===")
            t.out.source = 0
            t.out.exit_dump(t.maps)  # type: ignore[arg-type]
            t.out.flush()

    def _plain(self) -> Output:
        return LabelledJson(self.stdout, {}) if self.format == "json" else TextOutput(self.stdout, autoflush=True)

    def exit_code(self) -> int:
        codes = [int(t.exit["exit"]) for t in self.tracers.values() if t.exit is not None]
        return max(codes) if codes else 1
