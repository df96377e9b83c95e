"""``platform new service`` and the promotion that gives a later stage its first image line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from platformctl.model import load_repo
from tests.conftest import git

Cli = Callable[..., Any]


def snapshot(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "diff", "--cached"),
    )


def _drop_image_line(repo: Path, relative: str) -> None:
    path = repo / relative
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("image:")))
    git(repo, "commit", "-qam", "no image yet")


def test_a_promotion_creates_the_missing_image_line(repo: Path, cli: Cli) -> None:
    _drop_image_line(repo, "environments/production/user-service.yaml")
    staging = load_repo(repo).release("user-service", "staging").image
    result = cli(repo, "promote", "user-service", "--to", "production")
    assert result.exit_code == 0, result.output
    text = (repo / "environments/production/user-service.yaml").read_text()
    assert text.count("image:") == 1
    stat = git(repo, "show", "--numstat", "--format=", "HEAD")
    assert stat.split() == ["1", "0", "environments/production/user-service.yaml"]
    assert load_repo(repo).release("user-service", "production").image == staging
