"""Build the Go workload (goserver.go) with the Go toolchain, cached by the source's hash.

    from build import build_go             # or load this file with importlib
    path = build_go()                       # Path of the static goserver binary

Needs `go` ($GO, /usr/local/go/bin/go or on PATH); the module has no dependencies, so no network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent


class GoBuildError(RuntimeError):
    pass


def go_binary() -> str:
    for candidate in (os.environ.get("GO"), "/usr/local/go/bin/go", shutil.which("go")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise GoBuildError("no Go toolchain (set GO, or install Go: /usr/local/go/bin/go)")


def build_go(dest: Optional[Path] = None) -> Path:
    go = go_binary()
    h = hashlib.sha256()
    for name in ("goserver.go", "sum_amd64.s", "go.mod"):
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    h.update(subprocess.run([go, "version"], capture_output=True, text=True).stdout.encode())
    out = Path(dest) if dest else Path(tempfile.gettempdir()) / "kubectl-pytrace-workloads" / f"go-{h.hexdigest()[:16]}"
    exe = out / "goserver"
    if not exe.exists():
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".goserver.{os.getpid()}"
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
        r = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=HERE, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise GoBuildError(f"go build failed:\n{r.stderr}")
        os.replace(tmp, exe)
    return exe


if __name__ == "__main__":
    print(build_go(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
