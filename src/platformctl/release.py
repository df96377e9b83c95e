"""Promotions, rollbacks and holds as all-or-nothing git commits.

Every write is: lock the clone, refuse a dirty tree or a detached HEAD, edit, load and verify
the affected releases of the target environment, commit (and push, retrying on a moved
remote). Any failure, a crash or Ctrl-C included, resets the tree, index and branch to where
they were.
"""

from __future__ import annotations

import datetime as dt
import difflib
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from platformctl.errors import InputError, RefusedError
from platformctl.gates.results import GateReport, GateResult, Verdict
from platformctl.git import Git, GitError
from platformctl.github import GitHub, PullRequest, repository_slug
from platformctl.imagefile import image_of, set_image
from platformctl.ledger import iter_history, last_good
from platformctl.model import Environment, Image, Repo, load_repo
from platformctl.verify import verify

# Enough for a handful of writers racing on one remote; each retry rebases and re-verifies.
PUSH_ATTEMPTS = 12
# How git says that another writer got there first (as opposed to a hook or permissions).
_RACE_MARKERS = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref")


@dataclass(frozen=True)
class ImageChange:
    service: str
    before: Image
    after: Image
    path: Path


@dataclass
class Plan:
    """What a promotion or rollback will change, decided before anything is written."""

    action: str  # promote | rollback
    environment: Environment
    changes: list[ImageChange]
    source: str | None = None
    reason: str | None = None
    unchanged: list[str] = field(default_factory=list)
    report: GateReport | None = None

    @property
    def holds(self) -> bool:
        """A rollback holds what it rolled back, so the bad release is not promoted again."""
        return self.action == "rollback"

    def subject(self) -> str:
        services = ",".join(change.service for change in self.changes)
        if self.action == "promote":
            version = self.changes[0].after.tag if len(self.changes) == 1 else None
            arrow = f"{self.source} → {self.environment.name}"
            return f"promote({services}): {arrow}" + (f" {version}" if version else "")
        target = self.changes[0].after.tag if len(self.changes) == 1 else None
        return f"rollback({services}): {self.environment.name}" + (
            f" to {target}" if target else ""
        )

    def message(self, actor: str) -> str:
        lines = [self.subject(), ""]
        if self.reason:
            lines += [self.reason, ""]
        lines.append(f"Platform-Action: {self.action}")
        lines.append(f"Platform-Environment: {self.environment.name}")
        for change in self.changes:
            lines.append(f"Platform-Service: {change.service}")
            lines.append(f"Platform-Image: {change.after.reference}")
        if self.source:
            lines.append(f"Platform-From: {self.source}")
        if self.reason:
            lines.append(f"Platform-Reason: {' '.join(self.reason.split())}")
        if self.report:
            lines += self.report.trailers()
        lines.append(f"Platform-Actor: {actor}")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "environment": self.environment.name,
            "from_environment": self.source,
            "reason": self.reason,
            "changes": [
                {
                    "service": c.service,
                    "before": c.before.reference,
                    "after": c.after.reference,
                    "tag": c.after.tag,
                    "digest": c.after.digest,
                }
                for c in self.changes
            ],
            "unchanged": self.unchanged,
            "gates": [result.as_dict() for result in self.report.results] if self.report else [],
            "overrides": self.report.overrides if self.report else {},
        }


def _services(repo: Repo, services: Iterable[str], all_services: bool) -> list[str]:
    names = list(dict.fromkeys(services))
    if all_services and names:
        raise InputError("give services or --all, not both")
    if all_services:
        return list(repo.services)
    if not names:
        raise InputError("name at least one service, or --all")
    return [repo.service(name) for name in names]


