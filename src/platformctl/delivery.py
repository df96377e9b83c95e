"""A promotion, rollback or hold from start to finish: the steps of ``release`` in order.

plan (by the caller, under the lock) -> gates (the target stage's, then policy) -> build ->
verify -> publish (``release.execute``) -> wait (``--wait``: Argo CD Synced and Healthy at
the new revision) -> notify (the environment's webhook, on success and on failure).

Once something is published, every later failure still reports what was published (commit,
branch, pull request) and exits with the failing step's own code (``WaitFailed``: 4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from platformctl.argocd import ArgoCD, Waited, application_name, wait_until_synced
from platformctl.errors import (
    EnvironmentProblem,
    ExitCode,
    InputError,
    PlatformError,
    RefusedError,
)
from platformctl.gates.results import GateReport
from platformctl.gates.runner import GateOptions, evaluate
from platformctl.git import Git
from platformctl.model import Repo
from platformctl.notify import Event, send
from platformctl.release import (
    Outcome,
    Plan,
    Session,
    actor_of,
    check_digests,
    execute,
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


@dataclass(frozen=True)
class DeliveryOptions:
    dry_run: bool = False
    push: bool = False
    pull_request: bool = False
    wait: bool = False
    wait_timeout: float = DEFAULT_WAIT_SECONDS
    wait_interval: float = 2.0
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


def promote(session: Session | None, repo: Repo, plan: Plan, options: DeliveryOptions) -> Delivery:
    """Gates of the target, then build, verify and publish (unless refused or a dry run)."""
    options.check()
    assert plan.source is not None
    actor = actor_of(session.git if session else Git(repo.root))
    # --wait's endpoint and token, then where the commit goes: before any gate is asked
    argocd = _argocd_of_target(plan) if options.wait and not plan.empty else None
    try:
        if session is not None and not options.dry_run:
            preflight(session, repo, plan, publish=options.push or options.pull_request)
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
        preflight(session, repo, plan, publish=options.push or options.pull_request)
        return _publish_and_follow(session, repo, plan, options, actor, argocd)
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
    preflight(session, repo, plan, publish=push or pull_request)
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
        except PlatformError as error:
            delivery.refusal = WaitFailed(
                f"pushed {outcome.commit[:12]} to {outcome.branch}, then --wait failed: "
                f"{error.message}",
                hint=error.hint,
            )
    delivery.notification_problem = _notify(
        repo, plan, actor, delivery.refusal, outcome, delivery.waited
    )
    return delivery


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
