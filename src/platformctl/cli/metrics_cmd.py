"""``platform metrics``: DORA's four numbers per environment, read from the git ledger."""

from __future__ import annotations

import datetime as dt

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.dora import HEADERS, metrics, parse_since
from platformctl.git import Git
from platformctl.output import OutputFormat, render_table, to_json


def register(app: typer.Typer) -> None:
    @app.command("metrics")
    def metrics_command(
        ctx: typer.Context,
        env: list[str] | None = typer.Option(
            None, "--env", "-e", help="Only this environment (repeatable; default: all)."
        ),
        service: list[str] | None = typer.Option(
            None, "--service", "-s", help="Only this service (repeatable; default: all)."
        ),
        since: str = typer.Option(
            "30d", "--since", help="Window start: a duration back from now (30d, 12h) or a date."
        ),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Deployments per day, lead time (median, p90), change failure rate and time to
        restore of each environment over the window, from the watched branch's first-parent
        history (see the README's "Delivery metrics" for each definition)."""
        now = dt.datetime.now(dt.UTC)
        start = parse_since(since, now)
        repo = options(ctx).repo()
        report = metrics(Git(repo.root), repo, start, now, env or (), service or ())
        if output is OutputFormat.json:
            typer.echo(to_json(report.as_dict()))
            return
        typer.echo(render_table(output, HEADERS, [m.row() for m in report.environments]))
        if not any(m.deployments for m in report.environments):
            typer.echo(f"\nno deployments since {start:%Y-%m-%d %H:%M} UTC")
