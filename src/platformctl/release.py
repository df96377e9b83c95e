"""Promotions, rollbacks and holds: explicit steps over a frozen plan, each one git commit.

The steps, and what holds at each boundary (the names are ``fault`` points for tests):

1. plan     under the clone's lock, from the model as it is at HEAD (clean tree, a branch,
            no index lock, anything an interrupted run left finished first). Nothing written.
2. gates    ``delivery``: freeze, soak, registry, signature, argocd, slo, then ``policy`` on
            the changed releases as they will be committed. Nothing written.
3. build    the commit object from the planned texts (``built``): nothing visible changes.
4. verify   the commit changes exactly the planned files, to the planned images.
5. publish  locally: journal, compare-and-swap the branch, write the tree (``transaction``:
            ``journaled``, ``moved``, ``synced``); by push: then push, and on a moved remote
            re-plan every unpushed commit's intent on the remote's tip (``pushed``); by pull
            request: push a branch of its own and open the pull request, the local branch
            untouched, the branch removed again if GitHub refuses.
6. wait     ``delivery``: Argo CD Synced and Healthy at the commit.
7. notify   ``delivery``: the environment's webhook (a failure there is a warning).
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import random
import tarfile
import tempfile
import time
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any

from platformctl.cachefile import CACHE_DIR
from platformctl.errors import EnvironmentProblem, InputError, PlatformError, RefusedError, redact
from platformctl.gates.calendar import check_freeze, check_soak
from platformctl.gates.results import GateReport, GateResult, Verdict
from platformctl.git import Git, GitError, fault
from platformctl.github import GitHub, PullRequest, repository_slug
from platformctl.imagefile import image_of, set_image
from platformctl.ledger import SET_TRAILER, TRAILERS, iter_history, last_good, parse_trailers
from platformctl.ledger import first_trailer as _first
from platformctl.model import (
    CHARTS_DIR,
    ENVIRONMENTS_DIR,
    Environment,
    Image,
    Repo,
    check_settings_text,
    load_repo,
)
from platformctl.release_sets import (
    UNDONE_SET_TRAILER,
    ReleaseSet,
    images_set_put,
    soak_evidence,
    soaked_set,
)
from platformctl.scaffold import EgressEdit, callers_egress, with_egress
from platformctl.status import same_artifact
from platformctl.transaction import Journal, clear_journal, move, recover, write_journal
from platformctl.verify import verify
from platformctl.yamlio import parse_yaml

# Enough for a handful of writers racing on one remote; each retry re-plans on the new tip.
PUSH_ATTEMPTS = 12
# How git says that another writer got there first (as opposed to a hook or permissions).
_RACE_MARKERS = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref")
_FIELD = "\x1f"


def one_line_text(option: str, text: str | None) -> str | None:
    """User text bound for a commit: one line of printable text, not blank (else exit 2)."""
    if text is None:
        return None
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\t" for c in text):
        raise InputError(
            f"{option} must be one line of text (it contains a newline or control character)",
            hint="it is recorded in a commit trailer: say it in one line",
        )
    if not text.strip():
        raise InputError(f"{option} is empty", hint=f"say why in {option} TEXT")
    return redact(text.strip())


@dataclass(frozen=True)
class ImageChange:
    service: str
    before: Image | None  # None: the stage has no image line for the service yet
    after: Image
    path: Path


@dataclass(frozen=True)
class Plan:
    """What a write will change, decided under the lock before anything is written."""

    action: str  # promote | rollback | hold | unhold | publish
    environment: Environment
    changes: tuple[ImageChange, ...] = ()
    # service -> hold record to set, or None to lift it (rollbacks hold what they replaced)
    holds: Mapping[str, Mapping[str, str] | None] = field(default_factory=dict)
    source: str | None = None
    reason: str | None = None
    unchanged: tuple[str, ...] = ()
    report: GateReport | None = None
    # services left out because they are held in the target (promote --skip-held)
    skipped_held: tuple[str, ...] = ()
    # callers' egress a first image needs in the target (``first_image_egress``)
    egress: tuple[EgressEdit, ...] = ()
    # a publish: the build's source commit and CI run (one line each, recorded as trailers)
    source_commit: str | None = None
    build_url: str | None = None
    # promote --all: the set of the source stage it takes; rollback --set: the set it restores
    release_set: ReleaseSet | None = None
    # services of the source stage the set has no image for (deployed there after it ran)
    not_in_set: tuple[str, ...] = ()
    # services of the set the target already runs a later release of (left out, no --force)
    later_in_target: tuple[str, ...] = ()
    # an automatic rollback of a promote --all: the id of the set whose promotion it undoes
    undoes_set: str | None = None

    @property
    def empty(self) -> bool:
        return not self.changes and not self.holds

    @property
    def services(self) -> list[str]:
        return [c.service for c in self.changes] or list(self.holds)

    def subject(self) -> str:
        services = ",".join(self.services)
        version = self.changes[0].after.tag if len(self.changes) == 1 else None
        if self.action == "promote":
            arrow = f"{self.source} → {self.environment.name}"
            return f"promote({services}): {arrow}" + (f" {version}" if version else "")
        if self.action == "rollback":
            target = f" to {version}" if version else ""
            return f"rollback({services}): {self.environment.name}{target}"
        tagged = f" {version}" if version and self.action == "publish" else ""
        return f"{self.action}({services}): {self.environment.name}{tagged}"

    def notes(self) -> list[str]:
        """What the change table does not show: the release set and what it leaves out, the
        callers' egress a first image wires, and the digests an offline dry run could not
        know."""
        lines = []
        chosen = self.release_set
        if chosen and self.action == "rollback":
            lines.append(
                f"restores release set {chosen.id}: the images its promotion put "
                f"into {self.environment.name}"
            )
        elif self.undoes_set:
            lines.append(
                f"undoes the promotion of release set {self.undoes_set}: every service it changed"
            )
        elif chosen:
            lines.append(chosen.describe(dt.datetime.now(dt.UTC)))
            lines += [
                f"left out {service}: release set {chosen.id} has no image of it"
                for service in self.not_in_set
            ]
            lines += [
                f"left out {service}: {self.environment.name} already runs a later release "
                f"(one {chosen.stage} ran after release set {chosen.id}; "
                "--force --reason TEXT downgrades it)"
                for service in self.later_in_target
            ]
        lines += [
            f"egress: {edit.caller} may call {edit.service} "
            f"({edit.service}'s first image in {self.environment.name})"
            for edit in self.egress
        ]
        unknown = unresolved(self)
        lines += [
            f"digest of {change.service} unknown offline: the registry gate resolves "
            f"{change.after.tag} and the digest is what gets promoted"
            for change in self.changes
            if change.service in unknown
        ]
        return lines

    def message(self, actor: str) -> str:
        """Subject, the reason, and the trailer block (the last paragraph, as git reads it)."""
        lines = [self.subject(), ""]
        if self.reason:
            lines += [self.reason, ""]
        if self.egress:
            callers = ", ".join(dict.fromkeys(edit.caller for edit in self.egress))
            lines += [f"Egress of {callers} wired to the first image(s) in this stage.", ""]
        lines.append(f"Platform-Action: {self.action}")
        lines.append(f"Platform-Environment: {self.environment.name}")
        for change in self.changes:
            lines.append(f"Platform-Service: {change.service}")
            lines.append(f"Platform-Image: {image_trailer(change.after)}")
        if not self.changes:
            lines += [f"Platform-Service: {service}" for service in self.holds]
        if self.source:
            lines.append(f"Platform-From: {self.source}")
        if self.release_set:
            lines.append(f"{SET_TRAILER}: {self.release_set.id}")
        if self.undoes_set:
            lines.append(f"{UNDONE_SET_TRAILER}: {self.undoes_set}")
        if self.reason:
            lines.append(f"Platform-Reason: {self.reason}")
        if self.source_commit:
            lines.append(f"Platform-Source-Commit: {self.source_commit}")
        if self.build_url:
            lines.append(f"Platform-Build-Url: {self.build_url}")
        if self.report:
            lines += self.report.trailers()
        lines.append(f"Platform-Actor: {actor}")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        unknown = unresolved(self)
        return {
            "action": self.action,
            "environment": self.environment.name,
            "from_environment": self.source,
            "reason": self.reason,
            "source_commit": self.source_commit,
            "build_url": self.build_url,
            "release_set": self.release_set.as_dict(dt.datetime.now(dt.UTC))
            if self.release_set
            else None,
            "not_in_set": list(self.not_in_set),
            "later_in_target": list(self.later_in_target),
            "changes": [
                {
                    "service": c.service,
                    "before": c.before.reference if c.before else None,
                    "after": c.after.reference,
                    "tag": c.after.tag,
                    "digest": c.after.digest,
                    "digest_unknown": c.service in unknown,
                }
                for c in self.changes
            ],
            "egress": [
                {
                    "caller": e.caller,
                    "service": e.service,
                    "file": f"{ENVIRONMENTS_DIR}/{self.environment.name}/{e.path.name}",
                }
                for e in self.egress
            ],
            "holds": {service: hold is not None for service, hold in self.holds.items()},
            "unchanged": list(self.unchanged),
            "skipped_held": list(self.skipped_held),
            "gates": [result.as_dict() for result in self.report.results] if self.report else [],
            "overrides": self.report.overrides if self.report else {},
        }


def unresolved(plan: Plan) -> frozenset[str]:
    """Services whose tag the registry gate would resolve to the digest to promote, but was
    not asked (``--offline``, which only goes with ``--dry-run``)."""
    if plan.report is None:
        return frozenset()
    skipped = {
        result.service
        for result in plan.report.results
        if result.gate == "registry" and result.verdict is Verdict.skipped
    }
    return frozenset(c.service for c in plan.changes if not c.after.digest and c.service in skipped)


def image_trailer(image: Image) -> str:
    """``repository[:tag][@digest]``: the whole image, so a re-plan can read it back."""
    text = image.repository + (f":{image.tag}" if image.tag else "")
    return text + (f"@{image.digest}" if image.digest else "")


def image_from_trailer(text: str) -> Image:
    name, _, digest = text.partition("@")
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        repository, tag = name, ""
    return Image(repository, tag or None, digest or None)


def _services(repo: Repo, services: Iterable[str], all_services: bool) -> list[str]:
    names = list(dict.fromkeys(services))
    if all_services and names:
        raise InputError("give services or --all, not both")
    if all_services:
        return list(repo.services)
    if not names:
        raise InputError("name at least one service, or --all")
    return [repo.service(name) for name in names]


def refuse_hold(environment: Environment, service: str) -> None:
    """Refuse (exit 1) a change to a service held in ``environment``."""
    hold = environment.holds.get(service)
    if hold:
        raise RefusedError(
            f"{service} is held in {environment.name}: {hold.get('reason', 'after a rollback')}",
            hint=f"lift it with: platform unhold {service} --env {environment.name}",
        )


def plan_promotion(
    repo: Repo,
    services: Iterable[str],
    *,
    all_services: bool = False,
    to: str,
    source: str | None = None,
    force: bool = False,
    reason: str | None = None,
    skip_held: bool = False,
    overrides: Collection[str] = (),
) -> Plan:
    """A promotion into ``to``. A held service refuses the plan if it has a change (a held
    service with nothing to promote is no obstacle); ``skip_held`` leaves it out instead.

    ``all_services`` promotes a release set (``release_sets.soaked_set``): the images that ran
    together in the source stage for the target's soak minimum (the current ones without a
    soak gate, or with ``soak`` among ``overrides``), not whatever each file holds now. A
    service the target already runs a later release of (one the source ran after the set) is
    left out, never downgraded, unless ``force``."""
    reason = one_line_text("--reason", reason)
    target = repo.environment(to)
    previous = repo.previous(target.name)
    origin = repo.environment(source) if source else previous
    if origin is None:
        raise InputError(f"'{target.name}' is the first stage: there is nothing to promote from")
    if origin.name == target.name:
        raise InputError("--from and --to name the same environment")
    if force and not reason:
        raise InputError("--force needs --reason TEXT (it is recorded in the commit)")
    if (previous is None or origin.name != previous.name) and not force:
        raise RefusedError(
            f"{origin.name} → {target.name} skips or reverses the pipeline",
            hint="promote one stage at a time, or add --force --reason TEXT",
        )
    chosen = _release_set(repo, origin, target, overrides) if all_services else None
    changes, unchanged, skipped, not_in_set, later = [], [], [], [], []
    for service in _services(repo, services, all_services):
        if (service, origin.name) not in repo.releases:
            if all_services:
                continue
            repo.release(service, origin.name)  # raises: not deployed there
        incoming = repo.releases[(service, origin.name)].image
        if chosen is not None:
            if service not in chosen.images:
                not_in_set.append(service)
                continue
            incoming = chosen.images[service]
        first = repo.pending.get((service, target.name))  # a file with no image line yet
        if first is not None:
            change = ImageChange(service, None, incoming, first)
        else:
            current = repo.release(service, target.name)
            if incoming == current.image:
                unchanged.append(service)
                continue
            if chosen is not None and not force and chosen.runs_later(service, current.image):
                later.append(service)
                continue
            change = ImageChange(service, current.image, incoming, current.values_file)
        if skip_held and service in target.holds:
            skipped.append(service)
            continue
        refuse_hold(target, service)
        changes.append(change)
    return Plan(
        "promote",
        target,
        tuple(changes),
        source=origin.name,
        reason=reason,
        unchanged=tuple(unchanged),
        skipped_held=tuple(skipped),
        egress=first_image_egress(repo, target, changes),
        release_set=chosen,
        not_in_set=tuple(not_in_set),
        later_in_target=tuple(later),
    )


def _release_set(
    repo: Repo, origin: Environment, target: Environment, overrides: Collection[str]
) -> ReleaseSet:
    minimum = None if "soak" in overrides else target.gates.soak
    return soaked_set(Git(repo.root), repo, origin, minimum, dt.datetime.now(dt.UTC))


def set_soak(plan: Plan) -> GateResult | None:
    """The soak gate's verdict on a promotion's release set (the set was chosen for having
    soaked; None: no set, or the gate is not declared)."""
    minimum = plan.environment.gates.soak
    if plan.release_set is None or minimum is None:
        return None
    return soak_evidence(plan.release_set, minimum, dt.datetime.now(dt.UTC))


def first_image_egress(
    repo: Repo, target: Environment, changes: Sequence[ImageChange]
) -> tuple[EgressEdit, ...]:
    """The callers' egress the first images among ``changes`` need in ``target``, read from
    the model as the image lines will leave it (``scaffold.callers_egress``): committed with
    them, so the promotion passes the policy gate (PLAT014) and CI does too."""
    first = [change for change in changes if change.before is None]
    if not first:
        return ()
    texts = {change.path: set_image(change.path, change.after) for change in first}
    imaged = repo.with_release_files(texts, texts)
    return tuple(
        edit for change in first for edit in callers_egress(imaged, change.service, target.name)
    )


def check_digests(plan: Plan) -> None:
    """After the gates (the registry gate fills digests in): a stage that requires digests
    never gets a tag alone. With the registry gate overridden, the command is what to change
    (exit 2); without one declared, the stage's policy refuses the image (exit 1). Offline,
    the plan marks the digest unknown instead (``unresolved``): a dry run shows the plan."""
    target = plan.environment
    if not target.policy.require_digest:
        return
    unknown = unresolved(plan)
    for change in plan.changes:
        if change.after.digest or change.service in unknown:
            continue
        message = f"{change.service} in {plan.source} has no digest and {target.name} requires one"
        pin = f"pin the digest in {ENVIRONMENTS_DIR}/{plan.source}/{change.service}.yaml"
        if "registry" in target.gates.names:  # declared, and it would have filled it in
            raise InputError(
                f"{message}: --override registry leaves its tag {change.after.tag} unresolved",
                hint=f"drop registry from --override, the gate resolves the tag to its digest; "
                f"or {pin}",
            )
        raise RefusedError(
            message,
            hint=f"add 'registry: {{}}' to the gates of {target.name} in "
            f"{ENVIRONMENTS_DIR}/pipeline.yaml, it resolves the tag to its digest; or {pin}",
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def plan_rollback(
    repo: Repo,
    services: Iterable[str],
    *,
    all_services: bool = False,
    env: str,
    to: str | None = None,
    reason: str | None = None,
    actor: str = "unknown",
    release_set: str | None = None,
    undoes_set: str | None = None,
) -> Plan:
    """A rollback of services to their last good (or ``to``) release; with ``release_set``,
    of ``env`` to exactly the images that set's promotion put there (``images_set_put``).
    ``undoes_set``: the set whose promotion this rolls back (recorded, ``UNDONE_SET_TRAILER``;
    not ``SET_TRAILER``, which names the set a release puts in place)."""
    reason = one_line_text("--reason", reason)
    to = one_line_text("--to", to)
    environment = repo.environment(env)
    git = Git(repo.root)
    restored, names = _set_to_restore(
        git, repo, environment, release_set, services, all_services, to
    )
    changes, unchanged = [], []
    for service in names:
        release = repo.release(service, environment.name)
        current = release.image
        if restored is not None:
            chosen = restored.images[service]
        elif to:
            chosen = _named_release(git, repo, service, environment, to)
        else:
            good = last_good(iter_history(git, release), current)
            if good is None:
                raise RefusedError(
                    f"{service} in {environment.name} has no earlier good release to roll back to",
                    hint="name one with --to TAG|DIGEST|COMMIT",
                )
            chosen = good
        if chosen == current:
            unchanged.append(service)
            continue
        changes.append(ImageChange(service, current, chosen, release.values_file))
    since = _now()
    holds = {
        c.service: {
            "reason": reason
            or f"rolled back from {c.before and (c.before.tag or c.before.digest)}",
            "since": since,
            "by": actor,
        }
        for c in changes
    }
    return Plan(
        "rollback",
        environment,
        tuple(changes),
        holds,
        reason=reason,
        unchanged=tuple(unchanged),
        release_set=restored,
        undoes_set=undoes_set,
    )


def _set_to_restore(
    git: Git,
    repo: Repo,
    environment: Environment,
    set_id: str | None,
    services: Iterable[str],
    all_services: bool,
    to: str | None,
) -> tuple[ReleaseSet | None, list[str]]:
    """The set a rollback --set restores and its services, or (None, the services named)."""
    if set_id is None:
        return None, _services(repo, services, all_services)
    if list(services) or all_services or to:
        raise InputError(
            "--set restores a whole set: give no SERVICE, --all or --to with it",
            hint=f"platform rollback --set {set_id} --env {environment.name}",
        )
    deployed = [s for (s, env) in repo.releases if env == environment.name]
    restored = images_set_put(git, repo, environment, set_id, deployed)
    return restored, list(restored.images)


def _named_release(git: Git, repo: Repo, service: str, environment: Environment, to: str) -> Image:
    wanted = to.lower()
    match = next(
        (
            e
            for e in iter_history(git, repo.release(service, environment.name))
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
    return match.image


def plan_hold(
    repo: Repo, service: str, env: str, *, reason: str | None, lift: bool, actor: str
) -> Plan:
    """Hold (or with ``lift`` unhold) a service in an environment."""
    environment = repo.environment(env)
    repo.release(service, environment.name)
    reason = one_line_text("--reason", reason)
    if lift:
        holds: dict[str, Mapping[str, str] | None] = (
            {service: None} if service in environment.holds else {}
        )
        unchanged = () if holds else (service,)
        return Plan("unhold", environment, holds=holds, reason=reason, unchanged=unchanged)
    assert reason is not None  # the CLI requires it
    if environment.holds.get(service, {}).get("reason") == reason:
        return Plan("hold", environment, reason=reason, unchanged=(service,))
    record = {"reason": reason, "by": actor, "since": _now()}
    return Plan("hold", environment, holds={service: record}, reason=reason)


def hold_text(text: str, holds: Mapping[str, Mapping[str, str] | None]) -> str:
    """environment.yaml with holds set (a record) or lifted (None), comments kept."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.preserve_quotes = True  # "1.35" stays "1.35": only the holds' lines change
    data = yaml.load(text)
    current = data.get("holds") or {}
    for service, hold in holds.items():
        if hold is None:
            current.pop(service, None)
        else:
            current[service] = dict(hold)
    if current:
        data["holds"] = current
    else:
        data.pop("holds", None)
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def plan_texts(root: Path, plan: Plan) -> dict[str, str]:
    """Path (relative to the root) -> the text it will hold after the plan."""
    texts = {
        str(change.path.relative_to(root)): set_image(change.path, change.after)
        for change in plan.changes
    }
    texts = with_egress(root, plan.egress, texts)
    if plan.holds:
        settings = plan.environment.settings_file
        texts[str(settings.relative_to(root))] = hold_text(
            settings.read_text(encoding="utf-8"), plan.holds
        )
    return texts


