"""``platform promote``, ``rollback``, ``hold`` and ``unhold``: commits, all or nothing."""

from __future__ import annotations

from dataclasses import replace

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.delivery import DEFAULT_WAIT_SECONDS, Delivery, DeliveryOptions, deliver_ungated
from platformctl.delivery import promote as deliver_promotion
from platformctl.delivery import rollback as deliver_rollback
from platformctl.errors import one_line
from platformctl.gates.config import GATE_ORDER
from platformctl.gates.runner import GateOptions
from platformctl.git import Git
from platformctl.output import OutputFormat, render_table, to_json
from platformctl.release import (
    Outcome,
    actor_of,
    plan_hold,
    plan_promotion,
    plan_rollback,
    plan_texts,
    unresolved,
)

SERVICES = typer.Argument(None, help="Services (or --all).", show_default=False)
# After the review document of `promote --dry-run -o markdown` (a job summary shows it): the
# document alone is what --pull-request makes the body.
DRY_RUN_REVIEW_NOTE = "\n*dry run, nothing written: the pull request's body would be the above.*\n"
PULL_REQUEST_OPTION = typer.Option(
    False, "--pull-request", help="Commit to a branch and open or update a GitHub pull request."
)
WAIT_OPTION = typer.Option(
    False, "--wait", help="After pushing, wait until Argo CD is Synced and Healthy at the commit."
)
WAIT_TIMEOUT_OPTION = typer.Option(
    DEFAULT_WAIT_SECONDS, "--wait-timeout", help="Seconds --wait waits before exit 1.", min=0
)
WAIT_INTERVAL_OPTION = typer.Option(
    2.0, "--wait-interval", help="Seconds between two looks at the Application.", min=0.01
)


def _report(delivery: Delivery, output: OutputFormat, dry_run: bool) -> None:
    outcome = delivery.outcome
    plan = outcome.plan
    if output is OutputFormat.json:
        pull = outcome.pull_request
        payload = {
            **plan.as_dict(),
            "commit": outcome.commit,
            "pushed": outcome.pushed,
            "branch": outcome.branch,
            "push_attempts": outcome.attempts,
            "recovered": outcome.recovered,
            "pull_request": pull
            and {
                "number": pull.number,
                "url": pull.url,
                "superseded": list(pull.superseded),
                "risk": pull.risk,
                "reviewers": list(pull.reviewers),
            },
            "dry_run": dry_run,
            "refused": delivery.refusal is not None,
            "error": str(delivery.refusal) if delivery.refusal is not None else None,
            "waited": [
                {"application": w.state.name, "state": w.state.describe(), "seconds": w.seconds}
                for w in delivery.waited
            ],
            "notification_problem": delivery.notification_problem,
            "rollback": delivery.rollback_dict(),
            "diff": outcome.diff,
        }
        typer.echo(to_json(payload))
        return
    _report_text(delivery, output, dry_run)
    if delivery.notification_problem:
        typer.echo(f"warning: {one_line(delivery.notification_problem)}", err=True)


def _report_text(delivery: Delivery, output: OutputFormat, dry_run: bool) -> None:
    outcome = delivery.outcome
    plan = outcome.plan
    report = plan.report
    if report and report.results:
        gate_rows = [[r.gate, r.service or "*", r.verdict, r.measured] for r in report.results]
        typer.echo(f"gates of {plan.environment.name}:")
        typer.echo(render_table(output, ["gate", "service", "result", "measured"], gate_rows))
        for gate, reason in report.overrides.items():
            typer.echo(f"overridden: {gate} ({reason})")
        typer.echo("")
    if delivery.refusal is not None and not dry_run and not outcome.commit:
        return
    for service in plan.skipped_held:
        hold = plan.environment.holds.get(service) or {}
        typer.echo(f"skipped {service}: held in {plan.environment.name} ({hold.get('reason')})")
    if plan.empty:
        _report_nothing(outcome)
        return
    unknown = unresolved(plan)
    rows = [
        [
            c.service,
            c.before.tag if c.before else "(no image)",
            c.after.tag,
            "unknown (offline)" if c.service in unknown else c.after.short_digest,
        ]
        for c in plan.changes
    ]
    if rows:
        typer.echo(render_table(output, ["service", "from", "to", "digest"], rows))
    for note in plan.notes():
        typer.echo(note)
    if dry_run:
        typer.echo(f"\ndry run, nothing written. {plan.subject()}\n")
        typer.echo(outcome.diff, nl=False)
        return
    _report_published(delivery)


def _report_nothing(outcome: Outcome) -> None:
    plan = outcome.plan
    if outcome.pushed and outcome.commit:
        typer.echo(
            f"pushed {outcome.commit[:12]} to {outcome.branch}: the commit an interrupted run "
            f"left unpushed ({', '.join(plan.unchanged)} already as planned)"
        )
        return
    if outcome.recovered:
        typer.echo(
            f"{', '.join(plan.unchanged) or 'nothing'} already as planned in "
            f"{plan.environment.name} by {outcome.recovered[:12]}, which an interrupted run "
            "committed and did not push: run this command again with --push"
        )
        return
    typer.echo(
        f"nothing to {plan.action}: {', '.join(plan.unchanged) or 'no services'} "
        f"already as planned in {plan.environment.name}"
    )


