"""``platform discover``: publish what is new in the registry, per a policy of each service.

The policies live in ``environments/pipeline.yaml`` under ``discover:`` (next to the stage
order they feed, read by the model and checked by its schema), one per service:

    discover:
      my-service: {semver: ">=1.4.0 <2.0.0"}     # the highest release in the range
      other-service: {pattern: "^main-[0-9a-f]{7}$"}   # the newest match by creation time

Tags come from the distribution API's ``tags/list``, page by page (``n`` and the ``Link``
header), within a time limit per service. The chosen tag goes through ``publish`` (its
checks and its write path, one commit per service), so a second run finds the stage already
at that build and does nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from platformctl.delivery import deliver_ungated
from platformctl.errors import EnvironmentProblem, ExitCode, InputError, PlatformError
from platformctl.gates.images import Registries
from platformctl.httpapi import EndpointError, EndpointUnreachable
from platformctl.model import ENVIRONMENTS_DIR, PIPELINE_FILE, Repo, load_repo
from platformctl.oci import Reference, Registry
from platformctl.publish import (
    Build,
    OlderBuild,
    _release_key,
    created,
    plan_publish,
    version_of,
)
from platformctl.release import Outcome, writing
from platformctl.yamlio import located

PAGE_SIZE = 100
DEFAULT_TIME_LIMIT = 60.0
_LINK_NEXT = re.compile(r'<(?P<url>[^>]+)>\s*;\s*rel="?next"?')
# what cosign stores next to an image: signatures, attestations, SBOMs (never a build)
_COSIGN_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$")
_COMPARATOR = re.compile(r"^(?P<op>\^|~|>=|<=|>|<|=)?(?P<version>v?\d+(?:\.\d+){0,2})$")


class TimeLimit(EnvironmentProblem):
    """The registry did not list the tags within the time limit (exit 3)."""


Version = tuple[int, int, int]
Check = Callable[[Version], bool]


def _comparator(text: str) -> Check:
    """One comparator of a node-semver range: ``>=1.2.0``, ``^1.4``, ``~2.3.0``, ``1.2.x``."""
    match = _COMPARATOR.match(text.replace(".x", "").replace(".*", ""))
    if match is None:
        raise ValueError(f"'{text}' is not a version comparator")
    parts = [int(p) for p in match["version"].lstrip("v").split(".")]
    given = len(parts)
    major, minor, patch = [*parts, 0, 0][:3]
    low: Version = (major, minor, patch)
    op = match["op"] or ("=" if given == 3 else "~")
    if op in ("^", "~"):
        # ^: the leftmost non-zero part stays; ~: the minor stays (the major, if only it is given)
        keep = next((i for i, p in enumerate(low) if p), 2) if op == "^" else min(given, 2) - 1
        keep = min(keep, given - 1)
        high = tuple(low[:keep]) + (low[keep] + 1,) + (0,) * (2 - keep)
        return lambda v: low <= v < high
    compare: dict[str, Check] = {
        ">=": lambda v: v >= low,
        "<=": lambda v: v <= low,
        ">": lambda v: v > low,
        "<": lambda v: v < low,
        "=": lambda v: v == low,
    }
    return compare[op]


def semver_range(text: str) -> Check:
    """A node-semver range: comparators joined by spaces (all must hold) and ``||`` (any
    alternative). Pre-releases never match: discover publishes releases."""
    alternatives = [
        [_comparator(word) for word in part.split()] for part in text.split("||") if part.strip()
    ]
    if not alternatives or not all(alternatives):
        raise ValueError(f"'{text}' is an empty range")
    return lambda v: any(all(check(v) for check in checks) for checks in alternatives)


@dataclass(frozen=True)
class Policy:
    service: str
    semver: str | None = None
    pattern: str | None = None

    def describe(self) -> str:
        return f"semver {self.semver}" if self.semver else f"pattern {self.pattern}"


def policies(repo: Repo) -> dict[str, Policy]:
    """The ``discover:`` policies of the model, each checked (file:line on a bad one)."""
    found = {}
    for service, raw in repo.discover.items():
        policy = Policy(service, raw.get("semver"), raw.get("pattern"))
        key, text = ("semver", policy.semver) if policy.semver else ("pattern", policy.pattern)
        try:
            semver_range(str(text)) if key == "semver" else re.compile(str(text))
        except (ValueError, re.error) as error:
            where = located(repo.environments_dir / PIPELINE_FILE, ["discover", service, key])
            raise InputError(f"{where}: {error}") from None
        found[service] = policy
    return found


@contextmanager
def _within(registry: Registry, deadline: float, late: str, hint: str) -> Iterator[None]:
    """The registry's requests in the block wait no longer than what is left of the time
    limit (a registry that stalls mid-answer is cut off): else ``TimeLimit`` saying ``late``.
    ``registry`` is discover's own client for listing (see ``discover``), so its timeout is
    not shared with the publish that follows."""
    import httpx

    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeLimit(late, hint=hint)
    registry.client.timeout = httpx.Timeout(left)
    try:
        yield
    except EndpointUnreachable as error:
        if isinstance(error.__cause__, httpx.TimeoutException):
            raise TimeLimit(late, hint=hint) from None
        raise


def list_tags(registry: Registry, name: str, deadline: float, page: int = PAGE_SIZE) -> list[str]:
    """Every tag of ``name``: ``tags/list?n=page``, following ``Link: <…>; rel="next"``."""
    tags: list[str] = []
    path = f"tags/list?n={page}"
    while path:
        late = (
            f"{registry.base_url} listed {len(tags)} tags of {name} and no more within the "
            "time limit"
        )
        with _within(registry, deadline, late, "raise --time-limit"):
            response = registry.request("GET", name, path)
        if response.status_code == 404:
            return []
        if response.status_code >= 400:
            raise EndpointError(
                f"registry at {registry.base_url} answered {response.status_code} for "
                f"tags/list of {name}"
            )
        tags += response.json().get("tags") or []
        link = _LINK_NEXT.search(response.headers.get("link", ""))
        path = urlsplit(link["url"])._replace(scheme="", netloc="").geturl() if link else ""
    return tags


def choose(
    policy: Policy, tags: Iterable[str], registry: Registry, name: str, deadline: float
) -> str | None:
    """The tag the policy names among ``tags`` (None: none matches)."""
    if policy.semver:
        wanted = semver_range(policy.semver)
        versions = [
            (version, tag)
            for tag in tags
            if (version := version_of(tag)) is not None and version[3] is None
            if wanted(version[:3])
        ]
        return (
            max(versions, key=lambda item: (_release_key(item[0]), item[1]))[1]
            if versions
            else None
        )
    pattern = re.compile(str(policy.pattern))
    newest: tuple[Any, str] | None = None
    late = f"creation times of {name} tags not read within the time limit"
    for tag in (t for t in tags if pattern.fullmatch(t)):
        with _within(registry, deadline, late, "narrow the pattern, or raise --time-limit"):
            digest = registry.resolve(name, tag)
            when = created(registry, name, digest) if digest else None
        if when is not None and (newest is None or (when, tag) > newest):
            newest = (when, tag)
    return newest[1] if newest else None


@dataclass
class Found:
    """One service's line of a discover run."""

    service: str
    # published | would-publish | up-to-date | newer-running | no-match | no-policy | failed
    status: str
    message: str
    tag: str | None = None
    outcome: Outcome | None = None
    error: PlatformError | None = None

    def as_dict(self) -> dict[str, Any]:
        outcome = self.outcome
        pull = outcome.pull_request if outcome else None
        return {
            "service": self.service,
            "status": self.status,
            "message": self.message,
            "tag": self.tag,
            "digest": outcome.plan.changes[0].after.digest
            if outcome and outcome.plan.changes
            else None,
            "commit": outcome and outcome.commit,
            "pushed": bool(outcome and outcome.pushed),
            "branch": outcome and outcome.branch,
            "pull_request": pull and {"number": pull.number, "url": pull.url},
            "exit_code": int(self.error.exit_code) if self.error else 0,
        }


