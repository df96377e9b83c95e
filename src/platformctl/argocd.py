"""A thin adapter of Argo CD's REST API: read an Application and its resource tree, ask for a
refresh, wait for it.

``GET /api/v1/applications/{name}`` (``?refresh=normal`` asks Argo CD to re-read git now
instead of at its next poll) and ``GET /api/v1/applications/{name}/resource-tree`` (the live
objects with the health Argo CD's Lua checks gave them: that is where an aborted Rollout or a
failed AnalysisRun shows). The token is an Argo CD API token, read from the variable the
environment names (``ARGOCD_AUTH_TOKEN`` by default, as the argocd CLI).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from platformctl.errors import RefusedError
from platformctl.git import Git
from platformctl.httpapi import JsonApi, token_from
from platformctl.model import Endpoint

DEFAULT_TOKEN_ENV = "ARGOCD_AUTH_TOKEN"


def application_name(service: str, environment: str) -> str:
    """The name the gitops chart's ApplicationSet gives a service's Application."""
    return f"{service}-{environment}"


@dataclass(frozen=True)
class AppState:
    name: str
    sync: str
    health: str
    revision: str | None
    operation: str | None
    message: str | None
    # the last sync operation: the revision it applied, when it started, whether it ended
    applied: str | None = None
    started: str | None = None
    finished: bool = False

    @classmethod
    def from_api(cls, name: str, body: Any) -> AppState:
        status = body.get("status") or {} if isinstance(body, dict) else {}
        sync = status.get("sync") or {}
        health = status.get("health") or {}
        operation = status.get("operationState") or {}
        return cls(
            name=name,
            sync=sync.get("status") or "Unknown",
            health=health.get("status") or "Unknown",
            revision=sync.get("revision") or None,
            operation=operation.get("phase") or None,
            message=operation.get("message") or health.get("message") or None,
            applied=(operation.get("syncResult") or {}).get("revision") or None,
            started=operation.get("startedAt") or None,
            finished=bool(operation.get("finishedAt"))
            and operation.get("phase") not in ("Running", "Terminating"),
        )

    def runs(self, git: Git, commit: str) -> bool:
        """Whether the cluster runs ``commit``: Synced, and the last sync operation applied
        it and ended. ``revision`` alone does not say so: it is the revision of the last
        comparison, which names a new commit at once after a refresh, while the Application
        is OutOfSync and its health and tree are still the old release's."""
        return (
            self.sync == "Synced"
            and self.finished
            and bool(self.applied)
            and contains(git, self.applied or "", commit)
        )

    @property
    def settled(self) -> bool:
        return self.sync == "Synced" and self.health == "Healthy"

    def describe(self) -> str:
        at = f" at {self.revision[:12]}" if self.revision else ""
        operation = (
            f", last operation {self.operation}" if self.operation and not self.settled else ""
        )
        message = f": {self.message}" if self.message and not self.settled else ""
        return f"{self.sync}/{self.health}{at}{operation}{message}"


class ArgoCD:
    def __init__(self, endpoint: Endpoint) -> None:
        variable = endpoint.token_env or DEFAULT_TOKEN_ENV
        self.api = JsonApi("Argo CD", endpoint.url, token=token_from(variable, purpose="Argo CD"))

    def application(self, name: str, *, refresh: bool = False) -> AppState:
        params = {"refresh": "normal"} if refresh else None
        body = self.api.call("GET", f"/api/v1/applications/{quote(name)}", params=params)
        return AppState.from_api(name, body)

    def release_failure(self, name: str, state: AppState) -> Failure | None:
        """A Degraded Rollout, or AnalysisRun of the release the last sync applied, in the
        Application's resource tree: what says Argo Rollouts aborted that release."""
        tree = self.api.call("GET", f"/api/v1/applications/{quote(name)}/resource-tree")
        return tree_failure(tree, since=state.started)

    def failure(self, name: str, state: AppState) -> Failure | None:
        """``release_failure``, else the Application itself Degraded (any of its resources:
        what ``--wait`` also treats as the promotion failing)."""
        found = self.release_failure(name, state)
        if found is None and state.health == DEGRADED:
            return Failure("Application", name, " ".join((state.message or "").split()))
        return found


# Argo CD's health checks of Argo Rollouts' kinds (resource_customizations/argoproj.io/*/
# health.lua) report a Rollout that aborted (condition reason RolloutAborted), ran past its
# progress deadline or has an invalid spec, and an AnalysisRun whose phase is Failed or Error,
# all as health "Degraded"; the message says which.
ROLLOUTS_GROUP = "argoproj.io"
DEGRADED = "Degraded"


@dataclass(frozen=True)
class Failure:
    """A resource of an Application whose health says the release running there failed."""

    kind: str  # Rollout | AnalysisRun | Application
    name: str
    message: str

    def describe(self) -> str:
        return f"{self.kind} {self.name} {DEGRADED}" + (f": {self.message}" if self.message else "")