@dataclass
class Outcome:
    plan: Plan
    diff: str
    commit: str | None = None
    pushed: bool = False
    # where it went: remote/branch of a push, or the pull request's branch
    branch: str | None = None
    attempts: int = 0
    pull_request: PullRequest | None = None
    # a commit an interrupted run made and this one found (pushed with this one, or not yet)
    recovered: str | None = None


def unified_diff(root: Path, texts: Mapping[str, str]) -> str:
    chunks: list[str] = []
    for name, text in texts.items():
        chunks += difflib.unified_diff(
            (root / name).read_text(encoding="utf-8").splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"a/{name}",
            f"b/{name}",
        )
    return "".join(chunks)


def actor_of(git: Git) -> str:
    name = git.config.get("user.name", "").strip() or "unknown"
    email = git.config.get("user.email", "").strip()
    return f"{name} <{email}>" if email else name


def policy_gate(repo: Repo, plan: Plan, texts: Mapping[str, str]) -> None:
    """The policy gate: verify the changed releases as they will be committed.

    Only the edited values files are read again (from ``texts``): sound because the lock is
    held, the tree is clean and the model was loaded under the lock; other writers through
    this tool change only other files' images and holds, which this verdict does not read.
    """
    if plan.holds:
        settings = plan.environment.settings_file
        check_settings_text(repo.root, settings, texts[str(settings.relative_to(repo.root))])
    if not plan.changes:
        return
    paths = [change.path for change in plan.changes] + [edit.path for edit in plan.egress]
    edited = {path: texts[str(path.relative_to(repo.root))] for path in paths}
    services = list(dict.fromkeys([*plan.services, *(edit.caller for edit in plan.egress)]))
    report = verify(repo.with_release_files(edited, edited), [plan.environment.name], services)
    if not report.ok:
        first = report.failing[0]
        raise RefusedError(
            f"policy refused the result: {len(report.failing)} violation(s), first: "
            f"{first.target} {first.check} {first.resource}: {first.message}",
            hint=f"see: platform verify --env {plan.environment.name}",
        )
    if plan.report is not None:
        measured = f"platform verify: {len(services)} release(s) of {plan.environment.name} clean"
        plan.report.results.append(GateResult("policy", None, Verdict.passed, measured))


