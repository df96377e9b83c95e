"""The ``platform`` command: thin Typer commands over the library, one module each."""

from __future__ import annotations

import sys

import click
import typer

from platformctl.cli import render_cmd, status_cmd, verify_cmd
from platformctl.cli.common import app
from platformctl.errors import ExitCode, PlatformError

__all__ = ["app", "main"]

for module in (render_cmd, status_cmd, verify_cmd):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: map library errors to one line and an exit code (tracebacks with --debug)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="platform", standalone_mode=False)
    except PlatformError as error:
        if debug:
            raise
        typer.echo(f"error: {error}", err=True)
        return int(error.exit_code)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as exit_:
        return int(exit_.exit_code)
    except click.ClickException as error:
        error.show()
        return int(ExitCode.USAGE)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
