"""A local server speaking just enough of GitHub's REST API (pulls, review requests, issue
comments), with GitHub's documented response fields: for ``--pull-request`` of every command
that writes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.http import Request, serve

SLUG = "acme-corp/platform"


class FakeGitHub:
    """The pulls and issue-comments endpoints, with the requests they were sent."""

    def __init__(self) -> None:
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: list[tuple[int, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.authorization: set[str] = set()
        # GitHub refuses to open pull requests (as it does for a base branch that is gone)
        self.refuse_create = False
        # who may be asked to review (None: anyone); GitHub answers 422 for anyone else
        self.collaborators: set[str] | None = None

    def pull(self, number: int, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        return {
            "number": number,
            "state": "open",
            "title": title,
            "body": body,
            "html_url": f"https://github.com/{SLUG}/pull/{number}",
            "head": {"ref": head, "label": f"acme-corp:{head}"},
            "base": {"ref": base},
            "requested_reviewers": [],
            "requested_teams": [],
        }

    def request_reviewers(self, number: int, body: dict[str, Any]) -> tuple[int, Any]:
        """``POST /pulls/{n}/requested_reviewers``: users by login, teams by slug, added to
        those already requested (asking again is no error); 201 with the pull request."""
        users, teams = body.get("reviewers", []), body.get("team_reviewers", [])
        known = self.collaborators
        if known is not None and not {*users, *teams} <= known:
            return 422, {
                "message": "Reviews may only be requested from collaborators. One or more of "
                "the users or teams you specified is not a collaborator of the "
                f"{SLUG} repository."
            }
        pull = self.pulls[number]
        for login in users:
            if login not in [u["login"] for u in pull["requested_reviewers"]]:
                pull["requested_reviewers"].append({"login": login, "type": "User"})
        for slug in teams:
            if slug not in [t["slug"] for t in pull["requested_teams"]]:
                pull["requested_teams"].append({"slug": slug, "name": slug})
        return 201, pull

    def reviewers(self, number: int) -> set[str]:
        """Who pull request ``number`` asks: ``login`` and ``team:slug``."""
        pull = self.pulls[number]
        users = {u["login"] for u in pull["requested_reviewers"]}
        return users | {f"team:{t['slug']}" for t in pull["requested_teams"]}

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        self.requests.append((method, path))
        prefix = f"/repos/{SLUG}"
        assert path.startswith(prefix), path
        path = path[len(prefix) :]
        if method == "GET" and path == "/pulls":
            found = [p for p in self.pulls.values() if p["state"] == query["state"][0]]
            if "head" in query:
                found = [p for p in found if p["head"]["label"] == query["head"][0]]
            if "base" in query:
                found = [p for p in found if p["base"]["ref"] == query["base"][0]]
            return 200, found
        if method == "POST" and path == "/pulls" and self.refuse_create:
            return 422, {"message": "Validation Failed", "errors": [{"code": "invalid"}]}
        if method == "POST" and path == "/pulls":
            number = len(self.pulls) + 1
            self.pulls[number] = self.pull(
                number, body["head"], body["base"], body["title"], body["body"]
            )
            return 201, self.pulls[number]
        match = re.fullmatch(r"/pulls/(\d+)", path)
        if method == "PATCH" and match:
            self.pulls[int(match[1])].update(body)
            return 200, self.pulls[int(match[1])]
        match = re.fullmatch(r"/pulls/(\d+)/requested_reviewers", path)
        if method == "POST" and match:
            return self.request_reviewers(int(match[1]), body)
        match = re.fullmatch(r"/issues/(\d+)/comments", path)
        if method == "POST" and match:
            self.comments.append((int(match[1]), body["body"]))
            return 201, {"id": len(self.comments), "body": body["body"]}
        return 404, {"message": "Not Found"}


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The fake served on a loopback port, with the environment the tool reads it from."""
    state = FakeGitHub()

    def handle(request: Request) -> tuple[int, Any]:
        state.authorization.add(request.headers.get("authorization", ""))
        return state.handle(request.method, request.path, request.query, request.body)

    with serve(handle) as url:
        monkeypatch.setenv("GITHUB_API_URL", url)
        monkeypatch.setenv("GITHUB_TOKEN", "test-token")
        monkeypatch.setenv("GITHUB_REPOSITORY", SLUG)
        yield state
