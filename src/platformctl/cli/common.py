"""What every command shares: the app, global options, how the repository is found, and the
exit-code contract.

Every failure is one line on stderr and a documented code: a ``PlatformError`` its own
(1 refused, 2 usage or input, 3 environment, 4 --wait failed after a push), a click usage
error 2, a file the system would not read or write 3, Ctrl-C 130, anything unexpected 70
("internal error"). ``--debug`` adds the traceback and changes nothing else.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer import _click as click
from typer.core import TyperGroup

from platformctl.errors import ExitCode, PlatformError, one_line
from platformctl.model import Repo, find_root, load_repo
from platformctl.output import OutputFormat
from platformctl.release import Session, writing


def _fail(message: str, code: int, debug: bool, *, json_report: bool = False) -> NoReturn:
    """The one line on stderr; with ``-o json`` the same as a JSON object on stdout, so a
    script reading stdout sees the failure too."""
    if debug:
        traceback.print_exc()
    line = one_line(message)
    if json_report:
        from platformctl.output import to_json

        typer.echo(to_json({"error": line, "exit_code": int(code)}))
    typer.echo(f"error: {line}", err=True)
    sys.exit(code)


def _wants_json(arguments: Sequence[str]) -> bool:
    """Whether the command line asks for ``-o json`` (read before click parses it, since a
    usage error happens before any option is known)."""
    for index, word in enumerate(arguments):
        if word in ("-o", "--output") and index + 1 < len(arguments):
            if arguments[index + 1].lower() == "json":
                return True
        elif word.lower() in ("-ojson", "--output=json"):
            return True
    return False


class PlatformGroup(TyperGroup):
    """Maps every way a command can end to the exit-code contract of the module doc."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **extra: Any) -> Any:
        arguments = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in arguments
        self.json_errors = _wants_json(arguments)
        extra["standalone_mode"] = False
        fail = partial(_fail, debug=debug, json_report=self.json_errors)
        try:
            result = super().main(arguments, *rest, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()
            sys.exit(ExitCode.USAGE)
        except click.exceptions.UsageError as error:
            fail(f"{error.format_message()} (see: platform --help)", ExitCode.USAGE)
        except (typer.Abort, KeyboardInterrupt):
            fail("interrupted: nothing was left half-done", ExitCode.INTERRUPTED)
        except click.exceptions.ClickException as error:
            fail(error.format_message(), ExitCode.USAGE)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except BaseException as error:  # the contract: even a bug is one line and its own code
            debug = isinstance(ctx.obj, GlobalOptions) and ctx.obj.debug
            reported = isinstance(error, PlatformError) and error.in_json_report
            json_report = getattr(self, "json_errors", False) and not reported
            _fail(*_contract(error), debug, json_report=json_report)


def _contract(error: BaseException) -> tuple[str, int]:
    """The one line and the exit code of an exception a command raised."""
    if isinstance(error, PlatformError):
        return str(error), int(error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted: nothing was left half-done", ExitCode.INTERRUPTED
    if isinstance(error, SystemExit):
        raise error
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}", ExitCode.ENVIRONMENT
    return f"internal error: {type(error).__name__}: {error}; run with --debug", ExitCode.INTERNAL


app = typer.Typer(
    cls=PlatformGroup,
    name="platform",
    help="Render, verify, promote and roll back the services of this GitOps repository.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"platform {version('platformctl')}")
        raise typer.Exit()


@dataclass
class GlobalOptions:
    repo_path: Path | None
    debug: bool

    def root(self) -> Path:
        return find_root(self.repo_path or Path.cwd())

    def repo(self) -> Repo:
        return load_repo(self.root())

    @contextmanager
    def session(self, dry_run: bool) -> Iterator[tuple[Session | None, Repo]]:
        """A write: the clone's lock first, then the model (so every plan is made under the
        lock). A dry run writes nothing and takes no lock."""
        root = self.root()
        if dry_run:
            yield None, load_repo(root)
            return
        with writing(root) as session:
            yield session, load_repo(root)


@app.callback()
def _global_options(
    ctx: typer.Context,
    repo: Path | None = typer.Option(
        None, "--repo", help="The repository to work on (default: the one containing the cwd)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
    _version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    ctx.obj = GlobalOptions(repo_path=repo, debug=debug)


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    assert isinstance(obj, GlobalOptions)
    return obj


OUTPUT_OPTION = typer.Option(
    OutputFormat.table, "--output", "-o", help="table, json or markdown.", case_sensitive=False
)
