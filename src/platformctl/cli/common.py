"""What every command shares: the app, global options and how the repository is found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from platformctl.model import Repo, find_root, load_repo
from platformctl.output import OutputFormat

app = typer.Typer(
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
