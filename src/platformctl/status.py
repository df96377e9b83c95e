"""The services x environments matrix of images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from platformctl.argocd import AppState, ArgoCD, application_name
from platformctl.errors import EnvironmentProblem, InputError, PlatformError
from platformctl.model import Image, Repo


def same_artifact(left: Image, right: Image) -> bool:
    """Whether two images are the same build: by digest when both have one, else by tag."""
    if left.repository != right.repository:
        return False
    if left.digest and right.digest:
        return left.digest == right.digest
    return left.tag == right.tag


@dataclass(frozen=True)
class StatusRow:
    service: str
    environment: str
    image: Image
    previous_environment: str | None
    differs_from_previous: bool
    # the environment's hold on the service ({reason, by, since}), or None
    hold: Mapping[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "environment": self.environment,
            "repository": self.image.repository,
            "tag": self.image.tag,
            "digest": self.image.digest,
            "previous_environment": self.previous_environment,
            "differs_from_previous": self.differs_from_previous,
            "held": dict(self.hold) if self.hold is not None else None,
        }


def status(repo: Repo, environments: list[str] | None = None) -> list[StatusRow]:
    rows = []
    for release in repo.select(environments or ()):
        previous = repo.previous(release.environment.name)
        before = repo.releases.get((release.service, previous.name)) if previous else None
        rows.append(
            StatusRow(
                service=release.service,
                environment=release.environment.name,
                image=release.image,
                previous_environment=previous.name if previous else None,
                differs_from_previous=before is not None
                and not same_artifact(before.image, release.image),
                hold=release.environment.holds.get(release.service),
            )
        )
    return rows


@dataclass(frozen=True)
class Hold:
    service: str
    environment: str
    reason: str
    by: str | None
    since: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def holds(repo: Repo, environments: list[str] | None = None) -> list[Hold]:
    """Every hold, in pipeline order then by service (unknown environment names raise)."""
    wanted = {repo.environment(name).name for name in environments or ()}
    return [
        Hold(service, env.name, str(hold.get("reason", "")), hold.get("by"), hold.get("since"))
        for env in repo.environments
        if not wanted or env.name in wanted
        for service, hold in sorted(env.holds.items())
    ]


@dataclass(frozen=True)
class LiveStates:
    """What the environments' Argo CDs reported, and the ones that could not be asked."""

    states: dict[tuple[str, str], AppState]
    # environment -> the error that kept it from being asked
    unreachable: dict[str, PlatformError]


def live_states(repo: Repo, rows: list[StatusRow]) -> LiveStates:
    """What each environment's Argo CD reports for the rows' Applications.

    Environments without an Argo CD endpoint are left out. One that cannot be asked (no token,
    nothing answering) is recorded with its error and the others are still asked: the caller
    shows what it could see and fails, since a drift check must not pass on seeing nothing.
    """
    clients: dict[str, ArgoCD] = {}
    live = LiveStates({}, {})
    for row in rows:
        endpoint = repo.environment(row.environment).argocd
        if endpoint is None or row.environment in live.unreachable:
            continue
        try:
            client = clients.get(row.environment) or ArgoCD(endpoint)
            clients[row.environment] = client
            name = application_name(row.service, row.environment)
            live.states[(row.service, row.environment)] = client.application(name)
        except (EnvironmentProblem, InputError) as error:
            live.unreachable[row.environment] = error
    return live
