"""What every command shares: the app, global options and how the repository is found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperGroup

from platformctl.errors import PlatformError
from platformctl.model import Repo, find_root, load_repo
from platformctl.output import OutputFormat


class PlatformGroup(TyperGroup):
    """Prints a PlatformError as one line and exits with its code (a traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlatformError as error:
            if isinstance(ctx.obj, GlobalOptions) and ctx.obj.debug:
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(int(error.exit_code)) from None


app = typer.Typer(
    cls=PlatformGroup,
    name="platform",
    help="Render, verify, promote and roll back the services of this GitOps repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass
class GlobalOptions:
    repo_path: Path | None
    debug: bool

    def repo(self) -> Repo:
        return load_repo(find_root(self.repo_path or Path.cwd()))


@app.callback()
def _global_options(
    ctx: typer.Context,
    repo: Path | None = typer.Option(
        None, "--repo", help="The repository to work on (default: the one containing the cwd)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    ctx.obj = GlobalOptions(repo_path=repo, debug=debug)


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    assert isinstance(obj, GlobalOptions)
    return obj


OUTPUT_OPTION = typer.Option(
    OutputFormat.table, "--output", "-o", help="table, json or markdown.", case_sensitive=False
)