@dataclass(frozen=True)
class Session:
    """A write under the clone's lock, on a branch, with a clean tree."""

    git: Git
    branch: str
    # the journal of a commit an interrupted run made to push and did not
    pending: Journal | None
    # HEAD when the command started (after finishing what an interrupted run left)
    start: str


@contextmanager
def writing(root: Path) -> Iterator[Session]:
    """The lock, then whatever an interrupted run left finished, then the checks."""
    git = Git(root)
    with git.lock():
        branch = git.branch()
        pending = recover(git, branch)
        git.require_clean()
        yield Session(git, branch, pending, git.head())


def preflight(
    session: Session, repo: Repo, plan: Plan, *, publish: bool, pull_request: bool = False
) -> None:
    """Before any gate: where the commit will go exists (for a pull request, its repository
    and a token), and every file it changes can be written in place (no symbolic link out of
    the clone, no read-only file)."""
    if publish:
        remote, _ = session.git.upstream(session.branch)
        if pull_request and not plan.empty:
            _github_of(session, remote)
    paths = [change.path for change in plan.changes] + [edit.path for edit in plan.egress]
    if plan.holds:
        paths.append(plan.environment.settings_file)
    root = repo.root.resolve()
    for path in paths:
        name = path.relative_to(repo.root)
        for part in (path, path.parent):
            if part.is_symlink() or not part.resolve().is_relative_to(root):
                raise InputError(
                    f"{name} is a symbolic link out of the repository",
                    hint="replace it with the file itself: this tool writes only inside the clone",
                )
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
            raise EnvironmentProblem(
                f"{name} is not writable", hint="fix the permissions of the clone and run again"
            )