def _report_published(delivery: Delivery) -> None:
    outcome = delivery.outcome
    plan = outcome.plan
    if outcome.pull_request:
        pull = outcome.pull_request
        verb = "opened" if pull.created else "updated"
        typer.echo(f"\n{verb} pull request #{pull.number}: {pull.url} (branch {outcome.branch})")
        for number in pull.superseded:
            typer.echo(f"closed superseded pull request #{number}")
        if pull.risk:
            asked = f", review requested from {', '.join(pull.reviewers)}" if pull.reviewers else ""
            typer.echo(f"change risk: {pull.risk}{asked}")
        return
    where = f" and pushed to {outcome.branch}" if outcome.pushed else ""
    typer.echo(f"\ncommitted {outcome.commit and outcome.commit[:12]}{where}: {plan.subject()}")
    if outcome.recovered and outcome.pushed:
        typer.echo(f"also pushed {outcome.recovered[:12]}, left unpushed by an interrupted run")
    for waited in delivery.waited:
        typer.echo(
            f"{waited.state.name}: {waited.state.describe()} after {waited.seconds:.2f} s "
            f"({waited.polls} polls)"
        )
    for line in delivery.rollback_lines():
        typer.echo(line)


def _gate_names(overrides: list[str] | None) -> list[str]:
    """``--override a,b --override c`` as ``[a, b, c]`` (each checked by the gate runner)."""
    return [name.strip() for value in overrides or [] for name in value.split(",")]


def _delivery(
    dry_run: bool, push: bool, pull_request: bool, wait: bool, timeout: float, interval: float
) -> DeliveryOptions:
    return DeliveryOptions(
        dry_run=dry_run,
        push=push,
        pull_request=pull_request,
        wait=wait,
        wait_timeout=timeout,
        wait_interval=interval,
    )


def report_delivery(delivery: Delivery, output: OutputFormat, dry_run: bool) -> None:
    """Print what a delivery did (text or JSON), then raise its refusal, if any."""
    _report(delivery, output, dry_run)
    if delivery.refusal is not None:
        delivery.refusal.in_json_report = output is OutputFormat.json
        raise delivery.refusal


