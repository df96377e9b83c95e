"""DORA's four numbers read from the git ledger alone: no other datastore to keep in step.

One ``git log --first-parent --raw`` of the watched branch lists every commit that changed a
file under ``environments/`` with the blob each values file became, streamed as git walks;
each distinct blob is then read once through one ``git cat-file --batch``. A deployment is a
commit where a service's image in an environment changed (as the ledger reads releases: from
the file's contents, so hand edits and squash merges count), at the time it reached the branch
(a merged pull request's merge time), with the action its trailers record (``manual`` without).
Nothing runs per commit, so ten thousand commits cost one walk.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from platformctl.errors import InputError
from platformctl.gates.config import format_duration, parse_duration
from platformctl.git import BlobReader, Git
from platformctl.imagefile import image_of
from platformctl.ledger import first_trailer, parse_trailers
from platformctl.model import ENVIRONMENTS_DIR, Image, Repo

_RECORD, _FIELD = "\x1e", "\x1f"
_LOG_FORMAT = f"{_RECORD}%H{_FIELD}%cI{_FIELD}%P{_FIELD}%(trailers:only=true,unfold=true){_FIELD}"
_DURATION = re.compile(r"(?:[0-9]+[dhms])+")
_DAY = dt.timedelta(days=1)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """The window's start: ``30d``/``12h``/``1d12h`` back from ``now``, or a date or time
    (``2026-11-01``, ``2026-11-01T09:00+01:00``; UTC without a zone). The window must not be
    empty."""
    if _DURATION.fullmatch(text):
        start = now - parse_duration(text)
    else:
        try:
            start = dt.datetime.fromisoformat(text)
        except ValueError:
            raise InputError(
                f"--since '{text}' is neither a duration nor a date",
                hint="give e.g. 30d, 12h, 1d12h or 2026-11-01",
            ) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
    if start >= now:
        raise InputError(
            f"--since '{text}' leaves an empty window (it starts at or after now)",
            hint="give a positive duration such as 30d, or a date in the past",
        )
    return start


@dataclass(frozen=True)
class Deployment:
    """A commit of the watched branch that changed a service's image in an environment."""

    commit: str
    order: int  # position on the first-parent line, oldest first: commits of one second differ
    time: dt.datetime
    environment: str
    service: str
    action: str  # promote | rollback | publish | manual
    image: Image


@dataclass
class _Commit:
    commit: str
    time: dt.datetime
    parents: tuple[str, ...]
    trailers: str
    changes: list[_FileChange]


@dataclass
class _FileChange:
    """What a commit's patch (``-U0``) shows of one values file: its added top-level
    ``image:`` lines, and whether it added the file or removed an image line."""

    path: str
    added: list[str] = field(default_factory=list)
    removed_image: bool = False
    new_file: bool = False


def _parse_patch(patch: str, wanted: frozenset[str]) -> list[_FileChange]:
    changes: list[_FileChange] = []
    change: _FileChange | None = None
    header = added_file = False
    for line in patch.split("\n"):
        if line.startswith("diff --git "):
            change, header, added_file = None, True, False
        elif header and line.startswith("--- "):
            added_file = line == "--- /dev/null"
        elif header and line.startswith("+++ "):
            path = line[len("+++ b/") :] if line.startswith("+++ b/") else ""
            if path in wanted:
                change = _FileChange(path, new_file=added_file)
                changes.append(change)
        elif line.startswith("@@"):
            header = False
        elif change is not None and not header:
            if line.startswith("+image:"):
                change.added.append(line[1:])
            elif line.startswith("-image:"):
                change.removed_image = True
    return changes


def _read_log(git: Git, revision: str, wanted: frozenset[str]) -> list[_Commit]:
    """The first-parent commits that changed a ``wanted`` values file, newest first, with
    what their patches (against the first parent) show of those files."""
    log = git.records(
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--root",
        "--patch",
        "--unified=0",
        "--inter-hunk-context=0",
        "--no-renames",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-show-signature",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        f"--format={_LOG_FORMAT}",
        revision,
        "--",
        f"{ENVIRONMENTS_DIR}/",
        separator=_RECORD,
    )
    commits: list[_Commit] = []
    with closing(log):
        for record in log:
            if not record.strip():
                continue
            commit, time, parents, trailers, patch = record.split(_FIELD, 4)
            changes = _parse_patch(patch, wanted)
            if changes:
                when = dt.datetime.fromisoformat(time)
                commits.append(_Commit(commit, when, tuple(parents.split()), trailers, changes))
    return commits


