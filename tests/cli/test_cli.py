"""The ``platform`` command through Typer's CliRunner and as a subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from platformctl.model import load_repo
from tests.conftest import edit_yaml, git, run_platform

Cli = Callable[..., Any]


def test_status_json_lists_every_release(repo: Path, cli: Cli) -> None:
    result = cli(repo, "status", "--output", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == len(load_repo(repo).releases)
    for row in rows:
        assert {"service", "environment", "repository", "tag", "digest"} <= set(row)
    dev = next(r for r in rows if (r["service"], r["environment"]) == ("user-service", "dev"))
    assert dev["digest"] is None
    staging = next(
        r for r in rows if (r["service"], r["environment"]) == ("user-service", "staging")
    )
    assert staging["digest"].startswith("sha256:")
    assert staging["differs_from_previous"] is True


def test_status_table_marks_differences(repo: Path, cli: Cli) -> None:
    result = cli(repo, "status")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "DEV", "STAGING", "PRODUCTION"]
    product = next(line for line in lines if line.startswith("product-service"))
    # 3.1.0 went from dev to staging already; production still runs 3.0.4
    assert "3.1.0 @" in product
    assert product.endswith("*")
    assert product.count("*") == 1


def test_status_markdown_and_env_filter(repo: Path, cli: Cli) -> None:
    result = cli(repo, "status", "--env", "production", "--output", "markdown")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "| service | production |"


def test_render_prints_manifests(repo: Path, cli: Cli) -> None:
    result = cli(repo, "render", "user-service", "--env", "production")
    assert result.exit_code == 0
    assert "kind: Rollout" in result.stdout  # production rolls out by canary
    addons = cli(repo, "render", "addons", "--env", "dev")
    assert addons.exit_code == 0
    assert "name: kube-prometheus-stack" in addons.stdout
    assert "@sha256:" in result.stdout
    argocd = cli(repo, "render", "argocd", "--env", "dev")
    assert "kind: ApplicationSet" in argocd.stdout


def test_verify_clean_exits_zero_with_json(repo: Path, cli: Cli) -> None:
    result = cli(repo, "verify", "--output", "json", "--no-cache")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    assert payload["findings"] == []


def test_verify_violation_exits_one_with_markdown(repo: Path, cli: Cli) -> None:
    edit_yaml(
        repo / "environments/production/auth-service.yaml",
        lambda data: data["image"].pop("digest"),
    )
    result = cli(repo, "verify", "--env", "production", "--output", "markdown")
    assert result.exit_code == 1
    assert "| production/auth-service | PLAT001 |" in result.stdout


def test_verify_filters_by_service(repo: Path, cli: Cli) -> None:
    result = cli(repo, "verify", "--service", "user-service", "--output", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["targets"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--env", "prod"], "unknown environment 'prod' (did you mean 'production'?)"),
        (["render", "user-servce", "--env", "dev"], "did you mean 'user-service'?"),
        (["render", "../../etc", "--env", "dev"], "not a valid service name"),
        (["verify", "--service", "nope"], "unknown service 'nope'"),
    ],
)
def test_bad_names_exit_two_with_one_line(
    repo: Path, cli: Cli, args: list[str], message: str
) -> None:
    result = cli(repo, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_schema_breaking_values_exit_two_and_write_nothing(repo: Path, cli: Cli) -> None:
    path = repo / "environments/dev/user-service.yaml"
    path.write_text(path.read_text() + "replica: 2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "typo")
    before = git(repo, "status", "--porcelain")
    result = cli(repo, "verify")
    assert result.exit_code == 2
    assert "environments/dev/user-service.yaml:" in result.stderr
    assert "replica: unknown key" in result.stderr
    assert git(repo, "status", "--porcelain") == before


def test_missing_chart_exits_two(repo: Path, cli: Cli) -> None:
    (repo / "charts/gitops/Chart.yaml").unlink()
    result = cli(repo, "verify")
    assert result.exit_code == 2
    assert "chart missing" in result.stderr


def test_not_a_repository_exits_two(tmp_path: Path, cli: Cli) -> None:
    result = cli(tmp_path, "status")
    assert result.exit_code == 2
    assert "no platform repository" in result.stderr


def test_debug_shows_the_traceback(repo: Path, cli: Cli) -> None:
    result = cli(repo, "--debug", "status", "--env", "qa")
    assert result.exit_code != 0
    assert result.exception is not None


def test_installed_command_runs_in_the_repository(repo: Path) -> None:
    result = run_platform(repo / "environments" / "dev", "status", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == len(load_repo(repo).releases)
    bad = run_platform(repo, "status", "--env", "qa")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown environment 'qa'")