def register(app: typer.Typer) -> None:
    @app.command()
    def promote(
        ctx: typer.Context,
        services: list[str] | None = SERVICES,
        all_services: bool = typer.Option(False, "--all", help="Every service, as one unit."),
        to: str = typer.Option(..., "--to", help="The environment to promote into."),
        source: str | None = typer.Option(None, "--from", help="Default: the stage before."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the change, write nothing."),
        push: bool = typer.Option(False, "--push", help="Push the commit (retrying on races)."),
        pull_request: bool = PULL_REQUEST_OPTION,
        force: bool = typer.Option(False, "--force", help="Skip or reverse a stage."),
        skip_held: bool = typer.Option(
            False, "--skip-held", help="Leave out services held in --to instead of refusing."
        ),
        override: list[str] | None = typer.Option(
            None,
            "--override",
            help=f"Do not ask these gates: {', '.join(GATE_ORDER)} (comma-separated or repeated; "
            "needs --reason). The policy gate cannot be overridden.",
            show_default=False,
        ),
        reason: str | None = typer.Option(None, "--reason", help="Recorded in the commit."),
        offline: bool = typer.Option(
            False,
            "--offline",
            help="With --dry-run: report network gates as skipped (a digest the registry gate "
            "would resolve is shown as unknown).",
        ),
        wait: bool = WAIT_OPTION,
        wait_timeout: float = WAIT_TIMEOUT_OPTION,
        wait_interval: float = WAIT_INTERVAL_OPTION,
        no_auto_rollback: bool = typer.Option(
            False,
            "--no-auto-rollback",
            help="With --wait: when Argo CD reports the release failed (Rollout aborted or "
            "Degraded, analysis failed), exit 4 instead of pushing its rollback and a hold.",
        ),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Copy the image of services from the stage before (or --from) into --to, if the
        gates of --to pass."""
        delivery_options = _delivery(dry_run, push, pull_request, wait, wait_timeout, wait_interval)
        gates = GateOptions(overrides=_gate_names(override), reason=reason, offline=offline)
        delivery_options = replace(
            delivery_options, gates=gates, auto_rollback=not no_auto_rollback
        )
        delivery_options.check()
        with options(ctx).session(dry_run) as (session, repo):
            plan = plan_promotion(
                repo,
                services or [],
                all_services=all_services,
                to=to,
                source=source,
                force=force,
                reason=reason,
                skip_held=skip_held,
                overrides=gates.overrides,
            )
            delivery = deliver_promotion(session, repo, plan, delivery_options)
            planned = delivery.outcome.plan
            if dry_run and output is OutputFormat.markdown and not planned.empty:
                # the review document, exactly as --pull-request makes it the body
                from platformctl.prbody import review  # only here: renders and verifies

                typer.echo(
                    review(repo, planned, plan_texts(repo.root, planned)).markdown(), nl=False
                )
                typer.echo(DRY_RUN_REVIEW_NOTE, nl=False)
                if delivery.refusal is not None:
                    raise delivery.refusal
                return
        report_delivery(delivery, output, dry_run)

    @app.command()
    def rollback(
        ctx: typer.Context,
        services: list[str] | None = SERVICES,
        all_services: bool = typer.Option(False, "--all", help="Every service in --env."),
        env: str = typer.Option(..., "--env", "-e", help="The environment to roll back."),
        to: str | None = typer.Option(None, "--to", help="TAG, DIGEST or COMMIT from history."),
        release_set: str | None = typer.Option(
            None,
            "--set",
            help="STAGE@COMMIT: put back, in one commit, every image this release set's "
            "promotion put into --env (no SERVICE, --all or --to with it).",
        ),
        reason: str | None = typer.Option(None, "--reason", help="Recorded in the commit."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the change, write nothing."),
        push: bool = typer.Option(False, "--push", help="Push the commit (retrying on races)."),
        pull_request: bool = PULL_REQUEST_OPTION,
        wait: bool = WAIT_OPTION,
        wait_timeout: float = WAIT_TIMEOUT_OPTION,
        wait_interval: float = WAIT_INTERVAL_OPTION,
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Restore the last good release and hold the service in that environment."""
        delivery_options = _delivery(dry_run, push, pull_request, wait, wait_timeout, wait_interval)
        delivery_options.check()
        with options(ctx).session(dry_run) as (session, repo):
            actor = actor_of(session.git if session else Git(repo.root))
            plan = plan_rollback(
                repo,
                services or [],
                all_services=all_services,
                env=env,
                to=to,
                reason=reason,
                actor=actor,
                release_set=release_set,
            )
            delivery = deliver_rollback(session, repo, plan, delivery_options)
        report_delivery(delivery, output, dry_run)

    @app.command()
    def hold(
        ctx: typer.Context,
        service: str = typer.Argument(..., help="The service to hold."),
        env: str = typer.Option(..., "--env", "-e", help="The environment it is held in."),
        reason: str = typer.Option(..., "--reason", help="Why promotions must wait."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the change, write nothing."),
        push: bool = typer.Option(False, "--push", help="Push the commit (re-planned on races)."),
        pull_request: bool = PULL_REQUEST_OPTION,
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Refuse promotions of SERVICE into ENV until unheld (holding again with the same
        reason changes nothing)."""
        _hold(
            ctx, service, env, reason, _delivery(dry_run, push, pull_request, False, 0, 1), output
        )

    @app.command()
    def unhold(
        ctx: typer.Context,
        service: str = typer.Argument(..., help="The held service."),
        env: str = typer.Option(..., "--env", "-e", help="The environment it is held in."),
        reason: str | None = typer.Option(None, "--reason", help="Recorded in the commit."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the change, write nothing."),
        push: bool = typer.Option(False, "--push", help="Push the commit (re-planned on races)."),
        pull_request: bool = PULL_REQUEST_OPTION,
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Allow promotions of SERVICE into ENV again."""
        delivery_options = _delivery(dry_run, push, pull_request, False, 0, 1)
        _hold(ctx, service, env, reason, delivery_options, output, lift=True)


def _hold(
    ctx: typer.Context,
    service: str,
    env: str,
    reason: str | None,
    how: DeliveryOptions,
    output: OutputFormat,
    *,
    lift: bool = False,
) -> None:
    how.check()
    with options(ctx).session(how.dry_run) as (session, repo):
        actor = actor_of(session.git if session else Git(repo.root))
        plan = plan_hold(repo, service, env, reason=reason, lift=lift, actor=actor)
        outcome = deliver_ungated(session, repo, plan, push=how.push, pull_request=how.pull_request)
    if output is OutputFormat.json:
        pull = outcome.pull_request
        payload = {
            **plan.as_dict(),
            "changed": not plan.empty,
            "commit": outcome.commit,
            "pushed": outcome.pushed,
            "branch": outcome.branch,
            "pull_request": pull and {"number": pull.number, "url": pull.url},
            "dry_run": how.dry_run,
            "diff": outcome.diff,
        }
        typer.echo(to_json(payload))
        return
    verb = "unheld" if lift else "held"
    if how.dry_run and not plan.empty:
        typer.echo(f"dry run, nothing written. {plan.subject()}\n")
        typer.echo(outcome.diff, nl=False)
        return
    if outcome.commit is None:
        state = "not held" if lift else "already held with that reason"
        left = (
            f" by {outcome.recovered[:12]}, which an interrupted run committed and did not "
            "push: run this command again with --push"
            if outcome.recovered
            else ": nothing to do"
        )
        typer.echo(f"{service} {state} in {env}{left}")
        return
    if outcome.pull_request:
        pull = outcome.pull_request
        typer.echo(f"{verb} {service} in {env}: pull request #{pull.number}: {pull.url}")
        return
    where = f", pushed to {outcome.branch}" if outcome.pushed else ""
    typer.echo(f"{verb} {service} in {env} ({outcome.commit and outcome.commit[:12]}{where})")
