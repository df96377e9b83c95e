"""``platform new service NAME``: a new service's values files, wired into the network policy."""

from __future__ import annotations

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.output import OutputFormat, to_json
from platformctl.scaffold import DEFAULT_TAG, check_service, plan_service, write_service

new = typer.Typer(help="Add something to the repository (a service).", no_args_is_help=True)


@new.command()
def service(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The new service's name (a DNS label)."),
    like: str | None = typer.Option(
        None, "--like", help="Copy this service's shape (resources, probes, delivery)."
    ),
    callers: list[str] = typer.Option(
        [], "--callers", help="Services that call it (comma-separated or repeated)."
    ),
    tag: str = typer.Option(DEFAULT_TAG, "--tag", help="The image tag the first stage runs."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff, write nothing."),
    output: OutputFormat = OUTPUT_OPTION,
) -> None:
    """Write the service's values files for every stage; verify them first."""
    opts = options(ctx)
    repo = opts.repo()
    plan = plan_service(repo, name, like=like, callers=callers, tag=tag)
    check_service(repo, plan)
    if not dry_run:
        write_service(repo.root, plan)
    if output == OutputFormat.json:
        typer.echo(to_json({**plan.as_dict(repo), "dry_run": dry_run}))
        return
    if dry_run:
        typer.echo(plan.diff(repo.root), nl=False)
    verb = "would write" if dry_run else "wrote"
    typer.echo(f"{verb} {len(plan.created)} file(s), edited {len(plan.edited)}; next:")
    for number, step in enumerate(plan.next_steps(repo), 1):
        typer.echo(f"  {number}. {step}")


def register(app: typer.Typer) -> None:
    app.add_typer(new, name="new")