def discover(
    root: Path,
    services: Iterable[str] = (),
    *,
    push: bool = False,
    pull_request: bool = False,
    dry_run: bool = False,
    time_limit: float = DEFAULT_TIME_LIMIT,
    page: int = PAGE_SIZE,
) -> list[Found]:
    """One ``Found`` per service (the named ones, else every one), in the model's order."""
    repo = load_repo(root)
    named = [repo.service(name) for name in dict.fromkeys(services)]
    known = policies(repo)
    # listing sets its clients' timeouts to what is left of each service's time limit:
    # clients of their own, so the publishes keep the usual timeout
    registries, listers = Registries(), Registries()
    found = []
    for service in named or list(repo.services):
        policy = known.get(service)
        if policy is None:
            where = f"{ENVIRONMENTS_DIR}/{PIPELINE_FILE}"
            found.append(Found(service, "no-policy", f"no discover policy in {where}"))
            continue
        try:
            found.append(
                _one(
                    root,
                    repo,
                    policy,
                    registries,
                    listers,
                    push,
                    pull_request,
                    dry_run,
                    time_limit,
                    page,
                )
            )
        except PlatformError as error:
            found.append(Found(service, "failed", str(error), error=error))
    return found


def _one(
    root: Path,
    repo: Repo,
    policy: Policy,
    registries: Registries,
    listers: Registries,
    push: bool,
    pull_request: bool,
    dry_run: bool,
    time_limit: float,
    page: int,
) -> Found:
    service = policy.service
    repository = repo.release(service, repo.environments[0].name).image.repository
    reference = Reference.parse(repository)
    registry = listers.client(reference.host)
    deadline = time.monotonic() + time_limit
    tags = [
        t for t in list_tags(registry, reference.name, deadline, page) if not _COSIGN_TAG.match(t)
    ]
    tag = choose(policy, tags, registry, reference.name, deadline)
    if tag is None:
        return Found(service, "no-match", f"no tag of {len(tags)} matches {policy.describe()}")
    build = Build(service, tag)
    try:
        if dry_run:
            plan = plan_publish(repo, build, registries=registries)
            outcome = deliver_ungated(None, repo, plan)
        else:
            with writing(root) as session:
                fresh = load_repo(root)
                plan = plan_publish(fresh, build, registries=registries)
                outcome = deliver_ungated(
                    session, fresh, plan, push=push, pull_request=pull_request
                )
    except OlderBuild as older:
        return Found(service, "newer-running", f"{tag} is not newer: {older.message}", tag)
    stage = plan.environment.name
    if plan.empty and not outcome.commit:
        return Found(service, "up-to-date", f"{stage} already runs {tag}", tag, outcome)
    after = plan.changes[0].after.label if plan.changes else tag
    if dry_run:
        return Found(service, "would-publish", f"{after} into {stage}", tag, outcome)
    where = (
        f"pull request {outcome.pull_request.url}"
        if outcome.pull_request
        else f"{(outcome.commit or '')[:12]}"
        + (f" pushed to {outcome.branch}" if outcome.pushed else "")
    )
    return Found(service, "published", f"{after} into {stage}: {where}", tag, outcome)


def worst(found: Iterable[Found]) -> PlatformError | None:
    """What a run exits with: the worst failure (the environment before a refusal before an
    input error), its message saying how many services failed."""
    failures = [item.error for item in found if item.error is not None]
    if not failures:
        return None
    rank = (ExitCode.ENVIRONMENT, ExitCode.REFUSED, ExitCode.USAGE)
    first = min(
        failures, key=lambda e: rank.index(e.exit_code) if e.exit_code in rank else len(rank)
    )
    return type(first)(
        f"discover: {len(failures)} service(s) failed, first: {first.message}", hint=first.hint
    )
