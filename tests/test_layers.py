"""The package's layers (README, Design): each package imports only the layers below it.

Every import statement of every module is read with `ast` (imports inside functions too, since
lazy imports are how start-up stays fast), so a layer cannot be crossed by deferring the import.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kubectl_pytrace"

# package -> the packages of kubectl_pytrace it may import (besides itself). "errors" and "files"
# are the leaf modules every layer may use.
BASE = {"errors", "files", "resources", "traceconfig", "catalog"}
ALLOWED: Dict[str, Set[str]] = {
    "errors": set(),
    "files": set(),
    "resources": set(),
    "traceconfig": set(),
    "catalog": {"errors", "resources"},
    "lang": BASE,
    "kernel": BASE,
    "bpf": BASE | {"kernel"},
    "containers": BASE | {"kernel"},
    "host": BASE | {"kernel", "lang", "containers"},
    "output": BASE | {"kernel", "lang", "host", "bpf"},
    "tracer": BASE | {"kernel", "lang", "host", "bpf", "containers", "output"},
    "k8s": BASE | {"lang", "output"},
    "cli": {"*"},
    "__init__": set(),
    "__main__": {"cli"},
}
# third-party packages only some layers may import
RESTRICTED = {"kubernetes": {"k8s"}, "bcc": {"bpf"}, "jinja2": {"k8s"}}


def _imports(path: Path, root: Path) -> Iterator[Tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = path.relative_to(root.parent).with_suffix("").parts[:-node.level]
                mod = ".".join(base + ((node.module,) if node.module else ()))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            if mod == "kubectl_pytrace":  # from kubectl_pytrace import errors (not __version__)
                for alias in node.names:
                    if (root / alias.name).is_dir() or (root / f"{alias.name}.py").exists():
                        yield node.lineno, f"kubectl_pytrace.{alias.name}"


def _layer(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def violations(root: Path = PACKAGE) -> List[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        layer = _layer(path, root)
        allowed = ALLOWED.get(layer)
        if allowed is None:
            out.append(f"{path.relative_to(root)}: package {layer!r} has no place in the layers")
            continue
        for line, mod in _imports(path, root):
            parts = mod.split(".")
            where = f"{path.relative_to(root.parent)}:{line}"
            if parts[0] == "kubectl_pytrace" and len(parts) > 1:
                target = parts[1]
                if target != layer and "*" not in allowed and target not in allowed:
                    out.append(f"{where}: {layer} imports {mod} ({target} is not below {layer})")
            elif parts[0] in RESTRICTED and layer not in RESTRICTED[parts[0]]:
                out.append(f"{where}: {layer} imports {parts[0]} (only {', '.join(sorted(RESTRICTED[parts[0]]))} may)")
    return out


def test_every_package_imports_only_the_layers_below_it():
    assert violations() == []


def test_the_check_catches_a_compiler_that_imports_the_runtime(tmp_path):
    # a copy of the package where lang imports the tracer, and kernel the kubernetes client
    import shutil

    copy = tmp_path / "kubectl_pytrace"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "lang" / "types.py", "a") as f:
        f.write("\n\ndef _late():\n    from kubectl_pytrace.tracer import engine  # noqa\n")
    with open(copy / "kernel" / "btf.py", "a") as f:
        f.write("\nimport kubernetes  # noqa\n")
    with open(copy / "containers" / "fs.py", "a") as f:
        f.write("\nfrom kubectl_pytrace.bpf import syscalls  # noqa\n")
    found = violations(copy)
    assert any("lang/types.py" in v and "lang imports kubectl_pytrace.tracer" in v for v in found), found
    assert any("kernel/btf.py" in v and "kernel imports kubernetes" in v for v in found), found
    assert any("containers/fs.py" in v and "containers imports kubectl_pytrace.bpf" in v for v in found), found
    assert len(found) == 3, found


@pytest.mark.parametrize("layer", ["lang", "kernel"])
def test_the_bottom_layers_import_nothing_above_them(layer):
    assert ALLOWED[layer] <= BASE
