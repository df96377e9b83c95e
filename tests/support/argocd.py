"""A local server answering like Argo CD's REST API, from recorded responses.

``GET /api/v1/applications/{name}`` returns ``fixtures/argocd-application.json`` with the
test's sync state, health and revision filled in; ``.../resource-tree`` returns
``fixtures/argocd-resource-tree.json`` (see its note) with the Rollout's and AnalysisRun's
health of the Application's scenario (``TREES``). An unknown name gets Argo CD's gRPC-gateway
404 body, a wrong token its 401 body. ``on_refresh`` lets a test play a sync: after a
``?refresh=normal``, the Application reports the revision it returns, after some polls, in
the scenario ``on_sync`` names for that revision (a test reads the image git names there).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.http import Request

FIXTURES = Path(__file__).parents[1] / "gates/fixtures"
RECORDED = json.loads((FIXTURES / "argocd-application.json").read_text())
RECORDED_TREE = json.loads((FIXTURES / "argocd-resource-tree.json").read_text())
TOKEN = "argocd-test-token"
PREFIX = "/api/v1/applications/"
TREE_SUFFIX = "/resource-tree"

ABORTED_METRIC = 'Metric "error-ratio" assessed Failed due to failed (3) > failureLimit (2)'
# scenario -> (Application health, Rollout health, AnalysisRun health), each (status, message)
# as Argo CD's health checks of Argo Rollouts' kinds report them (fixture note)
TREES: dict[str, tuple[str, tuple[str, str], tuple[str, str]]] = {
    "healthy": (
        "Healthy",
        ("Healthy", ""),
        ("Healthy", "Analysis run completed successfully"),
    ),
    "progressing": (
        "Progressing",
        ("Progressing", "Waiting for roll out to finish: More replicas need to be updated"),
        ("Progressing", "Analysis run is running"),
    ),
    "analysis-failed": (  # the AnalysisRun failed; the Rollout has not aborted yet
        "Progressing",
        ("Progressing", "Waiting for roll out to finish: More replicas need to be updated"),
        ("Degraded", ABORTED_METRIC),
    ),
    "app-degraded": (  # another resource of the Application (a Deployment's deadline)
        "Degraded",
        ("Healthy", ""),
        ("Healthy", "Analysis run completed successfully"),
    ),
    "aborted": (
        "Degraded",
        ("Degraded", f"RolloutAborted: Rollout aborted update to revision 2: {ABORTED_METRIC}"),
        ("Degraded", ABORTED_METRIC),
    ),
}


@dataclass
class AppState:
    sync: str = "Synced"
    health: str = "Healthy"
    revision: str = ""
    image: str = ""
    tree: str = "healthy"
    # after a refresh: the revision Argo CD will sync to, and how many polls it takes
    syncing_to: str | None = None
    polls_left: int = 0


@dataclass
class FakeArgoCD:
    apps: dict[str, AppState] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    on_refresh: Callable[[str], str | None] = lambda _name: None
    on_sync: Callable[[str, str], str] = lambda _name, _revision: "healthy"
    polls_to_sync: int = 2

    def handle(self, request: Request) -> tuple[int, Any]:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            message = "invalid session: token signature is invalid"
            return 401, {"error": message, "code": 16, "message": message}
        path = request.path.removeprefix(PREFIX)
        tree = path.endswith(TREE_SUFFIX)
        name = path.removesuffix(TREE_SUFFIX)
        app = self.apps.get(name)
        if not request.path.startswith(PREFIX) or "/" in name or app is None:
            message = f'applications.argoproj.io "{name}" not found'
            return 404, {"error": message, "code": 5, "message": message}
        if tree:
            return 200, self.tree(app)
        if request.query.get("refresh"):
            target = self.on_refresh(name)
            if target and target != app.revision:
                app.syncing_to, app.polls_left = target, self.polls_to_sync
                app.sync, app.health = "OutOfSync", "Healthy"
        elif app.syncing_to:
            app.polls_left -= 1
            if app.polls_left <= 0:
                app.revision, app.syncing_to = app.syncing_to, None
                app.tree = self.on_sync(name, app.revision)
                app.sync, app.health = "Synced", TREES[app.tree][0]
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

    @staticmethod
    def tree(app: AppState) -> dict[str, Any]:
        """The recorded tree, its Rollout and newest AnalysisRun as the scenario has them (an
        earlier release's failed AnalysisRun stays in it, as Argo Rollouts keeps it)."""
        tree = copy.deepcopy(RECORDED_TREE)
        _, rollout, analysis = TREES[app.tree]
        runs = [node for node in tree["nodes"] if node["kind"] == "AnalysisRun"]
        newest = max(runs, key=lambda node: node["createdAt"])
        for node in tree["nodes"]:
            health = rollout if node["kind"] == "Rollout" else analysis if node is newest else None
            if health is not None:
                node["health"] = {
                    "status": health[0],
                    **({"message": health[1]} if health[1] else {}),
                }
            if "images" in node:
                node["images"] = [app.image]
        return tree
