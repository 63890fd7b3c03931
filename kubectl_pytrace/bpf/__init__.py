"""BPF itself: the bpf(2) and perf_event_open(2) calls (syscalls.py), compiled objects made by
BCC in a subprocess and cached (objects.py, bcc_compile.py), loading and attaching (loader.py) and
the ring buffer (ringbuf.py). Knows nothing of the language or of containers."""
