"""``platform status``: which image runs where (and, with ``--live``, what Argo CD says)."""

from __future__ import annotations

from typing import Any

import typer

from platformctl.argocd import AppState
from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.errors import EnvironmentProblem, InputError, PlatformError
from platformctl.git import Git
from platformctl.ledger import current_sets, set_lines
from platformctl.output import OutputFormat, render_table, to_json
from platformctl.status import LiveStates, StatusRow, live_states
from platformctl.status import holds as list_holds
from platformctl.status import status as build_status


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        ctx: typer.Context,
        env: list[str] = typer.Option([], "--env", "-e", help="Only these environments."),
        live: bool = typer.Option(
            False,
            "--live",
            help="Also ask each environment's Argo CD; exit 1 if an Application is not Synced.",
        ),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Show the services x environments matrix; '*' marks a change from the stage before;
        'set:' lines name the release sets the environments' images came with."""
        repo = options(ctx).repo()
        rows = build_status(repo, env)
        sets = current_sets(Git(repo.root), (repo.release(r.service, r.environment) for r in rows))
        seen = live_states(repo, rows) if live else LiveStates({}, {})
        states = seen.states
        drifted = sorted(state.name for state in states.values() if state.sync != "Synced")
        if output is OutputFormat.json:
            typer.echo(
                to_json(
                    [
                        {
                            **row.as_dict(),
                            "release_set": sets[(row.service, row.environment)],
                            **_live(
                                states.get((row.service, row.environment)),
                                seen.unreachable.get(row.environment),
                            ),
                        }
                        for row in rows
                    ]
                    if live
                    else [
                        {**row.as_dict(), "release_set": sets[(row.service, row.environment)]}
                        for row in rows
                    ]
                )
            )
        else:
            typer.echo(render_table(output, *_matrix(repo.services, rows, seen)))
            for line in set_lines(sets):
                typer.echo(line)
            for row in rows:
                if row.hold is not None:
                    reason = row.hold.get("reason")
                    typer.echo(f"held: {row.service} in {row.environment}: {reason}")
        if seen.unreachable:
            if drifted:
                typer.echo(f"drift: not Synced in Argo CD: {', '.join(drifted)}", err=True)
            problem = _not_asked(seen.unreachable)
            problem.in_json_report = output is OutputFormat.json  # each row says it
            raise problem
        if drifted:
            typer.echo(f"drift: not Synced in Argo CD: {', '.join(drifted)}", err=True)
            raise typer.Exit(1)

    _holds_command(app)


def _holds_command(app: typer.Typer) -> None:
    @app.command()
    def holds(
        ctx: typer.Context,
        env: list[str] = typer.Option([], "--env", "-e", help="Only these environments."),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """List the holds: which services cannot be promoted where, why, since when, by whom."""
        found = list_holds(options(ctx).repo(), env)
        if output is OutputFormat.json:
            typer.echo(to_json([hold.as_dict() for hold in found]))
            return
        if not found:
            typer.echo("no holds")
            return
        rows = [[h.environment, h.service, h.reason, h.since, h.by] for h in found]
        typer.echo(render_table(output, ["environment", "service", "reason", "since", "by"], rows))


def _not_asked(unreachable: dict[str, PlatformError]) -> PlatformError:
    """One error for every environment that could not be asked, with the first one's code."""
    first = next(iter(unreachable.values()))
    kind = InputError if isinstance(first, InputError) else EnvironmentProblem
    problems = "; ".join(f"{env}: {error}" for env, error in unreachable.items())
    return kind(f"live state unknown for {', '.join(unreachable)} ({problems})")


def _live(state: AppState | None, problem: PlatformError | None) -> dict[str, Any]:
    if problem is not None:
        return {"live": {"unreachable": str(problem)}}
    if state is None:
        return {"live": None}
    return {"live": {"sync": state.sync, "health": state.health, "revision": state.revision}}


def _matrix(
    services: tuple[str, ...], rows: list[StatusRow], seen: LiveStates
) -> tuple[list[str], list[list[str | None]]]:
    environments = list(dict.fromkeys(row.environment for row in rows))
    cells = {(row.service, row.environment): row for row in rows}
    table = []
    for service in services:
        line: list[str | None] = [service]
        for environment in environments:
            row = cells.get((service, environment))
            if row is None:
                line.append(None)
                continue
            text = row.image.tag or "(digest)"
            if row.image.short_digest:
                text += f" @{row.image.short_digest}"
            text += " *" if row.differs_from_previous else ""
            text += " (held)" if row.hold is not None else ""
            state = seen.states.get((service, environment))
            if environment in seen.unreachable:
                text += " [unreachable]"
            elif state is not None:
                text += f" [{state.sync}/{state.health}]"
            line.append(text)
        table.append(line)
    return ["service", *environments], table
