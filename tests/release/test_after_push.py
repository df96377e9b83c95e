"""Once a commit is pushed, the output says what and where, whatever fails after it: a --wait
that times out exits 4 naming the step, the webhook hears of it, a bad webhook URL is a
warning, and no credential of a URL is printed or posted."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from platformctl.argocd import application_name
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, bare_remote, clone_of, make_fleet
from tests.support.argocd import TOKEN, AppState, FakeArgoCD
from tests.support.http import serve, webhook_receiver

Cli = Callable[..., Any]
SECRET = "hunter2"


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeArgoCD, str, list[Any]]]:
    """An Argo CD whose Applications never reach a new commit, and a webhook receiver."""
    fake = FakeArgoCD()
    with serve(fake.handle) as argocd, webhook_receiver() as (webhook, received):
        monkeypatch.setenv("ARGOCD_TOKEN_TEST", TOKEN)
        monkeypatch.setenv("PLATFORM_WEBHOOK_TEST", f"{webhook}/services/T0/B0/{SECRET}")
        yield fake, argocd, received


@pytest.fixture
def work(tmp_path: Path, hooks: tuple[FakeArgoCD, str, list[Any]]) -> Fleet:
    fake, argocd, _ = hooks
    fleet = make_fleet(tmp_path / "origin", ["alpha"])
    fleet.set_image(fleet.stages[0], "alpha", 2)
    target = fleet.stages[1]

    def endpoints(settings: Any) -> None:
        settings["endpoints"]["argocd"] = {"url": argocd, "tokenEnv": "ARGOCD_TOKEN_TEST"}
        settings["notifications"] = {"webhook": {"urlEnv": "PLATFORM_WEBHOOK_TEST"}}

    edit_yaml(fleet.root / "environments" / target / "environment.yaml", endpoints)
    git(fleet.root, "commit", "-qam", "endpoints of the test")
    fake.apps[application_name("alpha", target)] = AppState(revision="0" * 40)
    remote = bare_remote(fleet, tmp_path / "remote.git")
    return clone_of(remote, tmp_path / "work", fleet, "work")


def test_a_wait_that_fails_after_the_push_says_what_was_pushed_and_exits_four(
    work: Fleet, cli: Cli, hooks: tuple[FakeArgoCD, str, list[Any]]
) -> None:
    _, _, received = hooks
    result = cli(
        work.root,
        "promote",
        "alpha",
        "--to",
        work.stages[1],
        "--push",
        "--wait",
        "--wait-timeout",
        "0",
        "--reason",
        f"see https://bot:{SECRET}@ci.example/run/1",
        "--force",
    )
    assert result.exit_code == 4, result.output
    tip = git(work.root, "rev-parse", "origin/main").strip()
    assert f"committed {tip[:12]} and pushed to origin/main" in result.stdout
    assert result.stderr.startswith(f"error: pushed {tip[:12]} to origin/main, then --wait")
    assert len(result.stderr.splitlines()) == 1
    (posted,) = received
    assert "FAILED" in posted["text"]
    assert SECRET not in json.dumps(posted) + result.output
    assert SECRET not in git(work.root, "log", "-1", "--format=%B")


def test_json_reports_the_push_and_the_failed_step(work: Fleet, cli: Cli) -> None:
    args = ("promote", "alpha", "--to", work.stages[1], "--push", "--wait", "--wait-timeout", "0")
    result = cli(work.root, *args, "--output", "json")
    assert result.exit_code == 4
    payload = json.loads(result.stdout)
    assert payload["pushed"] is True
    assert payload["branch"] == "origin/main"
    assert payload["commit"] == git(work.root, "rev-parse", "origin/main").strip()
    assert "--wait failed" in payload["error"]


def test_a_bad_webhook_url_is_a_warning(
    work: Fleet, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_WEBHOOK_TEST", f"ht!tp://user:{SECRET}@[::1")
    result = cli(work.root, "promote", "alpha", "--to", work.stages[1], "--push")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: notification failed")
    assert len(result.stderr.splitlines()) == 1
    assert SECRET not in result.output


def test_a_credential_in_the_remote_url_is_never_printed(work: Fleet, cli: Cli) -> None:
    git(work.root, "remote", "set-url", "origin", f"https://ci:{SECRET}@127.0.0.1:9/x.git")
    before = git(work.root, "rev-parse", "HEAD"), git(work.root, "status", "--porcelain")
    result = cli(work.root, "promote", "alpha", "--to", work.stages[1], "--push")
    assert result.exit_code == 3, result.output
    assert SECRET not in result.output
    assert len(result.stderr.splitlines()) == 1
    assert (git(work.root, "rev-parse", "HEAD"), git(work.root, "status", "--porcelain")) == before


@pytest.mark.parametrize("in_ci", [False, True], ids=["laptop", "ci"])
def test_an_unset_webhook_variable_warns_only_in_ci(
    work: Fleet, cli: Cli, monkeypatch: pytest.MonkeyPatch, in_ci: bool
) -> None:
    monkeypatch.delenv("PLATFORM_WEBHOOK_TEST")
    monkeypatch.delenv("CI", raising=False)
    if in_ci:
        monkeypatch.setenv("CI", "true")
    result = cli(work.root, "promote", "alpha", "--to", work.stages[1], "--push")
    assert result.exit_code == 0, result.output
    expected = ["warning: not notified: $PLATFORM_WEBHOOK_TEST is not set"] if in_ci else []
    assert result.stderr.splitlines() == expected
