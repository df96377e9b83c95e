"""A local server answering like Argo CD's REST API, from a recorded Application response.

``GET /api/v1/applications/{name}`` returns ``fixtures/argocd-application.json`` with the
test's sync state, health and revision filled in; an unknown name gets Argo CD's gRPC-gateway
404 body, a wrong token its 401 body. ``on_refresh`` lets a test play a sync: after a
``?refresh=normal``, the Application reports the revision it returns, after some polls.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.http import Request

RECORDED = json.loads(
    (Path(__file__).parents[1] / "gates/fixtures/argocd-application.json").read_text()
)
TOKEN = "argocd-test-token"


@dataclass
class AppState:
    sync: str = "Synced"
    health: str = "Healthy"
    revision: str = ""
    image: str = ""
    # after a refresh: the revision Argo CD will sync to, and how many polls it takes
    syncing_to: str | None = None
    polls_left: int = 0


@dataclass
class FakeArgoCD:
    apps: dict[str, AppState] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    on_refresh: Callable[[str], str | None] = lambda _name: None
    polls_to_sync: int = 2

    def handle(self, request: Request) -> tuple[int, Any]:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            message = "invalid session: token signature is invalid"
            return 401, {"error": message, "code": 16, "message": message}
        name = request.path.removeprefix("/api/v1/applications/")
        app = self.apps.get(name)
        if not request.path.startswith("/api/v1/applications/") or app is None:
            message = f'applications.argoproj.io "{name}" not found'
            return 404, {"error": message, "code": 5, "message": message}
        if request.query.get("refresh"):
            target = self.on_refresh(name)
            if target and target != app.revision:
                app.syncing_to, app.polls_left = target, self.polls_to_sync
                app.sync, app.health = "OutOfSync", "Healthy"
        elif app.syncing_to:
            app.polls_left -= 1
            if app.polls_left <= 0:
                app.revision, app.syncing_to = app.syncing_to, None
                app.sync, app.health = "Synced", "Healthy"
            else:
                app.sync, app.health = "Synced", "Progressing"
        return 200, self.body(name, app)

    @staticmethod
    def body(name: str, app: AppState) -> dict[str, Any]:
        body = copy.deepcopy(RECORDED)
        body["metadata"]["name"] = name
        status = body["status"]
        status["sync"]["status"] = app.sync
        status["sync"]["revision"] = app.revision
        status["health"]["status"] = app.health
        status["operationState"]["syncResult"]["revision"] = app.revision
        status["operationState"]["operation"]["sync"]["revision"] = app.revision
        status["history"][0]["revision"] = app.revision
        status["summary"]["images"] = [app.image]
        return body
