"""This host as the compiler and the printer see it: ELF binaries (elf.py), the compiler's
Environment over tracefs, BTF, headers and binaries (env.py), and user-space symbols (symbols.py)."""
