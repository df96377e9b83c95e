"""``platform reconcile``: git catches up with the releases Argo Rollouts has already aborted.

A promotion merged as a pull request (or pushed without ``--wait``) whose canary then fails is
aborted in the cluster, but git still names it: Argo CD shows it as desired and the next sync
tries it again. For each environment this reads every service's Application from that
environment's Argo CD and, where Argo CD runs the commit that put the current release in
(first-parent ledger) and a Rollout or AnalysisRun of it is Degraded, writes the rollback and
the hold through ``delivery.rollback`` (``platform rollback``'s path), one commit per
environment.

Idempotent: after the rollback, git names a release a rollback put there, which this never
rolls back further (a second run does nothing and says so); until Argo CD has synced the
rollback, the Application does not run the commit that put the current release in; with
``--pull-request``, an unmerged rollback pull request of those releases is left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from platformctl.argocd import DEGRADED, ArgoCD, Failure, application_name
from platformctl.delivery import Delivery, DeliveryOptions, rollback
from platformctl.errors import InputError, PlatformError, one_line
from platformctl.git import Git
from platformctl.ledger import iter_history
from platformctl.model import Environment, Repo, load_repo
from platformctl.release import Plan, Session, actor_of, plan_rollback, pull_request_branch


@dataclass(frozen=True)
class Finding:
    """A service whose Application Argo CD reports failed on the release git names."""

    environment: str
    service: str
    application: str
    commit: str  # the commit that put the release in
    failure: Failure
    # None: rolled back (or, in a dry run, would be); else why it is left alone
    skipped: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "service": self.service,
            "application": self.application,
            "release_commit": self.commit,
            "failure": self.failure.describe(),
            "rolled_back": self.skipped is None,
            "skipped": self.skipped,
        }


@dataclass
class Reconciled:
    environments: list[str]
    findings: list[Finding] = field(default_factory=list)
    rollbacks: list[Delivery] = field(default_factory=list)
    # environments left out of a run over all of them: they declare no Argo CD endpoint
    unwatched: list[str] = field(default_factory=list)


def _environments(repo: Repo, names: Sequence[str]) -> tuple[list[Environment], list[str]]:
    """The environments to look at (named: each must declare its Argo CD), and those left out."""
    if names:
        chosen = [repo.environment(name) for name in dict.fromkeys(names)]
        for environment in chosen:
            if environment.argocd is None:
                raise InputError(
                    f"reconcile needs endpoints.argocd in {environment.name}/environment.yaml",
                    hint="add the endpoint, or leave that --env out",
                )
        return chosen, []
    watched = [e for e in repo.environments if e.argocd is not None]
    return watched, [e.name for e in repo.environments if e.argocd is None]


def findings_of(repo: Repo, environment: Environment) -> list[Finding]:
    """The services of ``environment`` whose Application runs the release git names (a sync
    operation applied it) and whose Rollout or AnalysisRun of it is Degraded. The Application
    Degraded alone (an ExternalSecret, a PVC) is no reason to roll the image back."""
    assert environment.argocd is not None
    argocd, git = ArgoCD(environment.argocd), Git(repo.root)
    found = []
    for release in repo.select([environment.name]):
        name = application_name(release.service, environment.name)
        state = argocd.application(name)
        current = next(iter_history(git, release), None)
        if current is None or not state.runs(git, current.commit):
            continue  # Argo CD does not run the release git names (yet)
        failure = argocd.release_failure(name, state)
        if failure is None:
            continue
        skipped = (
            f"its release was put there by the rollback {current.commit[:12]}: not rolled back "
            "further, look at it"
            if current.action == "rollback"
            else None
        )
        found.append(
            Finding(environment.name, release.service, name, current.commit, failure, skipped)
        )
    return found


def reconcile(
    session: Session | None, repo: Repo, names: Sequence[str], options: DeliveryOptions
) -> Reconciled:
    """Roll back and hold, per environment, the failed releases git still names."""
    options.check()
    environments, unwatched = _environments(repo, names)
    result = Reconciled([e.name for e in environments], unwatched=unwatched)
    for environment in environments:
        found = findings_of(repo, environment)
        result.findings += found
        failed = [f for f in found if f.skipped is None]
        if not failed:
            continue
        reason = one_line(
            "automatic rollback by reconcile: "
            + "; ".join(
                f"{f.application} {f.failure.kind} {f.failure.name} {DEGRADED}" for f in failed
            ),
            limit=240,
        )
        actor = _actor(session, repo)
        plan = plan_rollback(
            repo, [f.service for f in failed], env=environment.name, reason=reason, actor=actor
        )
        waiting = _waiting_pull_request(session, plan, failed) if options.pull_request else None
        if waiting is not None:
            result.findings = [
                replace(f, skipped=waiting) if f in failed else f for f in result.findings
            ]
            continue
        try:
            delivery = rollback(session, repo, plan, options)
        except PlatformError as error:
            error.message = (
                f"{_so_far(result)}rollback in {environment.name} failed: {error.message}"
            )
            again = f"run again: platform reconcile --env {environment.name}" + _mode(options)
            error.hint = f"{error.hint}; {again}" if error.hint else again
            raise
        result.rollbacks.append(delivery)
        if session is not None and delivery.outcome.commit:
            session = replace(session, pending=None, start=session.git.head())
            repo = load_repo(repo.root)
    return result


def _waiting_pull_request(session: Session | None, plan: Plan, failed: list[Finding]) -> str | None:
    """Why not to write the rollback again: the branch its pull request comes from is on the
    remote, holds the releases it rolls back, and is not merged yet (an earlier run opened it;
    until it is merged git still names the failed releases)."""
    if session is None:
        return None
    git = session.git
    remote, base = git.upstream(session.branch)
    branch = pull_request_branch(plan)
    listed = git.run("ls-remote", remote, f"refs/heads/{branch}").split()
    if not listed or not git.ok(
        "fetch", "--quiet", remote, f"refs/heads/{branch}", f"refs/heads/{base}"
    ):
        return None
    tip = listed[0]
    holds = all(git.ok("merge-base", "--is-ancestor", f.commit, tip) for f in failed)
    if not holds or git.ok("merge-base", "--is-ancestor", tip, f"{remote}/{base}"):
        return None
    return (
        f"the rollback pull request from {branch} ({tip[:12]}) is not merged yet: "
        "nothing more to do until it is"
    )


def _actor(session: Session | None, repo: Repo) -> str:
    return actor_of(session.git if session else Git(repo.root))


def _mode(options: DeliveryOptions) -> str:
    return " --push" if options.push else " --pull-request" if options.pull_request else ""


def _so_far(result: Reconciled) -> str:
    done = [
        f"{d.outcome.plan.environment.name} by {(d.outcome.commit or '')[:12]}"
        + (" (pushed)" if d.outcome.pushed else "")
        for d in result.rollbacks
    ]
    return f"rolled back {', '.join(done)}; " if done else ""
