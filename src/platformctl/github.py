"""A thin GitHub REST adapter: open or update a promotion pull request, close superseded ones.

Configuration comes from the environment GitHub Actions already sets: ``GITHUB_TOKEN``,
``GITHUB_REPOSITORY`` (else parsed from the remote URL) and ``GITHUB_API_URL``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from platformctl.errors import EnvironmentProblem
from platformctl.httpapi import JsonApi

_REMOTE = re.compile(r"github\.com[:/](?P<slug>[^/]+/[^/]+?)(?:\.git)?/?$")


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    created: bool
    superseded: tuple[int, ...] = ()
    # the change-risk class of its body and the reviewers requested for it
    risk: str | None = None
    reviewers: tuple[str, ...] = ()


def repository_slug(remote_url: str) -> str:
    slug = os.environ.get("GITHUB_REPOSITORY")
    if slug:
        return slug
    match = _REMOTE.search(remote_url.strip())
    if match is None:
        raise EnvironmentProblem(
            f"cannot tell the GitHub repository from the remote '{remote_url.strip()}'",
            hint="set GITHUB_REPOSITORY=owner/name",
        )
    return match["slug"]


class GitHub:
    def __init__(self, slug: str, token: str | None = None, api_url: str | None = None) -> None:
        token = token or os.environ.get("GITHUB_TOKEN")
        if not token:
            raise EnvironmentProblem("--pull-request needs a GitHub token", hint="set GITHUB_TOKEN")
        self.slug = slug
        self.api = JsonApi(
            "GitHub API",
            api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com",
            token=token,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            timeout=20.0,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.api.call(method, f"/repos/{self.slug}{path}", **kwargs)

    def open_or_update(
        self,
        *,
        branch: str,
        base: str,
        title: str,
        body: str,
        supersedes_prefix: str,
        services: set[str],
    ) -> PullRequest:
        """One PR per branch: update it in place if open, else create it; then close the
        open PRs for the same environment and services that this one supersedes."""
        owner = self.slug.split("/")[0]
        existing = self._call(
            "GET", "/pulls", params={"head": f"{owner}:{branch}", "state": "open"}
        )
        if existing:
            number = int(existing[0]["number"])
            pull = self._call("PATCH", f"/pulls/{number}", json={"title": title, "body": body})
            created = False
        else:
            pull = self._call(
                "POST", "/pulls", json={"title": title, "head": branch, "base": base, "body": body}
            )
            number, created = int(pull["number"]), True
        superseded = []
        for other in self._call("GET", "/pulls", params={"state": "open", "base": base}) or []:
            ref = str(other["head"]["ref"])
            if other["number"] == number or not ref.startswith(supersedes_prefix):
                continue
            if services & set(ref.removeprefix(supersedes_prefix).split("+")):
                self._call(
                    "POST",
                    f"/issues/{other['number']}/comments",
                    json={"body": f"Superseded by #{number}."},
                )
                self._call("PATCH", f"/pulls/{other['number']}", json={"state": "closed"})
                superseded.append(int(other["number"]))
        return PullRequest(number, str(pull["html_url"]), created, tuple(superseded))

    def request_reviewers(self, number: int, reviewers: Sequence[str]) -> None:
        """Ask ``@login`` users and ``@org/team`` teams to review pull request ``number``.

        GitHub keeps a request made before, so a re-run asks again at no cost."""
        users = [r.removeprefix("@") for r in reviewers if "/" not in r]
        teams = [r.split("/", 1)[1] for r in reviewers if "/" in r]
        if users or teams:
            self._call(
                "POST",
                f"/pulls/{number}/requested_reviewers",
                json={"reviewers": users, "team_reviewers": teams},
            )

    def upsert_comment(self, number: int, marker: str, body: str) -> str:
        """Keep one comment per ``marker`` on a pull request: edit it if there, else add it.

        A re-run of the pipeline updates its report instead of adding another.
        """
        tag = f"<!-- platform:{marker} -->"
        text = f"{tag}\n{body}"
        for comment in self._call("GET", f"/issues/{number}/comments", params={"per_page": 100}):
            if tag in str(comment.get("body", "")):
                updated = self._call(
                    "PATCH", f"/issues/comments/{comment['id']}", json={"body": text}
                )
                return str(updated["html_url"])
        created = self._call("POST", f"/issues/{number}/comments", json={"body": text})
        return str(created["html_url"])

    def upsert_issue(self, title: str, label: str, body: str) -> tuple[int, bool]:
        """One open issue per ``label`` (drift): update its text, or open it. (number, created)."""
        found = self._call("GET", "/issues", params={"labels": label, "state": "open"})
        issues = [issue for issue in found or [] if "pull_request" not in issue]
        if issues:
            number = int(issues[0]["number"])
            self._call("PATCH", f"/issues/{number}", json={"title": title, "body": body})
            return number, False
        created = self._call(
            "POST", "/issues", json={"title": title, "body": body, "labels": [label]}
        )
        return int(created["number"]), True
