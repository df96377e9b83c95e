"""`platform status --live`: the git matrix next to what each Argo CD reports (drift).

The repository is a copy of this one; the services and environments are read from its model,
so the tests hold whatever this template ships. The first stage keeps its example Argo CD
endpoint, whose host does not resolve; the others point at a local stand-in."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from platformctl.argocd import application_name
from platformctl.model import load_repo
from tests.conftest import edit_yaml, init_repo
from tests.support.argocd import TOKEN, AppState, FakeArgoCD

Cli = Callable[..., Any]


@pytest.fixture
def live_repo(
    tmp_path: Path, argocd: tuple[FakeArgoCD, str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    fake, url = argocd
    repo = init_repo(tmp_path / "live")
    model = load_repo(repo)
    first, *others = (env.name for env in model.environments)
    edit_yaml(
        repo / f"environments/{first}/environment.yaml",
        lambda data: data["endpoints"]["argocd"].update(tokenEnv="ARGOCD_TOKEN_UNREACHABLE"),
    )
    monkeypatch.setenv("ARGOCD_TOKEN_UNREACHABLE", "token")
    for env in others:
        edit_yaml(
            repo / f"environments/{env}/environment.yaml",
            lambda data: data["endpoints"]["argocd"].update(url=url, tokenEnv="ARGOCD_TOKEN_T"),
        )
        for service in model.services:
            fake.apps[application_name(service, env)] = AppState()
    monkeypatch.setenv("ARGOCD_TOKEN_T", TOKEN)
    return repo


def stages(repo: Path) -> list[str]:
    return [env.name for env in load_repo(repo).environments]


def test_all_synced_shows_the_state_and_exits_zero(cli: Cli, live_repo: Path) -> None:
    args = [arg for env in stages(live_repo)[1:] for arg in ("--env", env)]
    result = cli(live_repo, "status", "--live", *args)
    assert result.exit_code == 0, result.output
    assert "[Synced/Healthy]" in result.output


def test_an_out_of_sync_application_is_drift(
    cli: Cli, live_repo: Path, argocd: tuple[FakeArgoCD, str]
) -> None:
    fake, _ = argocd
    last = stages(live_repo)[-1]
    service = load_repo(live_repo).services[0]
    fake.apps[application_name(service, last)] = AppState(sync="OutOfSync", health="Degraded")
    result = cli(live_repo, "status", "--live", "-e", last, "--output", "json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    row = next(row for row in rows if row["service"] == service)
    assert row["live"]["sync"] == "OutOfSync"
    assert f"drift: not Synced in Argo CD: {application_name(service, last)}" in result.stderr


def test_a_missing_token_or_an_unreachable_argocd_fails_loudly(
    cli: Cli, live_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = stages(live_repo)[0]
    monkeypatch.delenv("ARGOCD_TOKEN_UNREACHABLE")
    missing = cli(live_repo, "status", "--live", "-e", first)
    assert missing.exit_code == 2
    assert "ARGOCD_TOKEN_UNREACHABLE" in missing.stderr
    # the example host does not resolve: a drift check must not pass on seeing nothing.
    monkeypatch.setenv("ARGOCD_TOKEN_UNREACHABLE", "token")
    unreachable = cli(live_repo, "status", "--live", "-e", first)
    assert unreachable.exit_code == 3
    assert "Argo CD" in unreachable.stderr


def test_what_could_be_reached_is_shown_and_the_rest_marked(cli: Cli, live_repo: Path) -> None:
    first, *others = stages(live_repo)
    table = cli(live_repo, "status", "--live")
    assert table.exit_code == 3
    assert table.stdout.count("[Synced/Healthy]") == len(others) * len(
        load_repo(live_repo).services
    )
    assert "[unreachable]" in table.stdout
    [line] = table.stderr.splitlines()
    assert line.startswith(f"error: live state unknown for {first} ")
    rows = json.loads(cli(live_repo, "status", "--live", "-o", "json").stdout)
    by_env = {row["environment"]: row["live"] for row in rows}
    assert "unreachable" in by_env[first]
    assert all(by_env[env]["sync"] == "Synced" for env in others)


def test_without_live_nothing_is_asked(
    cli: Cli, live_repo: Path, argocd: tuple[FakeArgoCD, str]
) -> None:
    fake, _ = argocd
    assert cli(live_repo, "status").exit_code == 0
    assert fake.requests == []
