"""A local server speaking just enough of GitHub's REST API (pulls, issue comments), with
GitHub's documented response fields: for ``--pull-request`` of every command that writes."""

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

    def pull(self, number: int, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        return {
            "number": number,
            "state": "open",
            "title": title,
            "body": body,
            "html_url": f"https://github.com/{SLUG}/pull/{number}",
            "head": {"ref": head, "label": f"acme-corp:{head}"},
            "base": {"ref": base},
        }

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
