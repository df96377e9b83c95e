"""``platform history`` and ``platform diff``: reading the ledger and comparing stages."""

from __future__ import annotations

import difflib
from itertools import islice

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.git import Git
from platformctl.ledger import Entry, HoldEvent, first_parent_line, hold_events, rolled_back
from platformctl.ledger import history as read_history
from platformctl.model import Release
from platformctl.output import OutputFormat, render_table, to_json, with_age
from platformctl.render import Renderer
from platformctl.status import same_artifact


def _as_dict(event: Entry | HoldEvent, bad: set[str]) -> dict[str, object]:
    if isinstance(event, HoldEvent):
        return event.as_dict()
    overridden = event.overridden
    return {**event.as_dict(), "rolled_back": event.commit in bad, "overridden": overridden}


def _row(event: Entry | HoldEvent, bad: set[str]) -> list[str | None]:
    if isinstance(event, HoldEvent):
        when = with_age(event.time)
        return [
            event.commit[:12],
            when,
            event.author,
            event.action,
            None,
            None,
            None,
            None,
            event.reason,
        ]
    action = event.action + (" (rolled back)" if event.commit in bad else "")
    overridden = event.overridden
    reason = event.reason
    if overridden:
        reason = f"{reason or ''} [overrode {', '.join(overridden)}]".strip()
    short = event.image.short_digest
    return [
        event.commit[:12],
        with_age(event.time),
        event.author,
        action,
        event.image.tag,
        short,
        event.origin,
        event.release_set,
        reason,
    ]


def register(app: typer.Typer) -> None:
    @app.command()
    def history(
        ctx: typer.Context,
        service: str = typer.Argument(..., help="The service."),
        env: str = typer.Option(..., "--env", "-e", help="The environment."),
        limit: int = typer.Option(20, "--limit", "-n", min=1, help="At most this many."),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Releases of SERVICE in ENV, newest first, read from the values file's history,
        with the holds and unholds of the service there; a release a later rollback replaced
        is marked rolled back, overridden gates are named, and a release that came with a
        release set (promote --all, rollback --set) names it."""
        repo = options(ctx).repo()
        git, release = Git(repo.root), repo.release(service, env)
        # one more than shown, so the oldest shown release knows whether a rollback replaced it
        entries = read_history(git, release, limit + 1)
        bad = rolled_back(entries)
        holds = list(islice(hold_events(git, release), limit))
        events: list[Entry | HoldEvent] = [*entries[:limit], *holds]
        if holds:  # in the branch's own order: commits of one second have no order by time
            order = {commit: index for index, commit in enumerate(first_parent_line(git, events))}
            events.sort(key=lambda event: order.get(event.commit, len(order)))
        events = events[:limit]
        if output is OutputFormat.json:
            typer.echo(to_json([_as_dict(event, bad) for event in events]))
            return
        rows = [_row(event, bad) for event in events]
        headers = ["commit", "time", "author", "action", "tag", "digest", "from", "set", "reason"]
        typer.echo(render_table(output, headers, rows))

    @app.command()
    def diff(
        ctx: typer.Context,
        services: list[str] | None = typer.Argument(
            None, help="Only these services (default: all).", show_default=False
        ),
        source: str = typer.Option(..., "--from", help="The environment to compare from."),
        target: str = typer.Option(..., "--to", help="The environment to compare with."),
        rendered: bool = typer.Option(False, "--rendered", help="Unified diff of manifests."),
        wide: bool = typer.Option(
            False, "--wide", help="Full image references (default: tag@short digest)."
        ),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Image differences between two environments (and the manifests with --rendered)."""
        repo = options(ctx).repo()
        left, right = repo.environment(source), repo.environment(target)
        names = [repo.service(s) for s in services or []] or list(repo.services)
        pairs = [
            (n, repo.releases.get((n, left.name)), repo.releases.get((n, right.name)))
            for n in names
        ]
        if rendered:
            renderer = Renderer(repo)
            for name, a, b in pairs:
                before = renderer.release(a).text if a else ""
                after = renderer.release(b).text if b else ""
                typer.echo(
                    "".join(
                        difflib.unified_diff(
                            before.splitlines(keepends=True),
                            after.splitlines(keepends=True),
                            f"{left.name}/{name}",
                            f"{right.name}/{name}",
                        )
                    ),
                    nl=False,
                )
            return
        rows = [
            {
                "service": n,
                "from": a.image.reference if a else None,
                "to": b.image.reference if b else None,
                "differs": not (a and b and same_artifact(a.image, b.image)),
            }
            for n, a, b in pairs
        ]
        if output is OutputFormat.json:
            typer.echo(to_json(rows))
            return

        def shown(release: Release | None) -> str:
            if release is None:
                return "-"
            return release.image.reference if wide else release.image.label

        table = [
            [n, shown(a), shown(b)]
            for (n, a, b), r in zip(pairs, rows, strict=True)
            if r["differs"]
        ]
        same = len(rows) - len(table)
        if not table:
            typer.echo(f"{left.name} and {right.name} run the same images")
            return
        typer.echo(render_table(output, ["service", left.name, right.name], table))
        if same:
            typer.echo(f"\n{same} more the same in both")
