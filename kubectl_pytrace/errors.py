"""The one error hierarchy: every failure a user can act on is a UserError.

    UserError                 message (what went wrong) + hint (what to do) + exit code
    ├── UsageError            a bad flag or flag combination (exit 2, as click)
    ├── CompileError          the program does not compile (lang/diagnostics.py: line:col + caret)
    ├── LookupFailed          the program names something this host does not have (a tracepoint,
    │                         a binary, a struct field)
    ├── KernelError           the kernel lacks what a trace needs (tracefs, BTF, headers, BPF)
    ├── TraceError            a trace cannot start or run (attach, verifier, permissions)
    ├── ContainerError        the container or process to scope to cannot be resolved
    └── ClusterError          the Kubernetes API refused or lacks something (k8s/errors.py)

The CLI turns a UserError into `error: <message>` (+ the hint on its own line) and its exit code,
in one place (cli/__init__.py). Anything else that escapes is a bug and keeps its traceback.
This module imports nothing of the package: every layer may raise these.
"""

from __future__ import annotations

from typing import Optional


class UserError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The text the CLI prints on stderr."""
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n{self.hint}"
        return text


class UsageError(UserError):
    exit_code = 2


class LookupFailed(UserError):
    """Something a program names does not exist here (a tracepoint, binary, symbol, field)."""


class KernelError(UserError):
    """The running kernel (or what it exposes: tracefs, BTF, headers) cannot support the trace."""


class TraceError(UserError):
    """A trace that compiled cannot start or run: attaching, the verifier, permissions."""


class ContainerError(UserError):
    """The container or process a trace is scoped to cannot be resolved on this host."""


class ClusterError(UserError):
    """The Kubernetes side: an object that does not exist, a forbidden verb, a failed tracer pod."""


class Interrupted(UserError):
    """A second Ctrl-C: the trace was torn down without END or the maps."""

    exit_code = 130
