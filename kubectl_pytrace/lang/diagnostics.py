"""Source locations and compiler diagnostics.

Diagnostics are collected, not thrown, and rendered like bpftrace's::

    prog.bt:1:24-31: ERROR: unknown builtin 'nosuchbi'
    BEGIN { printf("%d\\n", nosuchbi); }
                           ~~~~~~~~

Columns are 1-based and the end column is inclusive (the underline covers columns 24..31).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple
from kubectl_pytrace.errors import UserError


@dataclass(frozen=True)
class Source:
    """A program text and the name it is reported under ("stdin" for -e, else the file name)."""

    text: str
    filename: str = "stdin"

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = self.text.count("\n", 0, offset) + 1
        start = self.text.rfind("\n", 0, offset) + 1
        return line, offset - start + 1

    def line_text(self, line: int) -> str:
        lines = self.text.split("\n")
        return lines[line - 1] if 0 < line <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """Half-open character range [start, end) in a Source."""

    start: int
    end: int

    def to(self, other: "Span") -> "Span":
        return Span(min(self.start, other.start), max(self.end, other.end))


NO_SPAN = Span(0, 0)


def location(source: Source, span: Span, exclusive: bool = False) -> Tuple[int, int, int, str]:
    """(line, column, last column on that line, "file:line:col-last") of a span. exclusive: the
    range ends one past the last column, as bpftrace heads its messages (errorf() at run time
    prints so; the compiler's own diagnostics keep the last column)."""
    line, col = source.line_col(span.start)
    end = max(span.end, span.start + 1)
    end_line, end_col = source.line_col(end - 1)
    if end_line != line:  # only the first line of a multi-line span
        end_col = len(source.line_text(line))
    head = f"{source.filename}:{line}:{col}"
    if exclusive and span.end > span.start:  # bpftrace's own range ends after the last column
        head += f"-{end_col + 1}"
    elif not exclusive and end_col > col:
        head += f"-{end_col}"
    return line, col, end_col, head


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span = NO_SPAN
    severity: str = "ERROR"
    hint: Optional[str] = None

    def render(self, source: Source) -> str:
        line, col, end_col, head = location(source, self.span)
        text = source.line_text(line)
        out = [f"{head}: {self.severity}: {self.message}", text]
        width = max(1, end_col - col + 1)
        # keep tabs so the underline lines up under the source line
        pad = "".join(c if c == "\t" else " " for c in text[: col - 1])
        out.append(pad + "~" * width)
        if self.hint:
            out.append(f"HINT: {self.hint}")
        return "\n".join(out)


@dataclass
class Diagnostics:
    """Collects the diagnostics of one compilation."""

    source: Source
    items: List[Diagnostic] = field(default_factory=list)

    def error(self, message: str, span: Span = NO_SPAN, hint: Optional[str] = None) -> None:
        d = Diagnostic(message, span, "ERROR", hint)
        if d not in self.items:  # one body checked for several attach points reports once
            self.items.append(d)

    def warning(self, message: str, span: Span = NO_SPAN, hint: Optional[str] = None) -> None:
        d = Diagnostic(message, span, "WARNING", hint)
        if d not in self.items:
            self.items.append(d)

    @property
    def errors(self) -> List[Diagnostic]:
        return [d for d in self.items if d.severity == "ERROR"]

    def has_errors(self) -> bool:
        return any(d.severity == "ERROR" for d in self.items)

    def render(self) -> str:
        return "\n".join(d.render(self.source) for d in self.items)


class CompileError(UserError):
    """Raised by the compiler driver when a pass reported errors; str() is the rendered text,
    printed as it is (bpftrace's format, no "error:" prefix)."""

    def __init__(self, diagnostics: Diagnostics):
        self.diagnostics = diagnostics
        super().__init__(diagnostics.render())

    def render(self) -> str:
        return self.message
