"""Ring-buffer records -> output: one handler per event kind of the program, built once.

    events = EventHandlers(program, output, readers, symbols, json=False, stderr=sys.stderr)
    keep_going = events.dispatch(record)     # False after exit(): stop draining
    events.flush_text()                      # text of printf()s collected in this batch

printf() is the hot path: each call site gets a Python function of its own, compiled from the
format (output/printf.py) and the record layout (lang/layout.py), and in text mode the texts of
one drained batch are written at once. Every other event prints after the printf text collected
before it, so the order of the output is the order of the events.
"""

from __future__ import annotations

import struct
import time
from typing import IO, Callable, Dict, List

from kubectl_pytrace.lang.layout import field_count
from kubectl_pytrace.lang.program import CProgram, EventSpec
from kubectl_pytrace.lang.types import BoolT, EnumT, IntT, StrT
from kubectl_pytrace.output.decode import RecordDecoder, Symbols, converter, cstr, set_trunc_trailer
from kubectl_pytrace.output.maps import MapReader
from kubectl_pytrace.output.printer import Output
from kubectl_pytrace.output.printf import compile_format
from kubectl_pytrace.output.values import from_bytes

CAT_BYTES_MAX = 10240  # bpftrace's BPFTRACE_CAT_BYTES_MAX
_ID = struct.Struct("<Q")


