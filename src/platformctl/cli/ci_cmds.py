"""``platform ci``: what the pipelines report back to GitHub (a PR comment, a drift issue).

Thin on purpose: the pipeline scripts in ``pipelines/`` produce the Markdown, these commands
only place it, once, where reviewers look; a re-run edits instead of adding.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from platformctl.errors import InputError
from platformctl.github import GitHub

ci = typer.Typer(
    help="Report pipeline results to GitHub (used by pipelines/).", no_args_is_help=True
)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot read the report ({error.strerror})") from None


def _github() -> GitHub:
    # Actions sets GITHUB_REPOSITORY; these commands only run in pipelines, never from a clone.
    slug = os.environ.get("GITHUB_REPOSITORY", "")
    if slug.count("/") != 1:
        raise InputError(
            "platform ci needs the repository in GITHUB_REPOSITORY",
            hint="set GITHUB_REPOSITORY=owner/name",
        )
    return GitHub(slug)


@ci.command()
def comment(
    pull_request: int = typer.Option(..., "--pull-request", min=1, help="The PR's number."),
    marker: str = typer.Option(..., "--marker", help="Which report (one comment each)."),
    file: Path = typer.Option(..., "--file", help="Markdown to post."),
) -> None:
    """Add or update this report's comment on a pull request."""
    url = _github().upsert_comment(pull_request, marker, _text(file))
    typer.echo(url)


@ci.command()
def issue(
    title: str = typer.Option(..., "--title", help="The issue's title."),
    label: str = typer.Option(..., "--label", help="One open issue per label."),
    file: Path = typer.Option(..., "--file", help="Markdown body."),
) -> None:
    """Open the issue for this label, or update the open one."""
    number, created = _github().upsert_issue(title, label, _text(file))
    typer.echo(f"{'opened' if created else 'updated'} #{number}")


def register(app: typer.Typer) -> None:
    app.add_typer(ci, name="ci")
