"""`platform ci`: bad input is refused with one line and the right exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from platformctl.cli import app


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "verify.md"
    path.write_text("| target | result |\n")
    return path


def _run(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> tuple[int, str]:
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["ci", *args])
    return result.exit_code, result.stderr


def test_without_the_repository_it_says_which_variable(
    monkeypatch: pytest.MonkeyPatch, report: Path
) -> None:
    code, err = _run(
        monkeypatch,
        {"GITHUB_TOKEN": "t"},
        "comment",
        "--pull-request",
        "3",
        "--marker",
        "verify",
        "--file",
        str(report),
    )
    assert code == 2
    assert "GITHUB_REPOSITORY=owner/name" in err


def test_without_a_token_it_is_an_environment_problem(
    monkeypatch: pytest.MonkeyPatch, report: Path
) -> None:
    code, err = _run(
        monkeypatch,
        {"GITHUB_REPOSITORY": "acme-corp/platform"},
        "issue",
        "--title",
        "Drift",
        "--label",
        "drift",
        "--file",
        str(report),
    )
    assert code == 3
    assert "GITHUB_TOKEN" in err


def test_a_missing_report_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {"GITHUB_REPOSITORY": "acme-corp/platform", "GITHUB_TOKEN": "t"}
    code, err = _run(
        monkeypatch,
        env,
        "issue",
        "--title",
        "Drift",
        "--label",
        "drift",
        "--file",
        str(tmp_path / "none.md"),
    )
    assert code == 2
    assert "cannot read the report" in err


def test_a_pull_request_number_must_be_positive(
    monkeypatch: pytest.MonkeyPatch, report: Path
) -> None:
    env = {"GITHUB_REPOSITORY": "acme-corp/platform", "GITHUB_TOKEN": "t"}
    code, _ = _run(
        monkeypatch,
        env,
        "comment",
        "--pull-request",
        "0",
        "--marker",
        "verify",
        "--file",
        str(report),
    )
    assert code == 2
