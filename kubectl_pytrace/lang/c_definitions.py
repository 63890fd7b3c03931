"""C struct, union and enum definitions written in a program, before its probes.

    struct MyStruct { int a; char name[16]; struct task_struct *t; };
    enum color { RED, GREEN = 5 };

(Filled in by a later change: read_definitions() gives each definition's layout.)
"""

from __future__ import annotations

from typing import Dict, List

from kubectl_pytrace.lang import ast
from kubectl_pytrace.lang.diagnostics import Diagnostics
from kubectl_pytrace.lang.env import Environment


def read_definitions(defs: List[ast.CDefinition], env: Environment, diags: Diagnostics) -> Dict[str, object]:
    for d in defs:
        diags.error("C struct definitions in the program are not supported yet", d.span)
    return {}
