"""DORA's four numbers read from the git ledger alone: no other datastore to keep in step.

One ``git log --first-parent --raw`` of the watched branch lists every commit with the blob
each changed file became, streamed as git walks (without a pathspec: with one, git diffs each
commit twice, to prune it and to print it); each distinct blob of a values file is asked of
one ``git cat-file --batch`` as soon as the log names it, so git reads the versions on another
core while the log goes on, and their images are read in the log's pauses.

A deployment is a commit where a service's image in an environment changed (as the ledger
reads releases: from the file's contents, so hand edits and squash merges count), at the time
it reached the branch (a merged pull request's merge time), with the action its trailers
record (``manual`` without).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import yaml

from platformctl.errors import InputError
from platformctl.gates.config import format_duration, parse_duration
from platformctl.git import Git
from platformctl.imagefile import image_of
from platformctl.ledger import (
    FIELD,
    RECORD,
    TRAILERS,
    first_trailer,
    merged,
    parse_trailers,
    service_values_path,
    tool_record,
)
from platformctl.model import Image, Repo

_LOG_FORMAT = f"{RECORD}%H{FIELD}%cI{FIELD}%P{FIELD}{TRAILERS}{FIELD}"
_DURATION = re.compile(r"(?:[0-9]+[dhms])+")
_DAY = dt.timedelta(days=1)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """The window's start: ``30d``/``12h``/``1d12h`` back from ``now``, or a date or time
    (``2026-11-01``, ``2026-11-01T09:00+01:00``; UTC without a zone). The window must not be
    empty."""
    if _DURATION.fullmatch(text):
        try:
            start = now - parse_duration(text)
        except OverflowError:
            raise InputError(
                f"--since '{text}' reaches back before year 1", hint="give a shorter duration"
            ) from None
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


# How many blobs are sent to git at once, and asked between two looks at what it answered.
_READ_EVERY = 128


class _Commit(NamedTuple):  # ten thousand of them: a tuple is made in a third of the time
    commit: str
    time: dt.datetime
    parents: tuple[str, ...]
    trailers: str
    # values file path -> the blob it became
    blobs: tuple[tuple[str, str], ...]


def _read_log(
    git: Git, revision: str, wanted: frozenset[str]
) -> tuple[list[_Commit], dict[str, Image | None]]:
    """The first-parent commits that changed a ``wanted`` values file, newest first, with the
    blob each such file became (``--raw`` against the first parent: no diff is computed), and
    the image of every such blob: each distinct blob is asked of a ``git cat-file`` as soon as
    the log names it, and its answer read in the log's pauses, so both walk together."""
    log = git.records(
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--root",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "--no-show-signature",
        f"--format={_LOG_FORMAT}",
        revision,
        separator=RECORD,
    )
    commits: list[_Commit] = []
    asked: list[str] = []
    asked_set: set[str] = set()
    fresh: list[str] = []  # not yet sent to git
    images: dict[str, Image | None] = {}  # in asking order: answers come in it

    def read(answers: Iterable[bytes | None]) -> None:
        for data in answers:
            image = _image_of(data.decode(errors="replace")) if data is not None else None
            images[asked[len(images)]] = image

    with closing(log), git.object_batch() as batch:
        for record in log:
            if not record.strip():
                continue
            commit, time, parents, trailers, raw = record.split(FIELD, 4)
            blobs = []
            for line in raw.splitlines():
                meta, _, path = line.partition("\t")  # :100644 100644 <old> <new> M
                if path in wanted and not meta.endswith("D"):
                    blob = meta.split()[3]
                    blobs.append((path, blob))
                    if blob not in asked_set:
                        asked_set.add(blob)
                        asked.append(blob)
                        fresh.append(blob)
                        if len(fresh) == _READ_EVERY:
                            batch.ask(*fresh)
                            fresh.clear()
                            read(batch.ready())
            if blobs:
                when = dt.datetime.fromisoformat(time)
                commits.append(
                    _Commit(commit, when, tuple(parents.split()), trailers, tuple(blobs))
                )
        batch.ask(*fresh)
        read(batch.answers())
    return commits, images