def build(session: Session, plan: Plan, texts: Mapping[str, str], actor: str) -> tuple[str, str]:
    """Steps 3 and 4: the commit object on HEAD, checked to change exactly ``texts``."""
    git = session.git
    head = session.start  # under the lock, nothing has moved the branch since the start
    commit = git.write_commit(head, texts, plan.message(actor), sign=git.signs_commits)
    fault("built")
    changed = set(git.run("diff-tree", "-r", "--name-only", "--no-commit-id", head, commit).split())
    if changed != set(texts):
        raise RefusedError(
            f"the commit built for {plan.subject()} changes {sorted(changed)}, "
            f"not the planned {sorted(texts)}",
            hint="nothing was written; report this with the output of git status",
        )
    return head, commit


def execute(
    session: Session,
    repo: Repo,
    plan: Plan,
    *,
    actor: str,
    push: bool = False,
    pull_request: bool = False,
    texts: Mapping[str, str] | None = None,
) -> Outcome:
    """Steps 3 to 5 for a plan whose gates passed (``texts``: as the policy gate saw them)."""
    git = session.git
    texts = dict(texts) if texts is not None else plan_texts(repo.root, plan)
    outcome = Outcome(plan, unified_diff(repo.root, texts))
    outcome.recovered = session.pending.new if session.pending else None
    if plan.empty:
        if push and session.pending is not None:
            _publish_push(session, outcome, session.pending.push or git.upstream(session.branch))
        return outcome
    if pull_request:
        _publish_pull_request(session, outcome, texts, actor)
        return outcome
    target = git.upstream(session.branch) if push else None
    head, commit = build(session, plan, texts, actor)
    move(git, Journal(session.branch, head, commit, tuple(texts), target), texts)
    outcome.commit = commit
    if target is not None:
        _publish_push(session, outcome, target)
    return outcome


