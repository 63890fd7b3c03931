"""The kubectl-pytrace command line: one module per subcommand, wired here.

Errors are turned into messages and exit codes in one place, main(): a UserError prints
`error: <message>` (and its hint) and exits with its code; click's usage errors exit 2;
Ctrl-C outside a trace exits 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from kubectl_pytrace import __version__
from kubectl_pytrace.cli.run import run
from kubectl_pytrace.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubectl-pytrace")
def cli() -> None:
    """Trace Kubernetes pods and hosts with eBPF, using the bpftrace language."""


cli.add_command(run)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="kubectl-pytrace", standalone_mode=False)
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
