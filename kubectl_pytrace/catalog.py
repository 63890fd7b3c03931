"""The programs users run by name: the .bt files of programs/ and the header that describes them.

    // description: Which queries run slow: PostgreSQL queries slower than a threshold
    // arg: postgres string /usr/lib/postgresql/15/bin/postgres  The postgres binary
    // param: threshold duration 100ms  Print the queries slower than this
    // needs: usdt

    programs()                     -> [Program] (name, description, args, params, needs)
    find("slowqueries")            -> Program
    program.arguments({"threshold": "300ms"})
        -> ["/usr/lib/postgresql/15/bin/postgres", "--threshold=300000000"]

An `arg` is a positional parameter ($1, $2... in the order declared: attach points may use them,
`usdt:$1:query__start`); a `param` reaches the program as getopt("threshold", ...), bpftrace's
named parameters. Both are values the compiler reads, never text spliced into the program or its
C. Their types are checked here first: int, uint, duration (ns, us, ms, s, m: given to the program
in nanoseconds), bool, string. A default of `-` makes the parameter required (funccount's binary:
no default is safe to put wildcard uprobes on).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from kubectl_pytrace.errors import UsageError
from kubectl_pytrace.resources import resource_dir

TYPES = ("int", "uint", "duration", "bool", "string")
_DURATION = re.compile(r"^(\d+)(ns|us|ms|s|m)?$")
_SCALE = {"ns": 1, None: 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}
_HEADER = re.compile(r"^//\s*(description|arg|param|needs):\s*(.*)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
REQUIRED = "-"  # the default of a parameter that has none


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str
    help: str

    @property
    def required(self) -> bool:
        return self.default == REQUIRED

    def value(self, text: str) -> str:
        """The value as the program reads it (getopt): checked and normalized."""
        if self.type in ("int", "uint"):
            try:
                n = int(text, 0)
            except ValueError:
                raise UsageError(f"--param {self.name}={text}: expects an integer") from None
            if self.type == "uint" and n < 0:
                raise UsageError(f"--param {self.name}={text}: expects a non-negative integer")
            return str(n)
        if self.type == "duration":
            m = _DURATION.match(text.strip())
            if not m:
                raise UsageError(f"--param {self.name}={text}: expects a duration (500us, 100ms, 2s, 1m)")
            return str(int(m.group(1)) * _SCALE[m.group(2)])
        if self.type == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise UsageError(f"--param {self.name}={text}: expects true or false")
            return "true" if text.lower() in ("true", "1", "yes") else "false"
        return text


@dataclass
class Program:
    name: str
    path: str
    description: str = ""
    args: List[Param] = field(default_factory=list)  # positional: $1, $2...
    params: List[Param] = field(default_factory=list)  # named: getopt()
    needs: List[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def arguments(self, given: Dict[str, str]) -> List[str]:
        """The parameters to compile with: every declared one, given or defaulted; positional
        ones first, in order, then the named ones as --name=value."""
        known = {p.name: p for p in self.args + self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise UsageError(f"program {self.name} has no parameter {unknown[0]!r} (its parameters: {names})",
                             hint=f"kubectl pytrace programs {self.name}")
        missing = [p.name for p in self.args + self.params if p.required and p.name not in given]
        if missing:
            raise UsageError(f"program {self.name} needs --param {missing[0]}=VALUE",
                             hint=f"kubectl pytrace programs {self.name}")
        return ([a.value(given.get(a.name, a.default)) for a in self.args]
                + [f"--{p.name}={p.value(given.get(p.name, p.default))}" for p in self.params])


def parse_header(name: str, path: str, text: str) -> Program:
    prog = Program(name, path)
    for line in text.splitlines():
        if line.startswith("#!"):
            continue
        m = _HEADER.match(line.strip())
        if not m:
            if line.strip() and not line.strip().startswith("//"):
                break  # the header ends with the first line that is not a comment
            continue
        key, value = m.groups()
        if key == "description":
            prog.description = value.strip()
        elif key == "needs":
            prog.needs.append(value.strip())
        else:
            (prog.args if key == "arg" else prog.params).append(_param(name, value))
    return prog


def _param(program: str, spec: str) -> Param:
    parts = spec.split(None, 3)
    if len(parts) < 3 or parts[1] not in TYPES or not _NAME.match(parts[0]):
        raise ValueError(f"programs/{program}.bt: bad parameter line {spec!r} (NAME TYPE DEFAULT HELP, "
                         f"TYPE one of {', '.join(TYPES)})")
    p = Param(parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else "")
    if not p.required:
        p.value(p.default)  # the default must be valid too
    return p


def programs(directory: Optional[str] = None) -> List[Program]:
    directory = directory or resource_dir("programs")
    out = []
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".bt"):
            path = os.path.join(directory, entry)
            with open(path, encoding="utf-8") as f:
                out.append(parse_header(entry[:-3], path, f.read()))
    return out


def find(name: str, directory: Optional[str] = None) -> Program:
    found = {p.name: p for p in programs(directory)}
    if name not in found:
        raise UsageError(f"no program named {name!r}", hint="`kubectl pytrace programs` lists them: "
                         + ", ".join(found))
    return found[name]


def parse_params(pairs: List[str]) -> Dict[str, str]:
    """--param key=value flags."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out
