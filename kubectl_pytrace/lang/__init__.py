"""The compiler: bpftrace-language text -> C for BCC plus everything the runtime needs to decode it.

Passes, in order (each stops the compilation when it reports an error):

1. parse      text -> AST                      (preprocess.py for #if/#define/#include,
                                               parser.py, grammar.lark)
2. expand     attach points -> concrete probes (expand.py) - needs the environment for wildcards
3. analyse    types, map layouts, checks       (semantic.py) - needs probes expanded, because a
              tracepoint's `args` type depends on which tracepoint it is
4. generate   C text, event and map layouts    (codegen.py)

This package imports neither bcc nor kubernetes: the environment (tracefs, BTF, ELF symbols) is
passed in, so the kubectl client can compile without a node and the tracer with one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from kubectl_pytrace.lang.diagnostics import CompileError, Diagnostics, Source
from kubectl_pytrace.lang.env import Environment
from kubectl_pytrace.lang.program import CodegenOptions, CProgram
from kubectl_pytrace.lang.scope import ScopeFilter

if TYPE_CHECKING:
    from kubectl_pytrace.lang import ast
    from kubectl_pytrace.lang.semantic import Analysis

__all__ = ["CompileError", "Compiled", "CodegenOptions", "Environment", "ScopeFilter", "check_program",
           "compile_program", "parse"]


@dataclass
class Compiled:
    program: "ast.Program"
    analysis: "Analysis"
    c: CProgram
    warnings: str = ""


def parse(text: str, filename: str = "stdin", env: Optional[Environment] = None) -> Any:
    from kubectl_pytrace.lang.parser import parse as _parse

    return _parse(text, filename, (env or Environment()).predefined_macros())


def _front_end(text: str, filename: str, env: Environment, params: List[str], has_cpid: bool,
               predefined: Optional[Dict[str, int]], defer: bool, unsafe: bool):
    """parse -> config -> macros -> expand -> analyse, stopping at the first pass that reports an
    error (CompileError). The passes are imported here, not at the top: a tracer that finds the
    compiled program in its cache never loads the parser (lark) or the passes."""
    from kubectl_pytrace.lang.config import read_config
    from kubectl_pytrace.lang.expand import expand
    from kubectl_pytrace.lang.macros import expand_macros
    from kubectl_pytrace.lang.parser import parse as _parse, recursion_room
    from kubectl_pytrace.lang.semantic import analyse, split_params

    diags = Diagnostics(Source(text, filename))
    program = _parse(text, filename, env.predefined_macros(), diags)  # also refuses too deep nesting
    with recursion_room():
        config = read_config(program.config, diags)
        expand_macros(program, diags)  # before anything reads the probes' bodies
        if diags.has_errors():
            raise CompileError(diags)
        groups = expand(program, env, diags, config.missing_probes, split_params(params)[0])
        if diags.has_errors():
            raise CompileError(diags)
        analysis = analyse(program, groups, env, diags, params, has_cpid, predefined, config,
                           unsafe=unsafe, defer=defer)
        if diags.has_errors():
            raise CompileError(diags)
    return program, analysis, diags


def check_program(text: str, filename: str = "stdin", env: Optional[Environment] = None,
                  params: Optional[List[str]] = None, unsafe: bool = False) -> str:
    """Every check the environment allows, without generating code: what the kubectl plugin runs
    on the client (with Environment(), which knows nothing of the node) before it creates anything.
    Raises CompileError; returns the warnings."""
    _, _, diags = _front_end(text, filename, env or Environment(), params or [], False, {"$container_pid": 0},
                             defer=True, unsafe=unsafe)
    return diags.render()


def compile_program(text: str, filename: str = "stdin", env: Optional[Environment] = None,
                    options: Optional[CodegenOptions] = None, params: Optional[List[str]] = None,
                    has_cpid: bool = False, predefined: Optional[Dict[str, int]] = None) -> Compiled:
    """Compile a program; raises CompileError with every diagnostic of the failing pass.

    predefined: variables the runtime sets before every probe body, e.g. {"$container_pid": 4242}.
    """
    from kubectl_pytrace.lang.codegen import generate
    from kubectl_pytrace.lang.parser import recursion_room

    params = params or []
    program, analysis, diags = _front_end(text, filename, env or Environment(), params, has_cpid, predefined,
                                          defer=False, unsafe=bool(options and options.unsafe))
    with recursion_room():
        c = generate(analysis, options, params)
    return Compiled(program, analysis, c, diags.render())
