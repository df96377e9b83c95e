"""The ``platform`` command through Typer's CliRunner and as a subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.status import status
from tests.conftest import PROJECT_ROOT, edit_yaml, git, run_platform

Cli = Callable[..., Any]
# Names from this template's model, whatever it ships: the tests hold for a fork.
MODEL = load_repo(PROJECT_ROOT)
SERVICE = MODEL.services[0]
FIRST, LAST = MODEL.environments[0].name, MODEL.environments[-1].name


def test_status_json_lists_every_release(repo: Path, cli: Cli) -> None:
    result = cli(repo, "status", "--output", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == len(load_repo(repo).releases)
    model = load_repo(repo)
    for row in rows:
        assert {"service", "environment", "repository", "tag", "digest"} <= set(row)
        image = model.release(row["service"], row["environment"]).image
        assert (row["repository"], row["tag"], row["digest"]) == (
            image.repository,
            image.tag,
            image.digest,
        )


def test_status_table_marks_differences(repo: Path, cli: Cli) -> None:
    result = cli(repo, "status")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", *(e.name.upper() for e in MODEL.environments)]
    rows = status(load_repo(repo))
    for service in MODEL.services:
        line = next(line for line in lines if line.split()[0] == service)
        marked = sum(r.differs_from_previous for r in rows if r.service == service)
        assert line.count("*") == marked, line


def test_status_markdown_and_env_filter(repo: Path, cli: Cli) -> None:
    result = cli(repo, "status", "--env", LAST, "--output", "markdown")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"| service | {LAST} |"


def test_render_prints_manifests(repo: Path, cli: Cli) -> None:
    result = cli(repo, "render", SERVICE, "--env", LAST)
    assert result.exit_code == 0
    assert f'image: "{MODEL.release(SERVICE, LAST).image.reference}"' in result.stdout
    addons = cli(repo, "render", "addons", "--env", FIRST)
    assert addons.exit_code == 0
    assert "kind: Application\n" in addons.stdout
    argocd = cli(repo, "render", "argocd", "--env", FIRST)
    assert "kind: ApplicationSet" in argocd.stdout


def test_verify_clean_exits_zero_with_json(repo: Path, cli: Cli) -> None:
    result = cli(repo, "verify", "--output", "json", "--no-cache")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    assert payload["findings"] == []


def test_verify_violation_exits_one_with_markdown(repo: Path, cli: Cli) -> None:
    [env, *_] = [e.name for e in MODEL.environments if e.policy.require_digest]
    edit_yaml(repo / f"environments/{env}/{SERVICE}.yaml", lambda data: data["image"].pop("digest"))
    result = cli(repo, "verify", "--env", env, "--output", "markdown")
    assert result.exit_code == 1
    assert f"| {env}/{SERVICE} | PLAT001 |" in result.stdout


def test_verify_filters_by_service(repo: Path, cli: Cli) -> None:
    result = cli(repo, "verify", "--service", SERVICE, "--output", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["targets"] == len(MODEL.environments)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["status", "--env", f"{LAST}x"],
            f"unknown environment '{LAST}x' (did you mean '{LAST}'?)",
        ),
        (["render", f"{SERVICE}x", "--env", FIRST], f"did you mean '{SERVICE}'?"),
        (["render", "../../etc", "--env", FIRST], "not a valid service name"),
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
    path = repo / f"environments/{FIRST}/{SERVICE}.yaml"
    path.write_text(path.read_text() + "replica: 2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "typo")
    before = git(repo, "status", "--porcelain")
    result = cli(repo, "verify")
    assert result.exit_code == 2
    assert f"environments/{FIRST}/{SERVICE}.yaml:" in result.stderr
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
    result = cli(repo, "--debug", "status", "--env", "no-such-env")
    assert result.exit_code != 0
    assert result.exception is not None


def test_installed_command_runs_in_the_repository(repo: Path) -> None:
    result = run_platform(repo / "environments" / FIRST, "status", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == len(load_repo(repo).releases)
    bad = run_platform(repo, "status", "--env", "no-such-env")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown environment 'no-such-env'")
