"""The pages' view models: pure functions of a ``Snapshot``, built once per head.

Each builder reads the same library functions the CLI command of the page reads (``status``,
``current_sets``, ``history``, ``hold_events``), so a page shows the facts the terminal shows;
what depends on the clock (an age) is left to the rendering, since a view outlives a minute.
The benchmark and the tests call these directly, without a web server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from urllib.parse import urlsplit

from platformctl.dashboard.site import Snapshot
from platformctl.errors import PlatformError
from platformctl.ledger import (
    Entry,
    HoldEvent,
    current_sets,
    first_parent_line,
    history,
    hold_events,
    image_changes,
    rolled_back,
    set_lines,
    values_path,
)
from platformctl.model import Image, Release, Repo
from platformctl.output import time_and_age
from platformctl.status import StatusRow, status

# the names the views are cached under (``Site.cached``); a service's adds its name
MATRIX = "matrix"
# releases (and holds) shown per environment on a service's page, newest first, as
# ``platform history -n`` would show them
HISTORY_LIMIT = 50


def service_key(name: str) -> str:
    return f"service:{name}"


@dataclass(frozen=True)
class Age:
    """When something happened, told at the time of the request: ``2026-11-22 16:13 UTC``
    and ``9 days ago`` (``with_age``'s two halves), or the text as it is if it is no time."""

    when: str
    ago: str | None

    @classmethod
    def of(cls, timestamp: str, now: dt.datetime) -> Age:
        return cls(*time_and_age(timestamp, now))


@dataclass(frozen=True)
class Arrival:
    """The first-parent commit that last changed a values file's image, and that image."""

    commit: str
    time: str
    image: Image | None


def arrivals(snapshot: Snapshot, releases: Iterable[Release]) -> dict[str, Arrival]:
    """values path -> its ``Arrival``, for every release in ONE walk of the branch (newest
    first, ending when each file's newest image change is found): a walk per file would read
    the history hundreds of times on a big fleet."""
    pending = {values_path(release) for release in releases}
    found: dict[str, Arrival] = {}
    if not pending or snapshot.git.rev("HEAD") is None:  # an exported tree: no ledger
        return found
    # leaving the walk early drops the generator, which ends its git processes
    for change in image_changes(snapshot.git, sorted(pending)):
        for path, (_, after) in change.images.items():
            if path in pending:
                pending.discard(path)
                found[path] = Arrival(change.commit, change.time, after)
        if not pending:
            break
    return found


@dataclass(frozen=True)
class Cell:
    """One service in one environment of the matrix, as ``platform status`` shows it."""

    deployed: bool
    # why there is no image (deployed False): the CLI's message
    absent: str | None = None
    tag: str | None = None
    short_digest: str | None = None
    reference: str | None = None
    previous_environment: str | None = None
    differs_from_previous: bool = False
    held: bool = False
    hold_reason: str | None = None
    hold_by: str | None = None
    hold_since: str | None = None
    # the commit that put this image here and its time (None: not committed yet)
    commit: str | None = None
    since: str | None = None
    release_set: str | None = None

    def age(self, now: dt.datetime) -> Age | None:
        return Age.of(self.since, now) if self.since is not None else None


@dataclass(frozen=True)
class MatrixRow:
    service: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Matrix:
    """The services x environments matrix at one head."""

    head: str
    environments: tuple[str, ...]
    rows: tuple[MatrixRow, ...]
    # (service, environment) -> the release set its image came with (``current_sets``)
    release_sets: Mapping[tuple[str, str], str | None]

    @property
    def set_lines(self) -> tuple[str, ...]:
        """``set: production runs staging@0123456789ab (api, web)`` for the environments
        shown, as ``platform status`` prints them."""
        shown = set(self.environments)
        return tuple(set_lines({k: v for k, v in self.release_sets.items() if k[1] in shown}))

    @property
    def held(self) -> int:
        return sum(cell.held for row in self.rows for cell in row.cells)

    def only(self, environments: Iterable[str]) -> Matrix:
        """The columns of ``environments`` (known names), in pipeline order: what
        ``platform status -e`` shows; a cell still compares with the pipeline's stage before."""
        wanted = set(environments)
        keep = [index for index, name in enumerate(self.environments) if name in wanted]
        rows = tuple(
            MatrixRow(row.service, tuple(row.cells[index] for index in keep)) for row in self.rows
        )
        shown = tuple(self.environments[index] for index in keep)
        return Matrix(self.head, shown, rows, self.release_sets)


def absence(repo: Repo, service: str, environment: str) -> str | None:
    """Why ``service`` has no release in ``environment``, as the CLI says it (not deployed,
    or no image yet), or None when it has one."""
    try:
        repo.release(service, environment)
    except PlatformError as error:
        return error.message
    return None


def _cell(row: StatusRow, arrival: Arrival | None, release_set: str | None) -> Cell:
    committed = arrival is not None and arrival.image == row.image
    hold: Mapping[str, str] = row.hold or {}
    return Cell(
        deployed=True,
        tag=row.image.tag,
        short_digest=row.image.short_digest,
        reference=row.image.reference,
        previous_environment=row.previous_environment,
        differs_from_previous=row.differs_from_previous,
        held=row.hold is not None,
        hold_reason=str(hold["reason"]) if "reason" in hold else None,
        hold_by=hold.get("by"),
        hold_since=hold.get("since"),
        commit=arrival.commit if committed and arrival else None,
        since=arrival.time if committed and arrival else None,
        release_set=release_set,
    )


def matrix_view(snapshot: Snapshot) -> Matrix:
    """The matrix of ``platform status`` (its rows, its release-set lines), with the time
    each image reached its environment."""
    repo = snapshot.repo
    rows = status(repo)
    releases = [repo.release(row.service, row.environment) for row in rows]
    sets = current_sets(snapshot.git, releases)
    arrived = arrivals(snapshot, releases)
    cells = {
        (row.service, row.environment): _cell(
            row, arrived.get(values_path(release)), sets[(row.service, row.environment)]
        )
        for row, release in zip(rows, releases, strict=True)
    }
    environments = repo.environment_names
    return Matrix(
        head=snapshot.head,
        environments=environments,
        rows=tuple(
            MatrixRow(
                service,
                tuple(
                    cells.get((service, env))
                    or Cell(deployed=False, absent=absence(repo, service, env))
                    for env in environments
                ),
            )
            for service in repo.services
        ),
        release_sets=sets,
    )


def commit_base(repository_url: str) -> str | None:
    """``https://host/owner/name/commit/`` of an https repository URL (credentials dropped),
    the form the common forges serve a commit at; None for any other URL (ssh, a path)."""
    try:
        parts = urlsplit(repository_url)
        port = parts.port
    except ValueError:
        return None
    path = parts.path.rstrip("/").removesuffix(".git")
    if parts.scheme != "https" or not parts.hostname or path.count("/") < 2:
        return None
    host = parts.hostname + (f":{port}" if port else "")
    return f"https://{host}{path}/commit/"


@dataclass(frozen=True)
class HistoryRow:
    """One line of ``platform history``: a release or a hold event, at its commit."""

    commit: str
    url: str | None
    time: str
    author: str
    action: str
    rolled_back: bool = False
    tag: str | None = None
    short_digest: str | None = None
    origin: str | None = None
    release_set: str | None = None
    reason: str | None = None
    # the gates this release overrode, and the evidence of every gate (trailer form)
    overridden: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.commit[:12]

    def age(self, now: dt.datetime) -> Age:
        return Age.of(self.time, now)


@dataclass(frozen=True)
class EnvironmentHistory:
    environment: str
    rows: tuple[HistoryRow, ...]
    # why there is no history (the service is not deployed there): the CLI's message
    absent: str | None = None
    # whether older events exist than the ``HISTORY_LIMIT`` shown
    more: bool = False


@dataclass(frozen=True)
class ServiceHistory:
    service: str
    head: str
    environments: tuple[EnvironmentHistory, ...]
    limit: int


def _history_row(event: Entry | HoldEvent, bad: set[str], base: str | None) -> HistoryRow:
    url = f"{base}{event.commit}" if base else None
    if isinstance(event, HoldEvent):
        return HistoryRow(
            event.commit, url, event.time, event.author, event.action, reason=event.reason
        )
    return HistoryRow(
        commit=event.commit,
        url=url,
        time=event.time,
        author=event.author,
        action=event.action,
        rolled_back=event.commit in bad,
        tag=event.image.tag,
        short_digest=event.image.short_digest,
        origin=event.origin,
        release_set=event.release_set,
        reason=event.reason,
        overridden=tuple(event.overridden),
        gates=tuple(gate.trailer() for gate in event.gates),
    )


def environment_history(
    snapshot: Snapshot, release: Release, limit: int = HISTORY_LIMIT
) -> EnvironmentHistory:
    """``platform history SERVICE -e ENV -n limit``: the releases and holds, newest first in
    the branch's order, a release a later rollback replaced marked."""
    git = snapshot.git
    # one more than shown, so the oldest shown release knows whether a rollback replaced it
    entries = history(git, release, limit + 1)
    bad = rolled_back(entries)
    holds = list(islice(hold_events(git, release), limit + 1))
    events: list[Entry | HoldEvent] = [*entries[:limit], *holds[:limit]]
    if holds:  # in the branch's own order: commits of one second have no order by time
        order = {commit: index for index, commit in enumerate(first_parent_line(git, events))}
        events.sort(key=lambda event: order.get(event.commit, len(order)))
    more = len(entries) > limit or len(holds) > limit or len(events) > limit
    base = commit_base(snapshot.repo.repository_url)
    rows = tuple(_history_row(event, bad, base) for event in events[:limit])
    return EnvironmentHistory(release.environment.name, rows, more=more)


def service_view(snapshot: Snapshot, service: str) -> ServiceHistory:
    """A service's history in every environment, in pipeline order; an environment it is
    not deployed in says so with the CLI's message."""
    repo = snapshot.repo
    environments = []
    for environment in repo.environment_names:
        release = repo.releases.get((service, environment))
        if release is None:
            why = absence(repo, service, environment)
            environments.append(EnvironmentHistory(environment, (), absent=why))
        else:
            environments.append(environment_history(snapshot, release))
    return ServiceHistory(service, snapshot.head, tuple(environments), HISTORY_LIMIT)
