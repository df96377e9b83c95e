"""A promotion, rollback or hold from start to finish: the steps of ``release`` in order.

plan (by the caller, under the lock) -> gates (the target stage's, then policy) -> build ->
verify -> publish (``release.execute``) -> wait (``--wait``: Argo CD Synced and Healthy at
the new revision) -> notify (the environment's webhook, on success and on failure).

Once something is published, every later failure still reports what was published (commit,
branch, pull request) and exits with the failing step's own code (``WaitFailed``: 4).

A promotion whose release Argo CD reports failed while it waits (a Degraded Rollout or
AnalysisRun of it, or the Application Degraded, once a sync operation applied the pushed
commit) is rolled back by
``rollback`` below, the path ``platform rollback`` takes: the rollback and hold are pushed,
waited for, notified, and the promotion exits 1 (``RolledBack``) naming both commits.
``DeliveryOptions.auto_rollback`` off, the wait fails (4) and nothing more is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from platformctl.argocd import ArgoCD, ReleaseFailed, Waited, application_name, wait_until_synced
from platformctl.errors import (
    EnvironmentProblem,
    ExitCode,
    InputError,
    PlatformError,
    RefusedError,
    one_line,
)
from platformctl.gates.results import GateReport
from platformctl.gates.runner import GateOptions, evaluate
from platformctl.git import Git
from platformctl.model import Repo, load_repo
from platformctl.notify import Event, send
from platformctl.release import (
    Outcome,
    Plan,
    Session,
    actor_of,
    check_digests,
    execute,
    plan_rollback,
    plan_texts,
    policy_gate,
    preflight,
    set_soak,
    unified_diff,
)

DEFAULT_WAIT_SECONDS = 600.0


class WaitFailed(PlatformError):
    """The commit is pushed, but --wait did not see it Synced and Healthy (exit 4)."""

    exit_code = ExitCode.WAIT_FAILED


class RolledBack(RefusedError):
    """The promotion is pushed, Argo CD reported its release failed, and the rollback that
    undoes it is pushed and Healthy (exit 1: the promotion did not happen)."""


@dataclass(frozen=True)
class DeliveryOptions:
    dry_run: bool = False
    push: bool = False
    pull_request: bool = False
    wait: bool = False
    wait_timeout: float = DEFAULT_WAIT_SECONDS
    wait_interval: float = 2.0
    # promotions: roll back a release Argo CD reports failed while --wait follows it
    auto_rollback: bool = True
    gates: GateOptions = field(default_factory=GateOptions)

    def check(self) -> None:
        if self.wait and self.dry_run:
            raise InputError("--wait and --dry-run together: a dry run pushes nothing to wait for")
        if self.wait and self.pull_request:
            raise InputError(
                "--wait cannot follow a pull request", hint="wait after it is merged, or use --push"
            )
        if self.push and self.pull_request:
            raise InputError("--push or --pull-request, not both")
        if self.wait and not self.push:
            raise InputError("--wait needs --push: Argo CD deploys what is pushed")
        if not self.auto_rollback and not self.wait:
            raise InputError(
                "--no-auto-rollback only goes with --wait",
                hint="without --wait nothing watches the release, so nothing is rolled back",
            )
        if self.gates.offline and not self.dry_run:
            raise InputError(
                "--offline only goes with --dry-run", hint="a promotion asks every gate"
            )


@dataclass
class Delivery:
    outcome: Outcome
    # why the gates refused, or the step after publishing that failed (None: all went well)
    refusal: PlatformError | None = None
    waited: list[Waited] = field(default_factory=list)
    notification_problem: str | None = None
    # the automatic rollback of a promotion whose release failed (its own delivery)
    rollback: Delivery | None = None

    def rollback_dict(self) -> dict[str, Any] | None:
        """The automatic rollback for ``-o json`` (None: there was none)."""
        return delivery_dict(self.rollback) if self.rollback is not None else None

    def rollback_lines(self) -> list[str]:
        """The automatic rollback as the text report's last lines (none: there was none)."""
        if self.rollback is None:
            return []
        outcome = self.rollback.outcome
        lines = [
            f"rolled back automatically: committed {(outcome.commit or '')[:12]}"
            + (f" and pushed to {outcome.branch}" if outcome.pushed else "")
            + f": {outcome.plan.subject()} (held)"
        ]
        lines += [
            f"{w.state.name}: {w.state.describe()} after {w.seconds:.2f} s ({w.polls} polls)"
            for w in self.rollback.waited
        ]
        return lines


def delivery_dict(delivery: Delivery) -> dict[str, Any]:
    """A delivery's plan and what it published, for ``-o json``."""
    outcome = delivery.outcome
    pull = outcome.pull_request
    return {
        **outcome.plan.as_dict(),
        "commit": outcome.commit,
        "pushed": outcome.pushed,
        "branch": outcome.branch,
        "pull_request": pull and {"number": pull.number, "url": pull.url},
        "waited": [
            {"application": w.state.name, "state": w.state.describe(), "seconds": w.seconds}
            for w in delivery.waited
        ],
        "error": str(delivery.refusal) if delivery.refusal is not None else None,
        "diff": outcome.diff,
    }