def plan_promotion(
    repo: Repo,
    services: Iterable[str],
    *,
    all_services: bool = False,
    to: str,
    source: str | None = None,
    force: bool = False,
    reason: str | None = None,
) -> Plan:
    target = repo.environment(to)
    previous = repo.previous(target.name)
    origin = repo.environment(source) if source else previous
    if origin is None:
        raise InputError(f"'{target.name}' is the first stage: there is nothing to promote from")
    if origin.name == target.name:
        raise InputError("--from and --to name the same environment")
    if (previous is None or origin.name != previous.name) and not (force and reason):
        raise RefusedError(
            f"{origin.name} → {target.name} skips or reverses the pipeline",
            hint="promote one stage at a time, or add --force --reason TEXT",
        )
    if force and not reason:
        raise InputError("--force needs --reason TEXT (it is recorded in the commit)")
    plan = Plan("promote", target, [], source=origin.name, reason=reason)
    for service in _services(repo, services, all_services):
        if (service, origin.name) not in repo.releases:
            if all_services:
                continue
            repo.release(service, origin.name)  # raises: not deployed there
        incoming = repo.releases[(service, origin.name)].image
        current = repo.release(service, target.name)
        hold = target.holds.get(service)
        if hold:
            raise RefusedError(
                f"{service} is held in {target.name}: {hold.get('reason', 'after a rollback')}",
                hint=f"lift it with: platform unhold {service} --env {target.name}",
            )
        if incoming == current.image:
            plan.unchanged.append(service)
            continue
        plan.changes.append(ImageChange(service, current.image, incoming, current.values_file))
    return plan


def check_digests(plan: Plan) -> None:
    """After the gates (the registry gate fills digests in): production never runs a tag."""
    if not plan.environment.policy.require_digest:
        return
    for change in plan.changes:
        if not change.after.digest:
            raise RefusedError(
                f"{change.service} in {plan.source} has no digest and "
                f"{plan.environment.name} requires one",
                hint=f"add the registry gate to {plan.environment.name} in pipeline.yaml (it "
                f"resolves the tag), or pin the digest in {plan.source}",
            )


def plan_rollback(
    repo: Repo,
    services: Iterable[str],
    *,
    all_services: bool = False,
    env: str,
    to: str | None = None,
    reason: str | None = None,
) -> Plan:
    environment = repo.environment(env)
    git = Git(repo.root)
    plan = Plan("rollback", environment, [], reason=reason)
    for service in _services(repo, services, all_services):
        release = repo.release(service, environment.name)
        current = release.image
        if to:
            wanted = to.lower()
            match = next(
                (
                    e
                    for e in iter_history(git, release)
                    if e.image.tag == to
                    or (e.image.digest and e.image.digest in (wanted, f"sha256:{wanted}"))
                    or (len(wanted) >= 7 and e.commit.startswith(wanted))
                ),
                None,
            )
            if match is None:
                raise InputError(
                    f"'{to}' is not a release of {service} in {environment.name}",
                    hint=f"see: platform history {service} --env {environment.name}",
                )
            chosen = match.image
        else:
            good = last_good(iter_history(git, release), current)
            if good is None:
                raise RefusedError(
                    f"{service} in {environment.name} has no earlier good release to roll back to",
                    hint="name one with --to TAG|DIGEST|COMMIT",
                )
            chosen = good
        if chosen == current:
            plan.unchanged.append(service)
            continue
        plan.changes.append(ImageChange(service, current, chosen, release.values_file))
    return plan


