"""`platform status --live`: the git matrix next to what each Argo CD reports (drift)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import edit_yaml, init_repo
from tests.support.argocd import AppState, FakeArgoCD

Cli = Callable[..., Any]
SERVICES = ("api-gateway", "auth-service", "product-service", "user-service")


@pytest.fixture
def live_repo(tmp_path: Path, argocd: tuple[FakeArgoCD, str]) -> Path:
    """Staging and production point at the local Argo CD; dev keeps its unreachable example."""
    fake, url = argocd
    repo = init_repo(tmp_path / "live")
    for env in ("staging", "production"):
        edit_yaml(
            repo / f"environments/{env}/environment.yaml",
            lambda data, env=env: data["endpoints"]["argocd"].update(url=url),
        )
        for service in SERVICES:
            fake.apps[f"{service}-{env}"] = AppState()
    return repo


def test_all_synced_shows_the_state_and_exits_zero(cli: Cli, live_repo: Path) -> None:
    result = cli(live_repo, "status", "--live", "--env", "staging", "--env", "production")
    assert result.exit_code == 0, result.output
    assert "[Synced/Healthy]" in result.output


def test_an_out_of_sync_application_is_drift(
    cli: Cli, live_repo: Path, argocd: tuple[FakeArgoCD, str]
) -> None:
    fake, _ = argocd
    fake.apps["user-service-production"] = AppState(sync="OutOfSync", health="Degraded")
    result = cli(live_repo, "status", "--live", "-e", "production", "--output", "json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    user = next(row for row in rows if row["service"] == "user-service")
    assert user["live"]["sync"] == "OutOfSync"
    assert "drift: not Synced in Argo CD: user-service-production" in result.stderr


def test_a_missing_token_or_an_unreachable_argocd_fails_loudly(
    cli: Cli, live_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARGOCD_TOKEN_DEV", raising=False)
    missing = cli(live_repo, "status", "--live", "-e", "dev")
    assert missing.exit_code == 2
    assert "ARGOCD_TOKEN_DEV" in missing.stderr
    # dev's example host does not resolve: a drift check must not pass on seeing nothing.
    monkeypatch.setenv("ARGOCD_TOKEN_DEV", "token")
    unreachable = cli(live_repo, "status", "--live", "-e", "dev")
    assert unreachable.exit_code == 3
    assert "Argo CD" in unreachable.stderr


def test_without_live_nothing_is_asked(
    cli: Cli, live_repo: Path, argocd: tuple[FakeArgoCD, str]
) -> None:
    fake, _ = argocd
    assert cli(live_repo, "status").exit_code == 0
    assert fake.requests == []