def _publish_push(session: Session, outcome: Outcome, target: tuple[str, str]) -> None:
    """Push HEAD; on a moved remote, re-plan every unpushed commit on its tip and retry."""
    git, (remote, remote_branch) = session.git, target
    where = f"{remote}/{remote_branch}"
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        head = git.head()
        pushed, complaint = git.attempt(
            "push", "--quiet", remote, f"{head}:refs/heads/{remote_branch}"
        )
        if pushed:
            fault("pushed")
            clear_journal(git)
            outcome.commit, outcome.pushed, outcome.attempts = head, True, attempt
            outcome.branch = where
            return
        if not any(marker in complaint for marker in _RACE_MARKERS):
            # a hook, permissions or the network said no: retrying will not help
            reason = next((ln for ln in complaint.splitlines() if "rejected" in ln), complaint)
            raise GitError(
                f"push to {where} refused: {reason.strip() or 'no reason given'}",
                hint=_undo_unpushed(session),
            )
        try:
            replan_on_remote(session, remote, remote_branch)
        except PlatformError as error:
            undone = _undo_unpushed(session)
            error.hint = f"{undone}; {error.hint}" if error.hint else undone
            raise
        time.sleep(random.uniform(0.02, 0.1) * attempt)
    raise GitError(
        f"push to {where} rejected {PUSH_ATTEMPTS} times",
        hint="the remote is busy; " + _undo_unpushed(session),
    )


