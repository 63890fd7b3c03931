"""A throwaway PostgreSQL server on this host: Debian's postgresql-15 (built with --enable-dtrace).

`LocalPostgres` runs initdb in a temporary directory as the postgres user, starts the server on a
private port with its socket in that directory, and runs SQL through psql. Nothing touches the
system's own clusters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES = PG_BIN / "postgres"


def missing() -> str:
    """Why this host cannot run the workload ("" when it can)."""
    if not POSTGRES.exists():
        return "postgresql-15 is not installed (apt-get install postgresql-15)"
    if os.geteuid() != 0:
        return "needs root to run the server as the postgres user"
    return ""


class LocalPostgres:
    def __init__(self, port: int = 54329):
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="pytrace-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"

    def _as_postgres(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)

    def start(self) -> "LocalPostgres":
        init = self._as_postgres(str(PG_BIN / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(self.data))
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr}")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=''"
        up = self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                               "-l", str(self.dir / "log"), "start")
        if up.returncode:
            raise RuntimeError(f"pg_ctl start failed: {up.stderr}{(self.dir / 'log').read_text()}")
        return self

    def psql(self, *sql: str, timeout: float = 60) -> str:
        """Runs each statement as a query of its own, in one session (one backend process)."""
        commands = [arg for one in sql for arg in ("-c", one)]
        out = self._as_postgres(str(PG_BIN / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U",
                                "postgres", "-XAtq", *commands, timeout=timeout)
        if out.returncode:
            raise RuntimeError(f"psql failed: {out.stderr}")
        return out.stdout

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