def _merged_trailers(git: Git, commits: Sequence[_Commit]) -> dict[str, str]:
    """Trailers of the pull requests merged without any of their own: the merged branch's tip
    (the commit ``--pull-request`` made), read for every such merge by one ``git log``."""
    tips = {
        c.commit: c.parents[1] for c in commits if len(c.parents) > 1 and not c.trailers.strip()
    }
    if not tips:
        return {}
    request = "".join(f"{tip}\n" for tip in dict.fromkeys(tips.values())).encode()
    fields = f"--format=%H{_FIELD}%(trailers:only=true,unfold=true){_RECORD}"
    text = git.output("log", "--no-walk=unsorted", "--stdin", fields, input_bytes=request)
    blocks = dict(
        record.strip("\n").split(_FIELD, 1)
        for record in text.decode().split(_RECORD)
        if record.strip()
    )
    return {merge: blocks.get(tip, "") for merge, tip in tips.items()}


# The one-line image ``flow_image`` writes, when every plain scalar in it is one YAML reads as
# a string (``_RESOLVER``): then this is exactly what a YAML parser makes of the line.
_CANONICAL = re.compile(
    r"image: \{repository: (?P<repository>[A-Za-z0-9][A-Za-z0-9._/-]*)"
    r"(?:, tag: (?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*))?"
    r'(?:, digest: "(?P<digest>sha256:[a-f0-9]{64})")?\}'
)
_RESOLVER = yaml.resolver.Resolver()
_STRING = "tag:yaml.org,2002:str"


def _plain_string(value: str | None) -> bool:
    """Whether YAML reads this plain scalar as a string (not ``1.5``, ``true``, ``null``)."""
    if value is None:
        return True
    resolved = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return bool(resolved == _STRING)


@lru_cache(maxsize=65536)
def _image_line(line: str) -> Image | None:
    """The image of a top-level one-line ``image: {...}``: parsed by the regex above when it
    is in the tool's own form (a YAML parse costs ~0.1 ms, and a long history has thousands
    of versions), by ``image_of`` otherwise."""
    match = _CANONICAL.fullmatch(line.rstrip())
    if match and _plain_string(match["repository"]) and _plain_string(match["tag"]):
        try:
            return Image(match["repository"], match["tag"], match["digest"])
        except ValueError:
            pass
    return image_of(line)


def _one_line_image(text: str) -> str | None:
    """The top-level ``image:`` line of a values text, if it has one and it is a flow map on
    that one line (then the rest of the file cannot change the image)."""
    lines = [line for line in text.splitlines() if line.startswith("image:")]
    return lines[0] if len(lines) == 1 and _flow(lines[0]) else None


def _flow(line: str) -> bool:
    return line[len("image:") :].strip().startswith("{") and line.rstrip().endswith("}")


