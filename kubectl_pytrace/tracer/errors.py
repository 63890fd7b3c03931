"""Failures the user can act on. str() is the whole message; the CLI prints `error: <message>` and
exits 1. Anything else escaping the tracer is a bug and keeps its traceback."""


class TraceError(Exception):
    pass