class EventHandlers:
    def __init__(self, program: CProgram, output: Output, readers: Dict[str, MapReader], sym: Symbols,
                 json: bool, stderr: IO):
        self.out = output
        # the program's config block: what the output does at exit, how truncated strings end
        output.print_maps_on_exit = getattr(program, "print_maps_on_exit", True)
        set_trunc_trailer(getattr(program, "str_trunc_trailer", ".."))
        self.cat_bytes_max = getattr(program, "max_cat_bytes", CAT_BYTES_MAX)
        self.readers = readers
        self.json = json
        self.stderr = stderr
        self.pending: List[str] = []  # printf text not yet written (text mode)
        self.exit_requested = False
        self.exit_code = 0
        self.count = 0
        self.handlers: Dict[int, Callable] = {ev.id: self._handler(ev, sym) for ev in program.events.values()}

    def dispatch(self, buf) -> bool:
        """Handles one record; False when draining should stop (exit() was called). After exit(),
        records already in the ring buffer are dropped, as bpftrace drops them, until END runs."""
        if self.exit_requested:
            return False
        self.count += 1
        ident = _ID.unpack_from(buf, 0)[0]
        self.out.source = ident >> 32  # which target the event came from (lang/scope.py), 0: none
        handler = self.handlers.get(ident & 0xFFFFFFFF)
        if handler is None:
            return True
        return handler(buf) is not False

    def flush_text(self) -> None:
        if self.pending:
            self.out.printf("".join(self.pending))
            self.pending.clear()

    # ---- building handlers ----------------------------------------------------------------------
    def _handler(self, ev: EventSpec, sym: Symbols) -> Callable:
        if ev.kind == "printf":
            return self._printf_handler(ev, sym)
        handler = self._other_handler(ev, sym)

        def ordered(buf):  # after the printf text collected before it
            self.flush_text()
            return handler(buf)
        return ordered

    def _printf_handler(self, ev: EventSpec, sym: Symbols) -> Callable:
        """One Python function per printf call site, compiled once: unpack, convert, format.

        In text mode the texts are collected and written once per batch (flush_text); in JSON
        mode each printf is its own record."""
        fmt = compile_format(ev.fmt)  # type: ignore[arg-type]
        fields = ev.record.fields
        names = [f"a{i}" for i in range(len(fields))]
        kinds = ["int" if isinstance(f.type, IntT) and not isinstance(f.type, (BoolT, EnumT)) else
                 "str" if isinstance(f.type, StrT) else None for f in fields]
        expr, env = fmt.python_expression(names, kinds)
        lines = ["def handler(buf):"]
        if fields:
            lines += self._unpack_lines(ev, sym, names, env)
        env["_emit"] = self.out.printf if self.json else self.pending.append
        lines.append(f"    _emit({expr})")
        exec("\n".join(lines), env)  # the source is built from our own names and numbers only
        return env["handler"]

    @staticmethod
    def _unpack_lines(ev: EventSpec, sym: Symbols, names: List[str], env: dict) -> List[str]:
        """Source lines that set a0, a1, ... from the record."""
        fields = ev.record.fields
        if any(field_count(f.type) != 1 for f in fields):  # tuples, stacks, usym...: the general decoder
            env["_decode"] = RecordDecoder(ev.record, sym)
            return [f"    {', '.join(names)}, = _decode(buf)"]
        env["_unpack"] = struct.Struct(ev.record.struct_format()).unpack_from
        lines = [f"    {', '.join(names)}, = _unpack(buf, {fields[0].offset})"]
        for i, f in enumerate(fields):
            if isinstance(f.type, StrT):
                env["_cstr"] = cstr
                lines.append(f"    a{i} = _cstr(a{i}, {f.type.size})")
                continue
            conv = converter(f.type, sym)
            if conv is not None:
                env[f"_c{i}"] = conv
                lines.append(f"    a{i} = _c{i}((a{i},))")
        return lines

    def _other_handler(self, ev: EventSpec, sym: Symbols) -> Callable:
        decode = RecordDecoder(ev.record, sym)
        out = self.out
        if ev.kind == "print_value":
            return lambda buf: out.print_value(decode(buf)[0])
        if ev.kind == "print_map":
            reader = self.readers[ev.map]  # type: ignore[index]
            return lambda buf: out.print_map(reader.dump(), ev.top, ev.div)
        if ev.kind == "time":
            return lambda buf: out.time(time.strftime(ev.fmt))  # type: ignore[arg-type]
        if ev.kind == "clear":
            return lambda buf: self.readers[ev.map].clear()  # type: ignore[index]
        if ev.kind == "zero":
            return lambda buf: self.readers[ev.map].zero()  # type: ignore[index]
        if ev.kind == "exit":
            if ev.record.fields:  # exit(code)
                return lambda buf: self._on_exit(decode(buf)[0])
            return lambda buf: self._on_exit(0)
        if ev.kind in ("errorf", "warnf"):
            message = compile_format(ev.fmt)  # type: ignore[arg-type]
            severity = "ERROR" if ev.kind == "errorf" else "WARNING"
            return lambda buf: out.errorf(message(decode(buf)), ev.where, severity)  # type: ignore[arg-type]
        if ev.kind == "system":
            command_of = compile_format(ev.fmt)  # type: ignore[arg-type]
            return lambda buf: self._system(command_of(decode(buf)))
        if ev.kind == "cat":
            name_of = compile_format(ev.fmt)  # type: ignore[arg-type]
            return lambda buf: self._cat(name_of(decode(buf)))
        if ev.kind == "join":
            return lambda buf: out.join(ev.fmt.join(_up_to_empty(decode(buf))))  # type: ignore[union-attr]
        raise AssertionError(ev.kind)

    def _cat(self, filename: str) -> None:
        """bpftrace's cat(): at most max_cat_bytes bytes of the file, as they are."""
        try:
            with open(filename, "rb") as f:
                data = f.read(self.cat_bytes_max)
        except OSError as e:
            self.out.flush()
            print(f"ERROR: failed to open file '{filename}': {e.strerror}", file=self.stderr, flush=True)
            return
        self.out.cat(from_bytes(data))

    def _system(self, command: str) -> None:
        """system() (--unsafe): the command's output, printed when its event is handled."""
        import subprocess

        self.out.flush()
        p = subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.out.syscall(from_bytes(p.stdout))

    def _on_exit(self, code: int) -> bool:
        """exit(code): stop; the code becomes the process's exit status (as a status: & 0xff)."""
        self.exit_requested = True
        self.exit_code = code & 0xFF
        return False


def _up_to_empty(parts: List[str]) -> List[str]:
    """join()'s strings up to the first empty one, as bpftrace."""
    out = []
    for part in parts:
        if not part:
            break
        out.append(part)
    return out
