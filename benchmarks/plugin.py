"""The plugin against a real cluster, side by side with kubectl on the same machine.

    sudo .venv/bin/python benchmarks/plugin.py [--rounds 7]

Needs the local cluster (hack/cluster.sh up; it brings it up if it is not running) or KUBECONFIG.
Measures, as medians of interleaved rounds:
- `run pod/x --attach` to its first event (a uprobe on a workload that calls the function every
  20 ms): wall time from starting the command to the first line on stdout, with the breakdown
  `-v` prints (client compile, objects created, tracer process, compiled on the node, attached);
- the same with a program the node has not compiled before (BCC runs on the node);
- `kubectl pytrace get` next to `kubectl get jobs -l app.kubernetes.io/managed-by=kubectl-pytrace`;
- the tracer pod's peak memory (tracer process, and the BCC compiler process of a cold start).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = str(REPO / ".venv" / "bin" / "kubectl-pytrace")
TICKER = "/usr/local/bin/ticker"


def cluster_env() -> dict:
    if os.environ.get("KUBECONFIG"):
        return {"KUBECONFIG": os.environ["KUBECONFIG"], "KUBECTL": os.environ.get("KUBECTL", "kubectl")}
    if subprocess.run([str(REPO / "hack" / "cluster.sh"), "status"], capture_output=True).returncode != 0:
        subprocess.run([str(REPO / "hack" / "cluster.sh"), "up"], check=True)
    out = subprocess.run([str(REPO / "hack" / "cluster.sh"), "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)


class Bench:
    def __init__(self, env: dict):
        self.env = dict(os.environ, **env)
        self.kubectl = env["KUBECTL"]
        self.ns = f"pytrace-bench-{uuid.uuid4().hex[:6]}"

    def k(self, *args: str, input: str = None) -> str:
        return subprocess.run([self.kubectl, *args], input=input, capture_output=True, text=True, check=True,
                              env=self.env).stdout

    def setup(self) -> None:
        self.k("create", "namespace", self.ns)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker"},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                   "name": "main", "image": "localhost/kubectl-pytrace/workload:dev",
                   "imagePullPolicy": "IfNotPresent", "command": [TICKER, "-i", "20"]}]}}
        for _ in range(60):
            if self.k("get", "serviceaccount", "-n", self.ns, "-o", "name").strip():
                break
            time.sleep(0.5)
        self.k("apply", "-n", self.ns, "-f", "-", input=json.dumps(pod))
        self.k("wait", "-n", self.ns, "--for=condition=Ready", "pod/ticker", "--timeout=120s")

    def teardown(self) -> None:
        subprocess.run([self.kubectl, "delete", "namespace", self.ns, "--wait=false"], capture_output=True,
                       env=self.env)

    def first_event(self, program: str) -> dict:
        """Seconds from the start of `run --attach` to its first line on stdout, and -v's breakdown."""
        start = time.monotonic()
        p = subprocess.Popen([PLUGIN, "run", "pod/ticker", "-n", self.ns, "--attach", "-v", "-e", program],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        p.stdout.readline()
        first = time.monotonic() - start
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise RuntimeError(err)
        marks = dict((m.group(1), float(m.group(2))) for m in re.finditer(r"([a-z][a-z ()]+?) ([0-9.]+) s", err))
        mem = re.search(r"tracer peak memory (\d+) MiB, compiler (\d+) MiB", err)
        return {"first": first, "marks": marks, "tracer_mib": int(mem.group(1)) if mem else 0,
                "compiler_mib": int(mem.group(2)) if mem else 0}

    def get_times(self) -> tuple:
        def t(cmd):
            s = time.monotonic()
            subprocess.run(cmd, capture_output=True, check=True, env=self.env)
            return time.monotonic() - s
        ours = t([PLUGIN, "get"])
        theirs = t([self.kubectl, "get", "jobs", "-n", "kubectl-pytrace", "-l",
                    "app.kubernetes.io/managed-by=kubectl-pytrace"])
        return ours, theirs


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    b = Bench(cluster_env())
    b.setup()
    try:
        warm_prog = f'uprobe:{TICKER}:pytrace_tick {{ printf("tick %d\\n", arg0); exit(); }}'
        b.first_event(warm_prog)  # compiled on the node once: the cache is warm from here on
        warm, cold, gets = [], [], []
        for i in range(args.rounds):
            warm.append(b.first_event(warm_prog))
            # a program never seen: its own constant makes the node compile it with BCC
            cold.append(b.first_event(f'uprobe:{TICKER}:pytrace_tick {{ printf("tick %d {uuid.uuid4().hex}\\n", '
                                      f'arg0); exit(); }}'))
            gets.append(b.get_times())
    finally:
        b.teardown()
    load = os.getloadavg()[0]
    print(f"# plugin benchmark, {args.rounds} rounds, median (load average {load:.1f})\n")
    print("| run pod/x --attach to the first event | seconds |")
    print("|---|---|")
    print(f"| program compiled on the node before (cache) | {median([r['first'] for r in warm]):.2f} |")
    print(f"| new program (BCC on the node) | {median([r['first'] for r in cold]):.2f} |")
    print("\nBreakdown of the cached case (seconds since the command started, from -v):\n")
    steps = {}
    for r in warm:
        for k, v in r["marks"].items():
            steps.setdefault(k, []).append(v)
    for k, vs in sorted(steps.items(), key=lambda kv: median(kv[1])):
        print(f"- {k}: {median(vs):.2f}")
    ours, theirs = median([g[0] for g in gets]), median([g[1] for g in gets])
    print(f"\n`kubectl pytrace get` {ours:.3f} s, `kubectl get jobs -l ...` {theirs:.3f} s: "
          f"{ours / theirs:.1f}x kubectl")
    print(f"\nTracer peak memory: {max(r['tracer_mib'] for r in warm + cold)} MiB (tracer process), "
          f"{max(r['compiler_mib'] for r in cold)} MiB (BCC compiler process of a cold start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
