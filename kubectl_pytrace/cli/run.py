"""kubectl pytrace run: compile a bpftrace program and trace with it."""

from __future__ import annotations

import re
import shlex
import sys
from typing import Optional, Tuple

import click


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_duration(text: str) -> float:
    """'30s', '5m', '1h', '500ms' or plain seconds -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 500ms)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("target", required=False)
@click.option("-e", "program", metavar="PROGRAM", help="Program text.")
@click.option("-f", "program_file", type=click.Path(dir_okay=False, allow_dash=True), help="Program file.")
@click.option("--local", is_flag=True, help="Trace this host (no cluster).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--deadline", metavar="DURATION", help="Stop after this long (30s, 5m, 1h).")
@click.option("-c", "command", metavar="CMD", help="Run CMD after attaching; stop when it exits (sets cpid).")
@click.option("--dump", type=click.Choice(["ast", "c"]), help="Print the parsed tree or the generated C and exit.")
@click.option("--container-id", metavar="ID", help="With --local: trace only this container (docker://ID, "
              "containerd://ID or a unique prefix of 12+ hex digits).")
@click.option("--pid", "target_pid", type=int, metavar="PID",
              help="With --local: trace only the container PID is in (or PID itself if it is in none).")
@click.option("--ns-pids", is_flag=True, help="Print pid/tid as seen inside the traced container.")
@click.option("--unsafe", is_flag=True, help="Allow system(), signal() and override(), as bpftrace --unsafe.")
@click.argument("params", nargs=-1)
def run(target: Optional[str], program: Optional[str], program_file: Optional[str], local: bool,
        output: str, deadline: Optional[str], command: Optional[str], dump: Optional[str],
        container_id: Optional[str], target_pid: Optional[int], ns_pids: bool, unsafe: bool,
        params: Tuple[str, ...]) -> None:
    """Run a trace: `run --local -e PROGRAM` traces this host."""
    if (program is None) == (program_file is None):
        raise click.UsageError("give the program with exactly one of -e PROGRAM or -f FILE")
    if program_file is not None:
        try:
            with click.open_file(program_file) as f:
                text = f.read()
        except OSError as e:
            raise click.UsageError(f"cannot read {program_file}: {e.strerror}")
        except UnicodeDecodeError as e:
            raise click.UsageError(f"{program_file} is not UTF-8 text (byte {e.start}: {e.reason})")
        filename = "stdin" if program_file == "-" else program_file
    else:
        text, filename = program, "stdin"
    if not local and dump is None:
        raise click.UsageError("tracing a cluster target is not available yet: use --local to trace this host")
    if container_id is not None and target_pid is not None:
        raise click.UsageError("give at most one of --container-id and --pid")
    if ns_pids and container_id is None and target_pid is None:
        raise click.UsageError("--ns-pids needs --container-id or --pid")
    if target is not None and local:
        params = (target,) + params
    from kubectl_pytrace.tracer import session  # not at import: `--help` stays fast

    spec = session.TraceSpec(
        text=text, filename=filename, output=output,
        deadline=parse_duration(deadline) if deadline else None,
        command=shlex.split(command) if command else None,
        params=list(params), container_id=container_id, pid=target_pid, ns_pids=ns_pids, unsafe=unsafe,
    )
    if dump is not None:
        session.dump(spec, dump)
    else:
        result = session.run(spec)
        if result.exit_code:  # the program's exit(code)
            sys.exit(result.exit_code)