def deployments(
    git: Git,
    repo: Repo,
    services: Iterable[str],
    environments: Iterable[str] | None = None,
    revision: str = "HEAD",
) -> list[Deployment]:
    """Every change of the ``services``' images in the ``environments`` (default: all),
    oldest first.

    Most versions are read from the patch: a file whose image is a one-line flow map (what the
    tool writes) changes its image exactly when that line changes. Any other file (a block
    map, a comment after the line, a file just added without one) is read whole, as the
    ledger reads it, from one ``git cat-file --batch`` opened only if needed.
    """
    paths = {
        f"{ENVIRONMENTS_DIR}/{env}/{service}.yaml": (env, service)
        for env in (repo.environment_names if environments is None else environments)
        for service in services
    }
    commits = _read_log(git, revision, frozenset(paths))
    merged = _merged_trailers(git, commits)
    found: list[Deployment] = []
    current: dict[str, Image] = {}
    one_line: set[str] = set()  # files whose current version has a one-line image
    with ExitStack() as stack:
        blobs: BlobReader | None = None
        for position, c in enumerate(reversed(commits)):
            marks = parse_trailers(merged.get(c.commit, c.trailers))
            for change in c.changes:
                path = change.path
                if len(change.added) == 1 and _flow(change.added[0]):
                    image = _image_line(change.added[0])
                    one_line.add(path)
                elif not (change.added or change.removed_image or change.new_file) and (
                    path in one_line
                ):
                    continue  # another value of the file changed
                else:
                    if blobs is None:
                        blobs = stack.enter_context(git.blobs())
                    data = blobs.read(c.commit, path)
                    text = data.decode(errors="replace") if data is not None else ""
                    line = _one_line_image(text)
                    image = _image_line(line) if line is not None else image_of(text)
                    one_line.discard(path)
                    if line is not None:
                        one_line.add(path)
                if image is None or current.get(path) == image:
                    continue  # no image, or the same one written again
                current[path] = image
                env, service = paths[path]
                ours = service in marks.get("Platform-Service", []) and env in marks.get(
                    "Platform-Environment", []
                )
                action = (first_trailer(marks, "Platform-Action") if ours else None) or "manual"
                found.append(Deployment(c.commit, position, c.time, env, service, action, image))
    return found


def _median(values: Sequence[dt.timedelta]) -> dt.timedelta | None:
    return (
        dt.timedelta(seconds=statistics.median(v.total_seconds() for v in values))
        if values
        else None
    )


def _p90(values: Sequence[dt.timedelta]) -> dt.timedelta | None:
    """Nearest rank: the smallest value that at least 90 % of the values do not exceed."""
    if not values:
        return None
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


@dataclass(frozen=True)
class Metrics:
    """The four numbers of one environment over one window, with what they were computed from."""

    environment: str
    deployments: int
    by_action: Mapping[str, int]
    per_day: float
    lead_times: tuple[dt.timedelta, ...]
    without_origin: int  # releases never seen in the first stage: no lead time to measure
    promotions: int
    rolled_back: int
    restore_times: tuple[dt.timedelta, ...]

    @property
    def lead_time_median(self) -> dt.timedelta | None:
        return _median(self.lead_times)

    @property
    def lead_time_p90(self) -> dt.timedelta | None:
        return _p90(self.lead_times)

    @property
    def change_failure_rate(self) -> float | None:
        return self.rolled_back / self.promotions if self.promotions else None

    @property
    def time_to_restore_median(self) -> dt.timedelta | None:
        return _median(self.restore_times)

    def as_dict(self) -> dict[str, Any]:
        def seconds(value: dt.timedelta | None) -> float | None:
            return value.total_seconds() if value is not None else None

        return {
            "environment": self.environment,
            "deployments": self.deployments,
            "by_action": dict(self.by_action),
            "per_day": self.per_day,
            "lead_time": {
                "releases": len(self.lead_times),
                "median_seconds": seconds(self.lead_time_median),
                "p90_seconds": seconds(self.lead_time_p90),
                "without_first_stage": self.without_origin,
            },
            "change_failure_rate": {
                "promotions": self.promotions,
                "rolled_back": self.rolled_back,
                "rate": self.change_failure_rate,
            },
            "time_to_restore": {
                "rollbacks": len(self.restore_times),
                "median_seconds": seconds(self.time_to_restore_median),
            },
        }

    def row(self) -> list[str]:
        def shown(value: dt.timedelta | None) -> str:
            return format_duration(value) if value is not None else "-"

        rate = self.change_failure_rate
        failure = f"{self.rolled_back}/{self.promotions} ({rate:.0%})" if rate is not None else "-"
        return [
            self.environment,
            str(self.deployments),
            f"{self.per_day:.3g}",
            shown(self.lead_time_median),
            shown(self.lead_time_p90),
            failure,
            shown(self.time_to_restore_median),
        ]


HEADERS = [
    "environment",
    "deployments",
    "per day",
    "lead time",
    "lead time p90",
    "change failure",
    "time to restore",
]


@dataclass(frozen=True)
class Report:
    since: dt.datetime
    until: dt.datetime
    services: tuple[str, ...]
    environments: tuple[Metrics, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "days": (self.until - self.since) / _DAY,
            "services": list(self.services),
            "environments": [metrics.as_dict() for metrics in self.environments],
        }


