"""The kubectl-pytrace command line: one module per subcommand, wired here.

Errors are turned into messages and exit codes in one place, main(): a UserError prints
`error: <message>` (and its hint) and exits with its code; click's usage errors exit 2;
Ctrl-C outside a trace exits 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from kubectl_pytrace import __version__
from kubectl_pytrace.cli.completion import completion
from kubectl_pytrace.cli.delete import delete
from kubectl_pytrace.cli.follow import attach, logs
from kubectl_pytrace.cli.get import get
from kubectl_pytrace.cli.programs import programs
from kubectl_pytrace.cli.ps import ps
from kubectl_pytrace.cli.run import run
from kubectl_pytrace.cli.tracer import tracer
from kubectl_pytrace.cli.version import version
from kubectl_pytrace.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kubectl-pytrace")
def cli() -> None:
    """Trace pods, workloads and nodes with eBPF, in the bpftrace language.

    \b
    Find more information at: https://github.com/kubectl-pytrace/kubectl-pytrace
    """


for command in (run, get, logs, attach, delete, ps, programs, version, completion, tracer):
    cli.add_command(command)


def main(argv=None) -> None:
    import faulthandler

    faulthandler.enable()  # the tracer talks to the kernel through ctypes: a crash shows where
    try:
        cli.main(args=argv, prog_name="kubectl pytrace", complete_var="_KUBECTL_PYTRACE_COMPLETE",
                 standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except UserError as e:
        sys.stdout.flush()
        print(e.render(), file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `kubectl pytrace ... | head`: the reader is gone
        sys.stderr.close()
        sys.exit(141)
