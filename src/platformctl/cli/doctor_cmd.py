"""``platform doctor``: a checklist of what this machine needs, with the fix for each gap."""

from __future__ import annotations

from pathlib import Path

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.doctor import diagnose
from platformctl.output import OutputFormat, render_table, to_json


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(ctx: typer.Context, output: OutputFormat = OUTPUT_OPTION) -> None:
        """Check git, the repository, tokens, credentials, hooks and test components.

        Exit codes: 0 everything required is there (gaps in optional things are listed);
        1 something required is missing."""
        checks = diagnose(options(ctx).repo_path or Path.cwd())
        if output is OutputFormat.json:
            typer.echo(to_json([check.as_dict() for check in checks]))
        else:
            rows = [
                [
                    "ok" if c.ok else ("MISSING" if c.required else "missing"),
                    c.name,
                    c.detail,
                    c.needed_for,
                    "" if c.ok else (c.fix or ""),
                ]
                for c in checks
            ]
            typer.echo(render_table(output, ["", "check", "found", "needed for", "fix"], rows))
        if any(c.required and not c.ok for c in checks):
            raise typer.Exit(1)