def tree_failure(tree: Any, *, since: str | None = None) -> Failure | None:
    """A Degraded Rollout of an ApplicationTree (``nodes``), else its newest AnalysisRun
    created at or after ``since`` (when the sync operation that applied the release started)
    if that is Degraded. Argo Rollouts keeps the failed runs of earlier releases
    (``unsuccessfulRunHistoryLimit``, 5 by default), and those say nothing of this one: until
    this release's analysis starts (a canary's ``startingStep``, a blue-green's
    ``postPromotionAnalysis``) the newest run is an earlier release's."""
    nodes = tree.get("nodes") if isinstance(tree, dict) else None
    rollouts, runs = [], []
    for node in nodes or []:
        if not isinstance(node, dict):
            continue
        # Argo CD 1.x nested the identity under resourceRef; 2.x and later inline it
        ref: dict[str, Any] = _mapping(node.get("resourceRef")) or node
        if ref.get("group") != ROLLOUTS_GROUP:
            continue
        health = _mapping(node.get("health"))
        failure = Failure(
            str(ref.get("kind")),
            str(ref.get("name") or "?"),
            " ".join(str(health.get("message") or "").split()),
        )
        if failure.kind == "Rollout" and health.get("status") == DEGRADED:
            rollouts.append(failure)
        elif failure.kind == "AnalysisRun" and _not_before(node.get("createdAt"), since):
            failed = health.get("status") == DEGRADED
            runs.append((str(node.get("createdAt") or ""), failed, failure))
    if rollouts:
        return rollouts[0]
    newest = max(runs, key=lambda run: run[0], default=None)
    return newest[2] if newest is not None and newest[1] else None


def _not_before(created: Any, since: str | None) -> bool:
    """Whether a node created at ``created`` (RFC 3339, as Kubernetes writes it) is not older
    than ``since``; a time missing or unreadable on either side does not exclude it."""
    try:
        return since is None or _instant(str(created)) >= _instant(since)
    except ValueError:
        return True


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class WaitTimedOut(RefusedError):
    """The Application did not become Synced and Healthy at the revision in time."""


class ReleaseFailed(RefusedError):
    """Argo CD synced the commit and its Rollout aborted or its analysis failed."""

    def __init__(self, name: str, commit: str, failure: Failure) -> None:
        super().__init__(
            f"{name} at {commit[:12]}: {failure.describe()}",
            hint=f"the commit is pushed; look at the {failure.kind} in Argo CD",
        )
        self.application = name
        self.commit = commit
        self.failure = failure

    @property
    def short(self) -> str:
        """One short line: which Application, at which commit, which resource."""
        what = f"{self.failure.kind} {self.failure.name}"
        return f"{self.application} at {self.commit[:12]}: {what} {DEGRADED}"


@dataclass(frozen=True)
class Waited:
    state: AppState
    seconds: float
    polls: int


def contains(git: Git, revision: str, commit: str) -> bool:
    """Whether ``revision`` (what Argo CD synced) includes ``commit`` (what we pushed)."""
    if revision == commit or git.ok("merge-base", "--is-ancestor", commit, revision):
        return True
    if git.ok("cat-file", "-e", f"{revision}^{{commit}}"):
        return False
    git.ok("fetch", "--quiet")  # a newer commit of someone else's: learn it, then ask again
    return git.ok("merge-base", "--is-ancestor", commit, revision)


def wait_until_synced(
    argocd: ArgoCD,
    name: str,
    *,
    git: Git,
    commit: str,
    timeout: float,
    interval: float = 2.0,
) -> Waited:
    """Refresh, then poll until Synced and Healthy at ``commit`` or later; else time out.
    Once a sync operation applied ``commit`` (``AppState.runs``) and it is not yet Healthy,
    each poll also reads the resource tree: a Degraded Rollout or AnalysisRun of this release,
    or the Application Degraded, ends the wait (``ReleaseFailed``)."""
    started = time.monotonic()
    state = argocd.application(name, refresh=True)
    polls = 1
    while True:
        arrived = bool(state.revision) and contains(git, state.revision or "", commit)
        if arrived and state.settled:
            return Waited(state, time.monotonic() - started, polls)
        failure = argocd.failure(name, state) if state.runs(git, commit) else None
        if failure is not None:
            raise ReleaseFailed(name, commit, failure)
        if time.monotonic() - started >= timeout:
            raise WaitTimedOut(
                f"{name} was not Synced and Healthy at {commit[:12]} after {timeout:.0f} s; "
                f"last seen: {state.describe()}",
                hint="the commit is pushed; look at the Application in Argo CD",
            )
        time.sleep(interval)
        state = argocd.application(name)
        polls += 1
