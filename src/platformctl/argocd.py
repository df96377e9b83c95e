"""A thin adapter of Argo CD's REST API: read an Application, ask for a refresh, wait for it.

Only ``GET /api/v1/applications/{name}`` is used (``?refresh=normal`` asks Argo CD to
re-read git now instead of at its next poll). The token is an Argo CD API token, read from
the variable the environment names (``ARGOCD_AUTH_TOKEN`` by default, as the argocd CLI).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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


class WaitTimedOut(RefusedError):
    """The Application did not become Synced and Healthy at the revision in time."""


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
    """Refresh, then poll until Synced and Healthy at ``commit`` or later; else time out."""
    started = time.monotonic()
    state = argocd.application(name, refresh=True)
    polls = 1
    while True:
        if state.settled and state.revision and contains(git, state.revision, commit):
            return Waited(state, time.monotonic() - started, polls)
        if time.monotonic() - started >= timeout:
            raise WaitTimedOut(
                f"{name} was not Synced and Healthy at {commit[:12]} after {timeout:.0f} s; "
                f"last seen: {state.describe()}",
                hint="the commit is pushed; look at the Application in Argo CD",
            )
        time.sleep(interval)
        state = argocd.application(name)
        polls += 1
