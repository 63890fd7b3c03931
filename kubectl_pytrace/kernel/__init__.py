"""Pure-Python knowledge about the running kernel, shared by the compiler and the runtime.

- ``btf``: struct layouts and function signatures from the kernel's BTF (/sys/kernel/btf/vmlinux).
- ``headers``: which kernel headers BCC should compile against, and why.
- ``tracefs``: tracefs mount, tracepoint lists and formats, kernel function lists, kallsyms.

Nothing here imports bcc or kubernetes: the compiler (kubectl_pytrace.lang) uses it too.
"""
