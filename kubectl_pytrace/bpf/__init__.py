"""BPF itself: the bpf(2) and perf_event_open(2) calls (syscalls.py), compiled objects made by
BCC in a subprocess and cached (objects.py, bcc_compile.py), loading and attaching (loader.py; many
points at once: links.py for BPF_LINK_CREATE, uprobes.py for uprobe_multi, dispatch.py for syscall
tracepoints) and the ring buffer (ringbuf.py). Knows nothing of the language or of containers."""