def _remote_tip(git: Git, remote: str, remote_branch: str) -> str:
    git.run(
        "fetch",
        "--quiet",
        remote,
        f"+refs/heads/{remote_branch}:refs/remotes/{remote}/{remote_branch}",
    )
    tip = git.rev(f"refs/remotes/{remote}/{remote_branch}")
    if tip is None:
        raise GitError(f"{remote}/{remote_branch} does not exist")
    return tip


def _undo_unpushed(session: Session) -> str:
    """After a push that cannot succeed: the branch back where this command found it (a
    commit an interrupted run left stays, still to push), so nothing is half-published."""
    git = session.git
    head = git.head()
    if head != session.start:
        move(git, Journal(session.branch, head, session.start, _changed(git, head, session.start)))
    clear_journal(git)
    if session.pending is not None:
        write_journal(git, session.pending)
        left = session.pending.new[:12]
        return f"nothing was pushed; {left} of an interrupted run stays local, still to push"
    return "nothing was pushed and the local commit was undone"


def _changed(git: Git, old: str, new: str) -> tuple[str, ...]:
    return tuple(git.run("diff-tree", "-r", "--name-only", "--no-commit-id", old, new).split())


def _unpushed(git: Git, base: str) -> list[str]:
    return git.run("rev-list", "--reverse", f"{base}..HEAD").split()


@dataclass(frozen=True)
class Intent:
    """What an unpushed commit of this tool meant, read back from its trailers and parent."""

    commit: str
    action: str
    environment: str
    images: tuple[tuple[str, Image, Image | None], ...]  # service, after, before
    holds: Mapping[str, Mapping[str, str] | None]
    source: str | None
    overrides: tuple[str, ...]
    message: str
    release_set: str | None = None  # the id a promote --all recorded


def intent_of(git: Git, commit: str) -> Intent | None:
    """The intent of a commit this tool made (None for any other commit)."""
    record = git.run(
        "log", "-1", f"--format=%P{_FIELD}%B{_FIELD}%(trailers:only=true,unfold=true)", commit
    )
    parents, message, block = record.split(_FIELD, 2)
    marks = parse_trailers(block)
    action = (marks.get("Platform-Action") or [""])[0]
    environment = (marks.get("Platform-Environment") or [""])[0]
    if action not in ("promote", "rollback", "hold", "unhold", "publish") or not environment:
        return None
    services = marks.get("Platform-Service", [])
    settings = f"{ENVIRONMENTS_DIR}/{environment}/environment.yaml"
    images: list[tuple[str, Image, Image | None]] = []
    if action in ("promote", "rollback", "publish"):
        paths = [f"{ENVIRONMENTS_DIR}/{environment}/{s}.yaml" for s in services]
        before = git.read_files([(parents.split()[0], path) for path in paths])
        for service, trailer, blob in zip(
            services, marks.get("Platform-Image", []), before, strict=False
        ):
            previous = image_of(blob.decode(errors="replace")) if blob is not None else None
            images.append((service, image_from_trailer(trailer), previous))
    holds: dict[str, Mapping[str, str] | None] = {}
    if action == "unhold":
        holds = dict.fromkeys(services)
    elif action not in ("promote", "publish"):
        recorded = holds_of(git.show(commit, settings) or "")
        holds = {service: recorded[service] for service in services if service in recorded}
    return Intent(
        commit,
        action,
        environment,
        tuple(images),
        holds,
        _first(marks, "Platform-From"),
        tuple(marks.get("Platform-Override", [])),
        message.rstrip("\n") + "\n",
        _first(marks, SET_TRAILER),
    )


