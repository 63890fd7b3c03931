"""Integer #defines of the C headers a program #includes (AF_INET, TASK_RUNNING, O_CREAT ...).

bpftrace hands a program's #include lines to clang and takes every macro clang saw. Here the named
headers are read as text, without running a preprocessor: each `#define NAME BODY` line is
collected (the first definition of a name wins; function-like macros are skipped) and the
#include lines of those headers are followed breadth first, a few levels deep, only as far as
needed to find the name asked for:

    sys/socket.h          #include <bits/socket.h>
      bits/socket.h       #define PF_INET 2
                          #define AF_INET PF_INET

Conditionals inside headers are not evaluated (both branches are read), which is right for the
constants programs use. Bodies are returned as text; the caller evaluates them.

Search order as clang's with bpftrace's flags: the kernel tree's include directories (arch first,
then uapi; the tree from kernel/headers.py), then /usr/local/include, the multiarch directory and
/usr/include.
"""

from __future__ import annotations

import os
import re
from collections import deque
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple

MAX_DEPTH = 4  # levels of #include followed below the program's own (sys/socket.h -> bits/socket.h)
MAX_FILES = 500  # headers read for one program at most

_ARCH = {"x86_64": ("x86", "x86_64-linux-gnu"), "aarch64": ("arm64", "aarch64-linux-gnu"),
         "ppc64le": ("powerpc", "powerpc64le-linux-gnu"), "s390x": ("s390", "s390x-linux-gnu")}

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_][A-Za-z0-9_]*)(\(?)[ \t]*(.*?)[ \t]*$", re.M)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*(?:<([^>\n]+)>|"([^"\n]+)")', re.M)


def search_path(kernel_tree: Optional[str], root: str = "/") -> List[str]:
    """Include directories, in clang's order for bpftrace: kernel tree (if any), then the system's."""
    arch, multiarch = _ARCH.get(os.uname().machine, (os.uname().machine, ""))
    dirs: List[str] = []
    if kernel_tree:
        for rel in (f"arch/{arch}/include", f"arch/{arch}/include/generated", "include",
                    f"arch/{arch}/include/uapi", f"arch/{arch}/include/generated/uapi", "include/uapi",
                    "include/generated/uapi"):
            dirs.append(os.path.join(kernel_tree, rel))
    for rel in ("usr/local/include", f"usr/include/{multiarch}" if multiarch else "", "usr/include"):
        if rel:
            dirs.append(os.path.join(root, rel))
    return [d for d in dirs if os.path.isdir(d)]


def read_header(path: str) -> Tuple[Dict[str, str], List[Tuple[str, bool]]]:
    """(NAME -> body text of its first object-like #define, [(included name, is <system>)])."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}, []
    text = text.replace("\\\n", " ")
    text = _COMMENT.sub(" ", text)
    defines: Dict[str, str] = {}
    for m in _DEFINE.finditer(text):
        if not m.group(2):
            defines.setdefault(m.group(1), m.group(3))
    includes = [(m.group(1) or m.group(2), m.group(1) is not None) for m in _INCLUDE.finditer(text)]
    return defines, includes


class HeaderMacros:
    """The #defines reachable from a program's #include lines, read lazily."""

    def __init__(self, includes: Sequence[str], dirs: Sequence[str]):
        self.dirs = list(dirs)
        self.defines: Dict[str, str] = {}
        self.files: List[str] = []  # every header read (their contents decide the compilation)
        self.missing: List[str] = []  # the program's own #includes that were not found
        self._queue: Deque[Tuple[str, bool, str, int]] = deque()
        self._seen: Set[str] = set()
        for name in includes:
            path = self.find(name, True, "")
            if path is None:
                self.missing.append(name)
            else:
                self._queue.append((path, True, "", 0))

    def find(self, name: str, system: bool, including_dir: str) -> Optional[str]:
        """A header's path: "x.h" next to the file including it first, then the search path."""
        if os.path.isabs(name):
            return name if os.path.isfile(name) else None
        dirs: Iterable[str] = self.dirs if system or not including_dir else [including_dir, *self.dirs]
        for d in dirs:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
        return None

    def body(self, name: str) -> Optional[str]:
        """The body of `name`'s #define, reading further headers until it is found (or none are left)."""
        while name not in self.defines and self._queue:
            self._read_next()
        return self.defines.get(name)

    def _read_next(self) -> None:
        path, _system, _from, depth = self._queue.popleft()
        real = os.path.realpath(path)
        if real in self._seen or len(self._seen) >= MAX_FILES:
            return
        self._seen.add(real)
        self.files.append(path)
        defines, includes = read_header(path)
        for k, v in defines.items():
            self.defines.setdefault(k, v)
        if depth >= MAX_DEPTH:
            return
        here = os.path.dirname(path)
        for name, system in includes:
            found = self.find(name, system, here)
            if found is not None:
                self._queue.append((found, system, here, depth + 1))
