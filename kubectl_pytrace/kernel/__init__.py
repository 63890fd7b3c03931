"""Pure-Python knowledge about the running kernel, shared by the compiler and the runtime.

- ``btf``: struct layouts and function signatures from the kernel's BTF (/sys/kernel/btf/vmlinux).
- ``headers``: which kernel headers BCC should compile against, and why.
- ``tracefs``: tracefs mount, tracepoint lists and formats, kernel function lists, kallsyms.
- ``procfs``: processes, namespaces and mounts from a /proc tree whose root is a parameter.
- ``cheaders``: #define constants from C headers.
- ``syscall_table``: the x86_64 number of each syscalls:* tracepoint (generated).

Nothing here imports anything of the package above kubectl_pytrace.errors (a test checks the layers).
"""
