"""A promotion or rollback from start to finish: gates, commit, push, wait, notify.

``release`` makes the commit; this module decides whether to make it (the gates of the
target stage), follows it to the cluster (``--wait``: Argo CD Synced and Healthy at the new
revision) and tells the team (the environment's webhook), on success and on failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from platformctl.argocd import ArgoCD, Waited, application_name, wait_until_synced
from platformctl.errors import EnvironmentProblem, InputError, PlatformError, RefusedError
from platformctl.gates.results import GateReport
from platformctl.gates.runner import GateOptions, evaluate
from platformctl.git import Git
from platformctl.model import Repo
from platformctl.notify import Event, send
from platformctl.release import Outcome, Plan, actor_of, check_digests, execute

DEFAULT_WAIT_SECONDS = 600.0


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
        if self.wait and not self.push:
            raise InputError("--wait needs --push: Argo CD deploys what is pushed")
        if self.gates.offline and not self.dry_run:
            raise InputError(
                "--offline only goes with --dry-run", hint="a promotion asks every gate"
            )


@dataclass
class Delivery:
    outcome: Outcome
    # why the gates refused (the plan and its report are still shown); None if they did not
    refusal: PlatformError | None = None
    waited: list[Waited] = field(default_factory=list)
    notification_problem: str | None = None


def promote(repo: Repo, plan: Plan, options: DeliveryOptions) -> Delivery:
    """Evaluate the target's gates, then commit (unless refused or a dry run)."""
    options.check()
    assert plan.source is not None
    try:
        source = repo.environment(plan.source)
        changes = [(change.service, change.after) for change in plan.changes]
        report, images = evaluate(repo, plan.environment, source, changes, options.gates)
        plan.report = report
        plan.changes = [replace(c, after=images[c.service]) for c in plan.changes]
        refusal = report.error()
        if refusal is None:
            check_digests(plan)
        if refusal is not None or options.dry_run:
            delivery = Delivery(execute(repo, plan, dry_run=True), refusal=refusal)
            if refusal is not None and not options.dry_run:
                delivery.notification_problem = _notify(repo, plan, refusal)
            return delivery
        return _commit_and_follow(repo, plan, options)
    except (RefusedError, EnvironmentProblem) as error:  # a typo (exit 2) is not news
        if not options.dry_run and plan.changes:
            _notify(repo, plan, error)
        raise


def rollback(repo: Repo, plan: Plan, options: DeliveryOptions) -> Delivery:
    """No gates (a rollback must work when the registry or Prometheus does not); verify runs."""
    options.check()
    plan.report = GateReport(plan.environment.name)  # the policy gate's row, after verify
    if options.dry_run:
        return Delivery(execute(repo, plan, dry_run=True))
    try:
        return _commit_and_follow(repo, plan, options)
    except (RefusedError, EnvironmentProblem) as error:
        if plan.changes:
            _notify(repo, plan, error)
        raise


def _commit_and_follow(repo: Repo, plan: Plan, options: DeliveryOptions) -> Delivery:
    # --wait's endpoint and token are checked before anything is written or pushed
    argocd = _argocd_of_target(plan) if options.wait and plan.changes else None
    outcome = execute(repo, plan, push=options.push, pull_request=options.pull_request)
    delivery = Delivery(outcome)
    if not plan.changes:
        return delivery
    if argocd is not None and outcome.commit:
        delivery.waited = _wait(argocd, repo, plan, outcome.commit, options)
    delivery.notification_problem = _notify(repo, plan, None, outcome, delivery.waited)
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
    error: PlatformError | None,
    outcome: Outcome | None = None,
    waited: list[Waited] | None = None,
) -> str | None:
    if error is not None:
        detail = f"failed: {error}"
    else:
        assert outcome is not None
        where = "pushed" if outcome.pushed else "committed"
        if outcome.pull_request:
            where = f"pull request #{outcome.pull_request.number} {outcome.pull_request.url}"
        detail = f"{where} {(outcome.commit or '')[:12]}"
        for item in waited or []:
            detail += f"; {item.state.name} {item.state.describe()} after {item.seconds:.1f} s"
    event = Event(
        action=plan.action,
        environment=plan.environment,
        subject=plan.subject(),
        succeeded=error is None,
        detail=detail,
        actor=actor_of(Git(repo.root)),
        gates=plan.report.results if plan.report else [],
    )
    return send(event)