def _preflight(session: Session, repo: Repo, plan: Plan, options: DeliveryOptions) -> None:
    """Where the commit goes (and a pull request's repository and token), before any gate."""
    publish = options.push or options.pull_request
    preflight(session, repo, plan, publish=publish, pull_request=options.pull_request)


def promote(session: Session | None, repo: Repo, plan: Plan, options: DeliveryOptions) -> Delivery:
    """Gates of the target, then build, verify and publish (unless refused or a dry run)."""
    options.check()
    assert plan.source is not None
    actor = actor_of(session.git if session else Git(repo.root))
    # --wait's endpoint and token, then where the commit goes: before any gate is asked
    argocd = _argocd_of_target(plan) if options.wait and not plan.empty else None
    try:
        if session is not None and not options.dry_run:
            _preflight(session, repo, plan, options)
        source = repo.environment(plan.source)
        changes = [(change.service, change.after) for change in plan.changes]
        gates = replace(options.gates, set_soak=set_soak(plan))
        report, images = evaluate(repo, plan.environment, source, changes, gates)
        plan = replace(
            plan,
            report=report,
            changes=tuple(replace(c, after=images[c.service]) for c in plan.changes),
        )
        refusal = report.error()
        if refusal is None:
            check_digests(plan)
        if refusal is not None or options.dry_run or session is None:
            delivery = Delivery(_dry(repo, plan), refusal=refusal)
            if refusal is not None and not options.dry_run:
                delivery.notification_problem = _notify(repo, plan, actor, refusal)
            return delivery
        return _publish_and_follow(session, repo, plan, options, actor, argocd)
    except (RefusedError, EnvironmentProblem) as error:  # a typo (exit 2) is not news
        if not options.dry_run and not plan.empty:
            _notify(repo, plan, actor, error)
        raise


def rollback(session: Session | None, repo: Repo, plan: Plan, options: DeliveryOptions) -> Delivery:
    """No gates (a rollback must work when the registry or Prometheus does not); policy runs."""
    options.check()
    plan = replace(plan, report=GateReport(plan.environment.name))  # policy's row, after verify
    if options.dry_run or session is None:
        return Delivery(_dry(repo, plan))
    argocd = _argocd_of_target(plan) if options.wait and not plan.empty else None
    actor = actor_of(session.git if session else Git(repo.root))
    try:
        _preflight(session, repo, plan, options)
        return _publish_and_follow(
            session, repo, plan, replace(options, auto_rollback=False), actor, argocd
        )
    except (RefusedError, EnvironmentProblem) as error:
        if not plan.empty:
            _notify(repo, plan, actor, error)
        raise


def deliver_ungated(
    session: Session | None,
    repo: Repo,
    plan: Plan,
    *,
    push: bool = False,
    pull_request: bool = False,
) -> Outcome:
    """The write path of a plan no stage gate judges (a hold, an unhold; a publish, whose
    registry checks were made while planning): the policy gate, build, verify, publish;
    without a session (a dry run) only the diff it would make."""
    if session is None:
        return _dry(repo, plan)
    preflight(session, repo, plan, publish=push or pull_request, pull_request=pull_request)
    texts = plan_texts(repo.root, plan)
    if not plan.empty:
        policy_gate(repo, plan, texts)
    return execute(
        session,
        repo,
        plan,
        actor=actor_of(session.git),
        push=push,
        pull_request=pull_request,
        texts=texts,
    )


def _dry(repo: Repo, plan: Plan) -> Outcome:
    return Outcome(plan, unified_diff(repo.root, plan_texts(repo.root, plan)))


def _publish_and_follow(
    session: Session,
    repo: Repo,
    plan: Plan,
    options: DeliveryOptions,
    actor: str,
    argocd: ArgoCD | None,
) -> Delivery:
    texts = plan_texts(repo.root, plan)
    if not plan.empty:
        policy_gate(repo, plan, texts)
    outcome = execute(
        session,
        repo,
        plan,
        actor=actor,
        push=options.push,
        pull_request=options.pull_request,
        texts=texts,
    )
    delivery = Delivery(outcome)
    if plan.empty:
        return delivery
    if argocd is not None and outcome.commit:
        try:
            delivery.waited = _wait(argocd, repo, plan, outcome.commit, options)
        except ReleaseFailed as failed:
            if options.auto_rollback and plan.action == "promote":
                _roll_back(session, repo, delivery, options, actor, failed)
            else:
                delivery.refusal = _wait_failed(outcome, failed)
                if plan.action == "promote":
                    delivery.refusal.hint = f"roll back with: {_rollback_command(plan, failed)}"
        except PlatformError as error:
            delivery.refusal = _wait_failed(outcome, error)
    delivery.notification_problem = _notify(
        repo, plan, actor, delivery.refusal, outcome, delivery.waited
    )
    return delivery