def holds_of(text: str) -> dict[str, Mapping[str, str]]:
    """The ``holds`` of an environment.yaml text (none if it does not parse)."""
    try:
        data = parse_yaml(text, Path("environment.yaml"))
    except InputError:
        return {}
    holds = data.get("holds") if isinstance(data, dict) else None
    if not isinstance(holds, dict):
        return {}
    return {str(k): v for k, v in holds.items() if isinstance(v, dict)}


def replan_on_remote(session: Session, remote: str, remote_branch: str) -> None:
    """Re-plan, don't rebase: each unpushed commit's intent again on the remote's tip.

    The tip is checked out aside (``git archive``) and loaded as a model; each intent is
    planned on it as on a fresh clone (holds, the source stage's image, the image it
    replaces, freeze and soak, the policy gate), a new commit is built on the tip, and the
    local branch moves to the result in one journaled step. Raises RefusedError on a real
    conflict (exit 1: nothing pushed).
    """
    git = session.git
    tip = _remote_tip(git, remote, remote_branch)
    base = git.run("merge-base", tip, "HEAD", check=False).strip() or tip
    intents = []
    for commit in _unpushed(git, base):
        intent = intent_of(git, commit)
        if intent is None:
            raise InputError(
                f"{session.branch} has an unpushed commit {commit[:12]} this tool did not make",
                hint=f"push or drop it first (git log {remote}/{remote_branch}..HEAD)",
            )
        intents.append(intent)
    head = git.head()
    parent = tip
    with tempfile.TemporaryDirectory(prefix="platform-replan-") as scratch:
        root = Path(scratch)
        _checkout_aside(git, tip, root)
        for intent in intents:
            repo = load_repo(root)
            texts = _replanned_texts(git, repo, intent, tip)
            if not texts:
                continue  # someone else did the same already
            parent = git.write_commit(parent, texts, intent.message, sign=git.signs_commits)
            for name, text in texts.items():
                (root / name).write_text(text, encoding="utf-8")
    journal = Journal(
        session.branch, head, parent, _changed(git, head, parent), (remote, remote_branch)
    )
    if parent == tip:
        # every intent is already on the remote: the branch simply catches up
        journal = replace(journal, push=None)
    move(git, journal)


def _checkout_aside(git: Git, commit: str, root: Path) -> None:
    """The environments and charts of ``commit`` in ``root``, sharing the clone's cache.

    Charts whose tree ``commit`` shares with HEAD are the clone's own (clean under the lock:
    HEAD's files), linked rather than written out again: 20 MB per rejected push, and the
    chart digests the clone's cache holds for them stay valid (charts.json is keyed by the
    real path)."""
    trees = git.run("rev-parse", f"{commit}:{CHARTS_DIR}", f"HEAD:{CHARTS_DIR}", check=False)
    same = len(trees.split()) == 2 and len(set(trees.split())) == 1
    paths = [ENVIRONMENTS_DIR] if same else [ENVIRONMENTS_DIR, CHARTS_DIR]
    archive = git.output("archive", "--format=tar", commit, "--", *paths)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    if same:
        (root / CHARTS_DIR).symlink_to(git.root / CHARTS_DIR)
    cache = git.root / CACHE_DIR
    if cache.is_dir():
        (root / CACHE_DIR).symlink_to(cache)


def _replanned_texts(git: Git, repo: Repo, intent: Intent, tip: str) -> dict[str, str]:
    """The texts that carry ``intent`` out on ``repo`` (the tip), or refuse on a conflict."""
    environment = repo.environment(intent.environment)
    changes = []
    now = dt.datetime.now(dt.UTC)
    chosen = _same_set_on_tip(git, repo, intent, tip, now)
    for service, after, before in intent.images:
        # a first image: the file is still without an image line on the tip, or got one
        path = repo.pending.get((service, environment.name))
        if path is None:
            release = repo.release(service, environment.name)
            path, current = release.values_file, release.image
        else:
            current = None
        if intent.action in ("promote", "publish"):
            refuse_hold(environment, service)
        if intent.action == "promote" and chosen is None:
            _check_source(repo, intent, service, after)
        if current == after:
            continue
        if current != before:
            raise RefusedError(
                f"conflict: {service} in {environment.name} is {_state(current)} on the "
                f"remote, not {_state(before)} as this {intent.action} found it",
                hint="pull and run the command again",
            )
        changes.append(ImageChange(service, current, after, path))
    holds = {
        service: hold
        for service, hold in intent.holds.items()
        if (hold is None and service in environment.holds)
        or (hold is not None and environment.holds.get(service) != hold)
    }
    if intent.action == "rollback" and not changes:
        holds = {}
    egress = first_image_egress(repo, environment, changes)
    plan = Plan(
        intent.action,
        environment,
        tuple(changes),
        holds,
        source=intent.source,
        egress=egress,
        release_set=chosen,
    )
    if plan.empty:
        return {}
    if plan.action == "promote":
        _offline_gates(git, repo, plan, intent, tip, now)
    texts = plan_texts(repo.root, plan)
    policy_gate(repo, plan, texts)
    return texts


def _state(image: Image | None) -> str:
    return image.label if image else "without an image line"