def _hold_text(environment: Environment, holds: dict[str, dict[str, str] | None]) -> str:
    """environment.yaml with holds added (dict) or lifted (None), comments kept."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 4096
    data = yaml.load(environment.settings_file.read_text())
    current = data.get("holds") or {}
    for service, hold in holds.items():
        if hold is None:
            current.pop(service, None)
        else:
            current[service] = hold
    if current:
        data["holds"] = current
    else:
        data.pop("holds", None)
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


@dataclass
class Outcome:
    plan: Plan
    diff: str
    commit: str | None = None
    pushed: bool = False
    attempts: int = 0
    pull_request: PullRequest | None = None


def _new_texts(plan: Plan, actor: str) -> dict[Path, str]:
    texts = {change.path: set_image(change.path, change.after) for change in plan.changes}
    if plan.holds and plan.changes:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        holds: dict[str, dict[str, str] | None] = {
            c.service: {
                "reason": plan.reason or f"rolled back from {c.before.tag or c.before.digest}",
                "since": now,
                "by": actor,
            }
            for c in plan.changes
        }
        texts[plan.environment.settings_file] = _hold_text(plan.environment, holds)
    return texts


def unified_diff(root: Path, texts: dict[Path, str]) -> str:
    chunks: list[str] = []
    for path, text in texts.items():
        name = str(path.relative_to(root))
        chunks += difflib.unified_diff(
            path.read_text().splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"a/{name}",
            f"b/{name}",
        )
    return "".join(chunks)


def actor_of(git: Git) -> str:
    name = git.run("config", "user.name", check=False).strip() or "unknown"
    email = git.run("config", "user.email", check=False).strip()
    return f"{name} <{email}>" if email else name


def _verify_target(root: Path, plan: Plan, repo: Repo | None = None) -> int:
    """The policy gate: verify the changed releases as they will be committed.

    ``repo`` is the model the plan was made from: then only the edited values files are read
    again. That is sound on this clone: the lock is held, the tree is clean, and the images
    the plan replaces were checked to be unchanged; other writers through this tool change
    only other files' images and holds, which this release's verdict does not read. After a
    rebase onto a moved remote, where anything may have changed, the whole model is reloaded.
    """
    edited = [change.path for change in plan.changes]
    repo = repo.with_release_files(edited) if repo is not None else load_repo(root)
    services = [c.service for c in plan.changes]
    report = verify(repo, [plan.environment.name], services)
    if not report.ok:
        first = report.failing[0]
        raise RefusedError(
            f"policy refused the result: {len(report.failing)} violation(s), first: "
            f"{first.target} {first.check} {first.resource}: {first.message}",
            hint=f"see: platform verify --env {plan.environment.name}",
        )
    return len(services)


def _check_expected(git: Git, ref: str, plan: Plan) -> None:
    """The images a plan replaces must still be the ones at ``ref`` (HEAD after waiting for
    the lock, the remote's branch after a rejected push): else someone else changed them."""
    for change in plan.changes:
        text = git.show(ref, str(change.path.relative_to(git.root)))
        if text is None or image_of(text) != change.before:
            raise RefusedError(
                f"conflict: {change.service} in {plan.environment.name} was changed since "
                f"this {plan.action} was planned",
                hint="nothing was written or pushed; pull and run the command again",
            )


def _push(git: Git, branch: str, plan: Plan) -> int:
    remote, remote_branch = git.upstream(branch)
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        pushed, complaint = git.attempt(
            "push", "--quiet", remote, f"HEAD:refs/heads/{remote_branch}"
        )
        if pushed:
            return attempt
        if not any(marker in complaint for marker in _RACE_MARKERS):
            # not a race: a hook, permissions or the network said no; retrying will not help
            reason = next((ln for ln in complaint.splitlines() if "rejected" in ln), complaint)
            raise GitError(
                f"push to {remote}/{remote_branch} refused: {reason.strip() or 'no reason given'}",
                hint="nothing was pushed and the local commit was undone",
            )
        git.run("fetch", "--quiet", remote, remote_branch)
        _check_expected(git, "FETCH_HEAD", plan)
        if not git.ok("rebase", "--quiet", "FETCH_HEAD"):
            git.ok("rebase", "--abort")
            raise RefusedError(
                f"conflict while rebasing onto {remote}/{remote_branch}",
                hint="nothing was pushed; pull and run the command again",
            )
        _verify_target(git.root, plan)
        time.sleep(random.uniform(0.05, 0.25) * attempt)
    raise GitError(
        f"push to {remote}/{remote_branch} rejected {PUSH_ATTEMPTS} times",
        hint="the remote is busy or refuses this branch; nothing was pushed",
    )


def pull_request_branch(plan: Plan) -> str:
    services = "+".join(sorted(change.service for change in plan.changes))
    return f"platform/{plan.action}/{plan.environment.name}/{services}"


def execute(
    repo: Repo,
    plan: Plan,
    *,
    dry_run: bool = False,
    push: bool = False,
    pull_request: bool = False,
) -> Outcome:
    """Apply a plan as one commit (all services or none); a dry run only computes the diff.

    With ``pull_request`` the commit goes to a branch of its own and a pull request; the local
    branch is left as it was.
    """
    git = Git(repo.root)
    actor = actor_of(git)
    if dry_run or not plan.changes:
        return Outcome(plan, unified_diff(repo.root, _new_texts(plan, actor)))
    with _transaction(git) as branch:
        # Another writer on this clone may have committed while we waited for the lock: the
        # plan must still hold, and the texts are computed from the files as they are now.
        _check_expected(git, "HEAD", plan)
        texts = _new_texts(plan, actor)
        outcome = Outcome(plan, unified_diff(repo.root, texts))
        github = None
        if pull_request:
            remote, base = git.upstream(branch)
            github = GitHub(repository_slug(git.run("remote", "get-url", remote)))
        original = git.head()
        _commit(git, texts, lambda: plan.message(actor), lambda: _policy_gate(repo, plan))
        outcome.commit = git.head()
        if github is not None:
            target = pull_request_branch(plan)
            git.run("push", "--quiet", "--force", remote, f"HEAD:refs/heads/{target}")
            outcome.pull_request = github.open_or_update(
                branch=target,
                base=base,
                title=plan.subject(),
                body=plan.message(actor),
                supersedes_prefix=f"platform/{plan.action}/{plan.environment.name}/",
                services={change.service for change in plan.changes},
            )
            git.run("reset", "--quiet", "--hard", original)
        elif push:
            outcome.attempts = _push(git, branch, plan)
            outcome.pushed = True
            outcome.commit = git.head()
    return outcome


@contextmanager
def _transaction(git: Git) -> Iterator[str]:
    """Locked, on a clean branch; any exception resets tree, index and branch to the start."""
    with git.lock():
        branch = git.branch()
        git.require_clean()
        original = git.head()
        try:
            yield branch
        except BaseException:
            git.ok("rebase", "--abort")
            git.run("reset", "--quiet", "--hard", original)
            raise


def _policy_gate(repo: Repo, plan: Plan) -> None:
    checked = _verify_target(repo.root, plan, repo)
    if plan.report is not None:
        measured = f"platform verify: {checked} release(s) of {plan.environment.name} clean"
        plan.report.results.append(GateResult("policy", None, Verdict.passed, measured))


def _commit(
    git: Git, texts: dict[Path, str], message: Callable[[], str], check: Callable[[], object]
) -> None:
    """Write, check, then commit with the message as it is after the check."""
    for path, text in texts.items():
        path.write_text(text)
    check()
    git.run("add", "--", *(str(path) for path in texts))
    git.run("commit", "--quiet", "-F", "-", input_text=message())


def set_hold(repo: Repo, service: str, env: str, *, reason: str | None, lift: bool) -> str | None:
    """Hold or unhold a service in an environment, as its own commit; returns the commit."""
    environment = repo.environment(env)
    repo.release(service, environment.name)
    if lift and service not in environment.holds:
        return None
    git = Git(repo.root)
    actor = actor_of(git)
    hold = (
        None
        if lift
        else {
            "reason": reason or "held by hand",
            "by": actor,
            "since": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        }
    )
    text = _hold_text(environment, {service: hold})
    verb = "unhold" if lift else "hold"
    message = (
        f"{verb}({service}): {environment.name}\n\n"
        f"Platform-Action: {verb}\nPlatform-Service: {service}\n"
        f"Platform-Environment: {environment.name}\n"
        + (f"Platform-Reason: {reason}\n" if reason else "")
        + f"Platform-Actor: {actor}\n"
    )
    with _transaction(git):
        _commit(
            git, {environment.settings_file: text}, lambda: message, lambda: load_repo(repo.root)
        )
    return git.head()
