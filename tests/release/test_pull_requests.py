"""--pull-request against a local server speaking GitHub's documented REST shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git
from tests.release.fleet import bare_remote, clone_of, make_pipeline
from tests.support import github as fake_github
from tests.support.github import SLUG, FakeGitHub

Cli = Callable[..., Any]
github = fake_github.github  # the fixture


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A clone of a remote whose svc-a and svc-b are newer in staging than in production."""
    fleet = make_pipeline(tmp_path / "repo", ["svc-a", "svc-b", "svc-c"], ["svc-a", "svc-b"])
    return clone_of(
        bare_remote(fleet, tmp_path / "remote.git"), tmp_path / "work", fleet, "dev"
    ).root


def test_pull_request_flow_opens_updates_and_supersedes(
    work: Path, cli: Cli, github: FakeGitHub
) -> None:
    head = git(work, "rev-parse", "HEAD")
    first = cli(work, "promote", "--all", "--to", "production", "--pull-request")
    assert first.exit_code == 0, first.output
    assert "opened pull request #1" in first.stdout
    assert github.pulls[1]["head"]["ref"] == "platform/promote/production/svc-a+svc-b"
    assert github.pulls[1]["base"]["ref"] == "main"
    assert github.authorization == {"Bearer test-token"}
    # the local branch is untouched; the change lives on the pushed branch
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "status", "--porcelain") == ""
    branch = "origin/platform/promote/production/svc-a+svc-b"
    git(work, "fetch", "-q")
    assert "Platform-Action: promote" in git(work, "log", "-1", "--format=%B", branch)

    second = cli(
        work, "promote", "svc-a", "--to", "production", "--pull-request", "--output", "json"
    )
    assert second.exit_code == 0, second.output
    payload = json.loads(second.stdout)
    assert payload["pull_request"]["number"] == 2
    assert payload["pull_request"]["superseded"] == [1]
    assert github.pulls[1]["state"] == "closed"
    assert github.comments == [(1, "Superseded by #2.")]

    third = cli(work, "promote", "svc-a", "--to", "production", "--pull-request")
    assert third.exit_code == 0
    assert "updated pull request #2" in third.stdout
    assert len(github.pulls) == 2


def test_pull_request_without_token_changes_nothing(
    work: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", SLUG)
    before = git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain")
    result = cli(work, "promote", "svc-a", "--to", "production", "--pull-request")
    assert result.exit_code == 3
    assert "GITHUB_TOKEN" in result.stderr
    assert (git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain")) == before


def test_repository_comes_from_the_remote_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from platformctl.errors import EnvironmentProblem
    from platformctl.github import repository_slug

    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    assert repository_slug("git@github.com:acme-corp/platform.git") == "acme-corp/platform"
    assert repository_slug("https://github.com/acme-corp/platform") == "acme-corp/platform"
    with pytest.raises(EnvironmentProblem, match="GITHUB_REPOSITORY"):
        repository_slug("/srv/git/platform.git")


def test_a_pull_request_github_refuses_leaves_no_branch_behind(
    work: Path, cli: Cli, github: FakeGitHub
) -> None:
    github.refuse_create = True
    before = git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain")
    result = cli(work, "promote", "svc-a", "--to", "production", "--pull-request")
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: pull request not opened:")
    assert "the branch was put back" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert git(work, "ls-remote", "origin", "refs/heads/platform/*") == ""
    assert (git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain")) == before
