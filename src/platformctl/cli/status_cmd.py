"""``platform status``: which image runs where."""

from __future__ import annotations

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.output import OutputFormat, render_table, to_json
from platformctl.status import status as build_status


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        ctx: typer.Context,
        env: list[str] = typer.Option([], "--env", "-e", help="Only these environments."),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Show the services x environments matrix; '*' marks a change from the stage before."""
        repo = options(ctx).repo()
        rows = build_status(repo, env)
        if output is OutputFormat.json:
            typer.echo(to_json([row.as_dict() for row in rows]))
            return
        environments = list(dict.fromkeys(row.environment for row in rows))
        cells = {(row.service, row.environment): row for row in rows}
        table = []
        for service in repo.services:
            line: list[str | None] = [service]
            for environment in environments:
                row = cells.get((service, environment))
                if row is None:
                    line.append(None)
                    continue
                text = row.image.tag or "(digest)"
                if row.image.short_digest:
                    text += f" @{row.image.short_digest}"
                line.append(text + (" *" if row.differs_from_previous else ""))
            table.append(line)
        typer.echo(render_table(output, ["service", *environments], table))