def _wait_failed(outcome: Outcome, error: PlatformError) -> WaitFailed:
    return WaitFailed(
        f"pushed {(outcome.commit or '')[:12]} to {outcome.branch}, then --wait failed: "
        f"{error.message}",
        hint=error.hint,
    )


def _rollback_reason(failed: ReleaseFailed) -> str:
    """The rollback's commit reason and hold: what failed where, and Argo CD's words."""
    return one_line(f"automatic rollback: {failed.message}", limit=240)


def _rollback_command(plan: Plan, failed: ReleaseFailed) -> str:
    reason = one_line(failed.short, limit=120).replace("'", "")
    return (
        f"platform rollback {' '.join(plan.services)} --env {plan.environment.name} "
        f"--push --wait --reason '{reason}'"
    )


def _roll_back(
    session: Session,
    repo: Repo,
    delivery: Delivery,
    options: DeliveryOptions,
    actor: str,
    failed: ReleaseFailed,
) -> None:
    """The promotion of ``delivery`` is pushed and Argo CD says its release failed: roll back
    every service it changed (one commit moved them, one commit restores them) through
    ``rollback``, under the same lock, on the commit just pushed; wait for it to be Healthy.
    Sets ``delivery.refusal`` to what the command exits with, naming both commits."""
    outcome, plan = delivery.outcome, delivery.outcome.plan
    promoted = f"pushed {(outcome.commit or '')[:12]} to {outcome.branch}, then {failed.short}"
    try:
        current = load_repo(repo.root)  # the promotion is in the tree now
        undo = plan_rollback(
            current,
            plan.services,
            env=plan.environment.name,
            reason=_rollback_reason(failed),
            actor=actor,
            undoes_set=plan.release_set.id if plan.release_set else None,
        )
        onward = replace(session, pending=None, start=session.git.head())
        follow = replace(options, push=True, pull_request=False, wait=True, auto_rollback=False)
        delivery.rollback = rollback(onward, current, undo, follow)
    except PlatformError as error:
        # the promotion stays live: say what this run left and what to run by hand
        error.message = f"{promoted}; the automatic rollback failed: {error.message}"
        left = error.hint or "nothing of the rollback was written"
        error.hint = f"{left}; roll back by hand: {_rollback_command(plan, failed)}"
        delivery.refusal = error
        return
    refusal = delivery.rollback.refusal
    if refusal is not None:  # pushed, but not seen Healthy
        refusal.message = f"{promoted}; the automatic rollback {refusal.message}"
        delivery.refusal = refusal
        return
    done = delivery.rollback.outcome
    held = undo.services[0] if len(undo.services) == 1 else "SERVICE"
    delivery.refusal = RolledBack(
        f"{promoted}; rolled back by {(done.commit or '')[:12]} pushed to {done.branch} "
        f"({', '.join(undo.services)} held in {plan.environment.name})",
        hint=f"when fixed, lift the hold: platform unhold {held} --env {plan.environment.name}",
    )


def _argocd_of_target(plan: Plan) -> ArgoCD:
    target = plan.environment
    if target.argocd is None:
        raise InputError(
            f"--wait needs endpoints.argocd in {target.name}/environment.yaml",
            hint="add the endpoint, or drop --wait",
        )
    return ArgoCD(target.argocd)


def _wait(
    argocd: ArgoCD, repo: Repo, plan: Plan, commit: str, options: DeliveryOptions
) -> list[Waited]:
    deadline = time.monotonic() + options.wait_timeout
    return [
        wait_until_synced(
            argocd,
            application_name(change.service, plan.environment.name),
            git=Git(repo.root),
            commit=commit,
            timeout=max(0.0, deadline - time.monotonic()),
            interval=options.wait_interval,
        )
        for change in plan.changes
    ]


def _notify(
    repo: Repo,
    plan: Plan,
    actor: str,
    error: PlatformError | None,
    outcome: Outcome | None = None,
    waited: list[Waited] | None = None,
) -> str | None:
    detail = ""
    if outcome is not None:
        where = "pushed" if outcome.pushed else "committed"
        if outcome.pull_request:
            where = f"pull request #{outcome.pull_request.number} {outcome.pull_request.url}"
        detail = f"{where} {(outcome.commit or '')[:12]}"
        for item in waited or []:
            detail += f"; {item.state.name} {item.state.describe()} after {item.seconds:.1f} s"
    if error is not None:
        detail = f"{detail}; " if detail else ""
        detail += f"failed: {error}"
    event = Event(
        action=plan.action,
        environment=plan.environment,
        subject=plan.subject(),
        succeeded=error is None,
        detail=detail,
        actor=actor,
        gates=plan.report.results if plan.report else [],
    )
    return send(event)