def _merged_trailers(git: Git, commits: Sequence[_Commit]) -> dict[tuple[str, str], str]:
    """(merge, path) -> trailers, for the pull requests merged without any of their own, as
    the ledger reads them (``ledger.merged``)."""
    return {
        (c.commit, path): block
        for c in commits
        if len(c.parents) > 1 and not c.trailers.strip()
        for path, (_, block) in merged(git, c.commit, [path for path, _ in c.blobs]).items()
    }


# The one-line image ``flow_image`` writes, when every plain scalar in it is one YAML reads as
# a string (``_RESOLVER``): then this is exactly what a YAML parser makes of the line.
_CANONICAL = re.compile(
    r"image: \{repository: (?P<repository>[A-Za-z0-9][A-Za-z0-9._/-]*)"
    r"(?:, tag: (?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*))?"
    r'(?:, digest: "(?P<digest>sha256:[a-f0-9]{64})")?\}'
)
_RESOLVER = yaml.resolver.Resolver()
_STRING = "tag:yaml.org,2002:str"


def _top_image_lines(text: str) -> list[str]:
    """The lines that start with ``image:`` (a top-level image key), found by ``str.find``:
    the regex ``^image:.*$`` tries every position of the file, ten times the cost."""
    found = []
    at = text.find("image:")
    while at >= 0:
        end = text.find("\n", at)
        if at == 0 or text[at - 1] == "\n":
            found.append(text[at:end] if end >= 0 else text[at:])
        at = text.find("image:", at + len("image:"))
    return found


@lru_cache(maxsize=4096)  # a few repositories and tags recur in every version
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


def _image_of(text: str) -> Image | None:
    """The image a values text declares, as the ledger reads it (``image_of``); a file whose
    one top-level ``image:`` line is a flow map (what the tool writes) is read from that line."""
    lines = _top_image_lines(text)
    if len(lines) == 1:
        value = lines[0][len("image:") :].strip()
        if value.startswith("{") and value.endswith("}"):
            return _image_line(lines[0])
    return image_of(text)


def deployments(
    git: Git,
    repo: Repo,
    services: Iterable[str],
    environments: Iterable[str] | None = None,
    revision: str = "HEAD",
) -> list[Deployment]:
    """Every change of the ``services``' images in the ``environments`` (default: all),
    oldest first: as the ledger reads releases, a version whose image is the one before (or
    that has none) is no release."""
    paths = {
        service_values_path(env, service): (env, service)
        for env in (repo.environment_names if environments is None else environments)
        for service in services
    }
    commits, images = _read_log(git, revision, frozenset(paths))
    brought = _merged_trailers(git, commits)
    found: list[Deployment] = []
    current: dict[str, Image] = {}
    for position, c in enumerate(reversed(commits)):
        for path, blob in c.blobs:
            image = images[blob]
            if image is None or current.get(path) == image:
                continue
            current[path] = image
            block = brought.get((c.commit, path), c.trailers)
            # most commits (CI's, hand edits) have no trailer of the tool's: nothing to parse
            marks = parse_trailers(block) if "Platform-" in block else {}
            env, service = paths[path]
            ours = tool_record(marks, service, env)
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
    origins: Mapping[str, _Earliest],
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
                origin = origins[service].first(d.image)
                if origin is None or origin.order > d.order:
                    without_origin += 1
                else:
                    lead_times.append(d.time - origin.time)
            if d.action == "promote":
                promotions += 1
                rolled_back += undone[index]
            if d.action == "rollback" and index:
                restore_times.append(d.time - line[index - 1].time)
    # a deployment is a commit: one promote --all of many services is one
    commits = {d.commit: d.action for d in sorted(counted, key=lambda d: d.order)}
    return Metrics(
        environment=env,
        deployments=len(commits),
        by_action=dict(sorted(Counter(commits.values()).items())),
        per_day=len(commits) / ((until - since) / _DAY),
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
    # where each artifact first ran: the same for every environment's lead times
    origins = {service: _origins(timelines.get((first_stage, service), [])) for service in names}
    return Report(
        since,
        until,
        tuple(names),
        tuple(
            _environment_metrics(env, timelines, origins, names, since, until) for env in env_names
        ),
    )