class _Earliest:
    """The earliest deployment of each artifact, found as ``same_artifact`` matches: by
    digest when both images have one, else by tag (of the same repository)."""

    def __init__(self) -> None:
        self._by_digest: dict[tuple[str, str], Deployment] = {}
        self._by_tag: dict[tuple[str, str | None], Deployment] = {}
        self._by_tag_without_digest: dict[tuple[str, str | None], Deployment] = {}

    def add(self, d: Deployment) -> None:
        image = d.image
        if image.digest:
            self._by_digest.setdefault((image.repository, image.digest), d)
        else:
            self._by_tag_without_digest.setdefault((image.repository, image.tag), d)
        self._by_tag.setdefault((image.repository, image.tag), d)

    def first(self, image: Image) -> Deployment | None:
        tag = (image.repository, image.tag)
        if not image.digest:
            return self._by_tag.get(tag)
        found = [
            d
            for d in (
                self._by_digest.get((image.repository, image.digest)),
                self._by_tag_without_digest.get(tag),
            )
            if d is not None
        ]
        return min(found, key=lambda d: d.order) if found else None


def _origins(line: Sequence[Deployment]) -> _Earliest:
    earliest = _Earliest()
    for d in line:
        earliest.add(d)
    return earliest


def _environment_metrics(
    env: str,
    timelines: Mapping[tuple[str, str], list[Deployment]],
    first_stage: str,
    services: Sequence[str],
    since: dt.datetime,
    until: dt.datetime,
) -> Metrics:
    counted: list[Deployment] = []
    lead_times: list[dt.timedelta] = []
    without_origin = promotions = rolled_back = 0
    restore_times: list[dt.timedelta] = []
    for service in services:
        line = timelines.get((env, service), [])
        origins = _origins(timelines.get((first_stage, service), []))
        # for each deployment: whether the next promotion or rollback after it is a rollback
        undone, next_is_rollback = [False] * len(line), False
        for index in range(len(line) - 1, -1, -1):
            undone[index] = next_is_rollback
            if line[index].action in ("promote", "rollback"):
                next_is_rollback = line[index].action == "rollback"
        here = _Earliest()
        for index, d in enumerate(line):
            new_here = here.first(d.image) is None
            here.add(d)
            if not since <= d.time <= until:
                continue
            counted.append(d)
            if new_here:
                origin = origins.first(d.image)
                if origin is None or origin.order > d.order:
                    without_origin += 1
                else:
                    lead_times.append(d.time - origin.time)
            if d.action == "promote":
                promotions += 1
                rolled_back += undone[index]
            if d.action == "rollback" and index:
                restore_times.append(d.time - line[index - 1].time)
    return Metrics(
        environment=env,
        deployments=len(counted),
        by_action=dict(sorted(Counter(d.action for d in counted).items())),
        per_day=len(counted) / ((until - since) / _DAY),
        lead_times=tuple(lead_times),
        without_origin=without_origin,
        promotions=promotions,
        rolled_back=rolled_back,
        restore_times=tuple(restore_times),
    )


def metrics(
    git: Git,
    repo: Repo,
    since: dt.datetime,
    until: dt.datetime,
    environments: Sequence[str] = (),
    services: Sequence[str] = (),
) -> Report:
    """DORA metrics of each environment (all, or ``environments``) over ``since``..``until``,
    for ``services`` (default: all) together. Names are checked first, with hints."""
    env_names = [repo.environment(name).name for name in environments] or list(
        repo.environment_names
    )
    names = list(dict.fromkeys(repo.service(name) for name in services)) or list(repo.services)
    timelines: dict[tuple[str, str], list[Deployment]] = {}
    first_stage = repo.environment_names[0]
    for d in deployments(git, repo, names, dict.fromkeys([first_stage, *env_names])):
        timelines.setdefault((d.environment, d.service), []).append(d)
    return Report(
        since,
        until,
        tuple(names),
        tuple(
            _environment_metrics(env, timelines, first_stage, names, since, until)
            for env in env_names
        ),
    )
