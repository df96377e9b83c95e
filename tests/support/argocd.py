"""A local server answering like Argo CD's REST API, from recorded responses.

``GET /api/v1/applications/{name}`` returns ``fixtures/argocd-application.json`` with the
test's sync state, health, revisions and last sync operation filled in; ``.../resource-tree``
returns ``fixtures/argocd-resource-tree.json`` (see its note) with the Rollout's health and the
AnalysisRuns of the Application's scenario (``TREES``). An unknown name gets Argo CD's
gRPC-gateway 404 body, a wrong token its 401 body.

``on_refresh`` lets a test play a sync, as Argo CD does it: after a ``?refresh=normal`` that
finds a new revision, ``status.sync.revision`` (the revision of the last *comparison*) names
it at once and the Application is OutOfSync, its health, tree and ``operationState`` still
the old release's; the next poll starts the sync operation (Running, ``startedAt`` later than
the last one's); ``polls_to_sync`` polls after the refresh it has Succeeded and the release
is in the scenario ``on_sync`` names for that revision (a test reads the image git names
there). ``pending_polls`` polls before that, the operation has ended but the Rollout is still
Progressing without an AnalysisRun of its own (a canary before its ``startingStep``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.http import Request

FIXTURES = Path(__file__).parents[1] / "gates/fixtures"
RECORDED = json.loads((FIXTURES / "argocd-application.json").read_text())
RECORDED_TREE = json.loads((FIXTURES / "argocd-resource-tree.json").read_text())
TOKEN = "argocd-test-token"
PREFIX = "/api/v1/applications/"
TREE_SUFFIX = "/resource-tree"
STARTED = RECORDED["status"]["operationState"]["startedAt"]

ABORTED_METRIC = 'Metric "error-ratio" assessed Failed due to failed (3) > failureLimit (2)'
# scenario -> (Application health, Rollout health, health of the release's AnalysisRun or None:
# it has none yet), each (status, message) as Argo CD's health checks of Argo Rollouts' kinds
# report them (fixture note)
TREES: dict[str, tuple[str, tuple[str, str], tuple[str, str] | None]] = {
    "healthy": (
        "Healthy",
        ("Healthy", ""),
        ("Healthy", "Analysis run completed successfully"),
    ),
    "pending": (  # applied; the canary has not reached the step that starts its analysis
        "Progressing",
        ("Progressing", "Waiting for roll out to finish: More replicas need to be updated"),
        None,
    ),
    "stable": (  # back on the stable ReplicaSet: no analysis runs for that
        "Healthy",
        ("Healthy", ""),
        None,
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


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def recorded_runs(analysis: tuple[str, str] | None) -> list[dict[str, Any]]:
    """The recorded AnalysisRuns, the newest (the release's) with ``analysis``'s health, or
    left out when ``analysis`` is None; the earlier release's stays Degraded."""
    runs = [node for node in RECORDED_TREE["nodes"] if node["kind"] == "AnalysisRun"]
    newest = max(runs, key=lambda node: node["createdAt"])
    kept = [copy.deepcopy(node) for node in runs if node is not newest or analysis is not None]
    for node in kept:
        if node["name"] == newest["name"] and analysis is not None:
            node["health"] = _health(analysis)
    return kept


def _health(health: tuple[str, str]) -> dict[str, str]:
    return {"status": health[0], **({"message": health[1]} if health[1] else {})}


@dataclass
class AppState:
    sync: str = "Synced"
    health: str = "Healthy"
    revision: str = ""  # status.sync.revision: what the last comparison was made against
    image: str = ""
    tree: str = "healthy"
    # the last sync operation: the revision it applied (default: ``revision``), its phase
    # and start; the AnalysisRuns in the tree (default: the recorded ones, per ``tree``)
    applied: str | None = None
    operation: str = "Succeeded"
    started: str = STARTED
    runs: list[dict[str, Any]] | None = None
    # after a refresh: the revision Argo CD will sync to, and how many polls it takes
    syncing_to: str | None = None
    polls_left: int = 0

    def __post_init__(self) -> None:
        if self.applied is None:
            self.applied = self.revision
        if self.runs is None:
            self.runs = recorded_runs(TREES[self.tree][2])


@dataclass
class FakeArgoCD:
    apps: dict[str, AppState] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    on_refresh: Callable[[str], str | None] = lambda _name: None
    on_sync: Callable[[str, str], str] = lambda _name, _revision: "healthy"
    polls_to_sync: int = 2
    pending_polls: int = 0

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
                app.revision, app.syncing_to = target, target
                app.polls_left = self.polls_to_sync + self.pending_polls
                app.sync = "OutOfSync"  # health, tree, operation: still the old release's
        elif app.syncing_to:
            self.sync_step(name, app)
        return 200, self.body(name, app)

    def sync_step(self, name: str, app: AppState) -> None:
        """One poll of the sync operation of ``app.syncing_to``: start it, end it (the
        release Progressing, its analysis not started), then the scenario's outcome."""
        target = app.syncing_to
        assert target is not None
        assert app.runs is not None
        app.polls_left -= 1
        if app.applied != target:
            app.applied, app.operation, app.sync, app.health = (
                target,
                "Running",
                "Synced",
                "Progressing",
            )
            app.started = _stamp(_time(app.started) + timedelta(minutes=10))
        if app.polls_left > self.pending_polls:
            return
        app.operation, app.tree = "Succeeded", "pending"
        if app.polls_left > 0:
            return
        app.syncing_to = None
        app.tree = self.on_sync(name, target)
        app.health = TREES[app.tree][0]
        analysis = TREES[app.tree][2]
        if analysis is not None:
            created = _stamp(_time(app.started) + timedelta(seconds=40))
            number = len(app.runs) + 1
            node = copy.deepcopy(max(app.runs, key=lambda run: run["createdAt"]))
            node.update(
                name=f"svc-a-754cb84d5-{number}-1",
                uid=f"{number:08d}-0000-4000-8000-000000000000",
                createdAt=created,
                health=_health(analysis),
            )
            app.runs.append(node)

    @staticmethod
    def body(name: str, app: AppState) -> dict[str, Any]:
        body = copy.deepcopy(RECORDED)
        body["metadata"]["name"] = name
        status = body["status"]
        status["sync"]["status"] = app.sync
        status["sync"]["revision"] = app.revision
        status["health"]["status"] = app.health
        operation = status["operationState"]
        operation["phase"] = app.operation
        operation["startedAt"] = app.started
        if app.operation == "Running":
            del operation["finishedAt"]
            operation["message"] = "one or more tasks are running"
        else:
            finished = _time(app.started) + timedelta(seconds=7)
            operation["finishedAt"] = _stamp(finished)
        operation["syncResult"]["revision"] = app.applied
        operation["operation"]["sync"]["revision"] = app.applied
        status["history"][0]["revision"] = app.applied
        status["summary"]["images"] = [app.image]
        return body

    @staticmethod
    def tree(app: AppState) -> dict[str, Any]:
        """The recorded tree, its Rollout as the scenario has it and the Application's
        AnalysisRuns (those of earlier releases stay in it, as Argo Rollouts keeps them)."""
        tree = copy.deepcopy(RECORDED_TREE)
        rollout = TREES[app.tree][1]
        nodes = [node for node in tree["nodes"] if node["kind"] != "AnalysisRun"]
        tree["nodes"] = nodes + copy.deepcopy(app.runs or [])
        for node in tree["nodes"]:
            if node["kind"] == "Rollout":
                node["health"] = _health(rollout)
            if "images" in node:
                node["images"] = [app.image]
        return tree