def _same_set_on_tip(
    git: Git, repo: Repo, intent: Intent, tip: str, now: dt.datetime
) -> ReleaseSet | None:
    """A promote --all's set, chosen again on the remote's tip as the promotion chose it:
    another set there (the source stage moved, or rolled a release of it back) refuses."""
    if intent.action != "promote" or intent.release_set is None or intent.source is None:
        return None
    target = repo.environment(intent.environment)
    minimum = None if "soak" in intent.overrides else target.gates.soak
    source = repo.environment(intent.source)
    chosen = soaked_set(git, repo, source, minimum, now, revision=tip)
    if chosen.id != intent.release_set:
        raise RefusedError(
            f"on the remote's tip, {source.name}'s release set to promote is {chosen.id}, "
            f"not {intent.release_set}",
            hint="pull and run the command again",
        )
    return chosen


def _check_source(repo: Repo, intent: Intent, service: str, after: Image) -> None:
    assert intent.source is not None
    source = repo.releases.get((service, intent.source))
    if source is None or not same_artifact(source.image, after):
        now = source.image.label if source else "nothing"
        raise RefusedError(
            f"{intent.source} runs {now} of {service} on the remote now, not {after.label}: "
            "it was rolled back or replaced meanwhile",
            hint=f"see platform history {service} --env {intent.source}",
        )


def _offline_gates(
    git: Git, repo: Repo, plan: Plan, intent: Intent, tip: str, now: dt.datetime
) -> None:
    """Freeze and soak again on the remote's tip (the network gates judged the image)."""
    gates = plan.environment.gates
    assert plan.source is not None
    results: list[GateResult] = []
    if gates.freeze is not None and "freeze" not in intent.overrides:
        results.append(check_freeze(gates.freeze, now))
    if gates.soak is not None and "soak" not in intent.overrides and plan.release_set is None:
        for change in plan.changes:
            source = repo.release(change.service, plan.source)
            results.append(check_soak(git, source, gates.soak, now, revision=tip))
    failed = [r for r in results if r.verdict is Verdict.failed]
    if failed:
        raise RefusedError(
            f"on the remote's tip, {failed[0].subject}: {failed[0].measured}",
            hint="run the command again when the gate passes",
        )


def pull_request_branch(plan: Plan) -> str:
    services = "+".join(sorted(plan.services))
    return f"platform/{plan.action}/{plan.environment.name}/{services}"


def _github_of(session: Session, remote: str) -> GitHub:
    """The GitHub repository ``remote`` names, with the token (or the one-line refusal of
    either)."""
    return GitHub(repository_slug(session.git.run("remote", "get-url", remote)))


def _publish_pull_request(
    session: Session, outcome: Outcome, texts: Mapping[str, str], actor: str
) -> None:
    """The commit on a branch of its own and a pull request; the local branch untouched.

    The body is the plan's review document (``prbody``), replaced on every run; the reviewers
    its change-risk class needs are requested. The body ends with the commit's trailer block
    as its last paragraph, so a squash merge whose message is the title and description keeps
    the record the ledger reads. If GitHub refuses the pull request, the branch is put back as
    it was (deleted, or at its old commit)."""
    from platformctl.prbody import review  # prbody reads this module's Plan

    git, plan = session.git, outcome.plan
    remote, base = git.upstream(session.branch)
    github = _github_of(session, remote)
    document = review(load_repo(git.root), plan, texts)
    _, commit = build(session, plan, texts, actor)
    target = pull_request_branch(plan)
    listed = git.run("ls-remote", remote, f"refs/heads/{target}").split()
    previous = listed[0] if listed else ""
    lease = f"--force-with-lease=refs/heads/{target}:{previous}"
    git.run("push", "--quiet", lease, remote, f"{commit}:refs/heads/{target}")
    fault("pushed")
    outcome.commit, outcome.branch = commit, f"{remote}/{target}"
    try:
        outcome.pull_request = github.open_or_update(
            branch=target,
            base=base,
            title=plan.subject(),
            body=document.markdown(git.run("log", "-1", f"--format={TRAILERS}", commit)),
            supersedes_prefix=f"platform/{plan.action}/{plan.environment.name}/",
            services=set(plan.services),
        )
    except PlatformError as error:
        restore = f"{previous}:refs/heads/{target}" if previous else f":refs/heads/{target}"
        cleaned = git.ok(
            "push", "--quiet", f"--force-with-lease=refs/heads/{target}:{commit}", remote, restore
        )
        left = "the branch was put back" if cleaned else f"the branch {target} is still there"
        raise EnvironmentProblem(
            f"pull request not opened: {error.message}",
            hint=f"{left}; nothing else changed; run again when GitHub answers",
        ) from None
    pull = outcome.pull_request
    try:
        github.request_reviewers(pull.number, document.reviewers)
    except PlatformError as error:
        raise EnvironmentProblem(
            f"pull request #{pull.number} is open ({pull.url}), but requesting "
            f"{', '.join(document.reviewers)} ({document.risk} change) failed: {error.message}",
            hint="request them on the pull request, or fix review: in "
            f"{ENVIRONMENTS_DIR}/pipeline.yaml and run again (the pull request is updated)",
        ) from None
    outcome.pull_request = replace(pull, risk=document.risk, reviewers=document.reviewers)
