"""``platform reconcile``: roll back in git what Argo Rollouts already aborted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.cli.release_cmds import PULL_REQUEST_OPTION
from platformctl.delivery import DeliveryOptions, delivery_dict
from platformctl.output import OutputFormat, render_table, to_json

if TYPE_CHECKING:
    from platformctl.reconcile import Reconciled


def _report(result: Reconciled, output: OutputFormat, dry_run: bool) -> None:
    if output is OutputFormat.json:
        payload = {
            "environments": result.environments,
            "unwatched": result.unwatched,
            "findings": [finding.as_dict() for finding in result.findings],
            "rollbacks": [delivery_dict(d) for d in result.rollbacks],
            "changed": bool(result.rollbacks) and not dry_run,
            "dry_run": dry_run,
        }
        typer.echo(to_json(payload))
        return
    for name in result.unwatched:
        typer.echo(f"not asked: {name} declares no endpoints.argocd")
    where = ", ".join(result.environments) or "no environment"
    if not result.findings:
        typer.echo(f"nothing to reconcile in {where}: no release git names has failed in Argo CD")
        return
    rows = [
        [f.environment, f.service, f.failure.describe(), f.skipped or "rolled back and held"]
        for f in result.findings
    ]
    typer.echo(render_table(output, ["environment", "service", "Argo CD", "action"], rows))
    for delivery in result.rollbacks:
        outcome = delivery.outcome
        if dry_run:
            typer.echo(f"\ndry run, nothing written. {outcome.plan.subject()}\n")
            typer.echo(outcome.diff, nl=False)
        elif outcome.pull_request:
            pull = outcome.pull_request
            typer.echo(f"{outcome.plan.subject()}: pull request #{pull.number}: {pull.url}")
        else:
            where = f" and pushed to {outcome.branch}" if outcome.pushed else " (not pushed)"
            typer.echo(f"committed {(outcome.commit or '')[:12]}{where}: {outcome.plan.subject()}")


def register(app: typer.Typer) -> None:
    @app.command(name="reconcile")
    def reconcile_command(
        ctx: typer.Context,
        env: list[str] | None = typer.Option(
            None,
            "--env",
            "-e",
            help="An environment to look at (repeatable; default: every one with an Argo CD "
            "endpoint).",
            show_default=False,
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the rollbacks, write nothing."
        ),
        push: bool = typer.Option(False, "--push", help="Push the rollbacks (retrying on races)."),
        pull_request: bool = PULL_REQUEST_OPTION,
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Roll back and hold, in git, every release that Argo CD reports failed (Rollout
        aborted or Degraded, analysis failed) while git still names it. Safe to run on a
        schedule: a second run finds nothing to do."""
        how = DeliveryOptions(dry_run=dry_run, push=push, pull_request=pull_request)
        how.check()
        with options(ctx).session(dry_run) as (session, repo):
            from platformctl.reconcile import reconcile  # not on every command's start

            result = reconcile(session, repo, env or [], how)
        _report(result, output, dry_run)
