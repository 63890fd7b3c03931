"""Running a trace: the session (session.py: compile for this host, scope to a container, cache
the compiled program) and the engine (engine.py: load, attach, stream events, END, maps). The
same code runs `run --local` and the tracer pod on a node."""
