"""`promote --push --wait` against the Argo CD stand-in: a release whose Rollout aborts (or
whose analysis fails) once Argo CD runs it is rolled back and held in git, pushed, waited for
and notified, and the promotion exits 1 naming both commits; a healthy one is left alone, a
Progressing one past the timeout is the timeout (exit 4), `--no-auto-rollback` only reports.
The stand-in plays Argo CD rendering the pushed revision: the scenario of a revision is read
from the image git names there, as the cluster would run it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from platformctl.argocd import application_name
from platformctl.imagefile import image_of
from tests.cli.test_bad_input import state
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, bare_remote, clone_of, image, make_fleet, remote_holds
from tests.support.argocd import TOKEN, AppState, FakeArgoCD
from tests.support.http import serve, webhook_receiver

Cli = Callable[..., Any]
BAD = 2  # the build whose canary fails in the target


@dataclass
class Stage:
    work: Fleet
    remote: Path
    fake: FakeArgoCD
    posted: list[Any]

    @property
    def target(self) -> str:
        return self.work.stages[-1]

    def tip(self) -> str:
        return git(self.remote, "rev-parse", "main").strip()

    def image_at(self, revision: str) -> str | None:
        text = git(self.remote, "show", f"{revision}:environments/{self.target}/alpha.yaml")
        found = image_of(text)
        return found.tag if found else None

    def fails_with(self, scenario: str) -> None:
        """Argo CD runs whatever git names; build BAD ends in ``scenario``."""
        bad = image("alpha", BAD).tag
        self.fake.on_sync = lambda _name, rev: scenario if self.image_at(rev) == bad else "healthy"


@pytest.fixture
def stage(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stage]:
    """alpha: build 1 in the last stage, build BAD in the one before; the last stage's Argo CD
    syncs every refresh to the remote's tip; a webhook receiver."""
    fake = FakeArgoCD(polls_to_sync=1)
    with serve(fake.handle) as argocd, webhook_receiver() as (webhook, posted):
        monkeypatch.setenv("ARGOCD_TOKEN_TEST", TOKEN)
        monkeypatch.setenv("PLATFORM_WEBHOOK_TEST", f"{webhook}/hook")
        fleet = make_fleet(tmp_path / "origin", ["alpha"])
        fleet.set_image(fleet.stages[-2], "alpha", BAD)

        def endpoints(settings: Any) -> None:
            settings["endpoints"]["argocd"] = {"url": argocd, "tokenEnv": "ARGOCD_TOKEN_TEST"}
            settings["notifications"] = {"webhook": {"urlEnv": "PLATFORM_WEBHOOK_TEST"}}

        edit_yaml(fleet.root / "environments" / fleet.stages[-1] / "environment.yaml", endpoints)
        git(fleet.root, "commit", "-qam", "endpoints of the test")
        remote = bare_remote(fleet, tmp_path / "remote.git")
        work = clone_of(remote, tmp_path / "work", fleet, "work")
        result = Stage(work, remote, fake, posted)
        name = application_name("alpha", result.target)
        fake.apps[name] = AppState(revision=result.tip())
        fake.on_refresh = lambda _name: result.tip()
        yield result


def promote(stage: Stage, cli: Cli, *extra: str) -> Any:
    return cli(
        stage.work.root,
        "promote",
        "alpha",
        "--to",
        stage.target,
        "--push",
        "--wait",
        "--wait-interval",
        "0.01",
        *extra,
    )


# scenario -> what the one line names as failed
FAILED_KIND = {
    "aborted": "Rollout",
    "analysis-failed": "AnalysisRun",
    "app-degraded": "Application",
}


@pytest.mark.parametrize("scenario", list(FAILED_KIND))
def test_a_failed_canary_is_rolled_back_and_held_in_git(
    stage: Stage, cli: Cli, scenario: str
) -> None:
    stage.fails_with(scenario)
    before = stage.tip()
    result = promote(stage, cli)
    assert result.exit_code == 1, result.output
    rollback = stage.tip()
    promotion = git(stage.remote, "rev-parse", f"{rollback}^").strip()
    assert git(stage.remote, "rev-parse", f"{promotion}^").strip() == before
    assert stage.image_at(promotion) == image("alpha", BAD).tag
    assert stage.image_at(rollback) == image("alpha", 1).tag
    assert remote_holds(stage.remote, rollback, stage.target) == {"alpha"}
    message = git(stage.remote, "log", "-1", "--format=%B", rollback)
    assert "Platform-Action: rollback" in message
    assert "automatic rollback: alpha-" in message
    # both commits in the report and in the one line on stderr
    assert f"committed {promotion[:12]} and pushed to origin/main" in result.stdout
    assert f"rolled back automatically: committed {rollback[:12]}" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: pushed {promotion[:12]} to origin/main, then ")
    assert f"rolled back by {rollback[:12]}" in line
    assert f": {FAILED_KIND[scenario]} " in line
    # Argo CD was followed to Healthy at the rollback; the webhook heard of both
    assert stage.fake.apps[application_name("alpha", stage.target)].revision == rollback
    done, failed = (post["text"] for post in stage.posted)
    assert done.startswith("✅ rollback(alpha)")
    assert failed.startswith("❌ promote(alpha)")
    assert git(stage.work.root, "status", "--porcelain") == ""


def test_json_names_the_promotion_and_the_rollback(stage: Stage, cli: Cli) -> None:
    stage.fails_with("aborted")
    result = promote(stage, cli, "-o", "json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    rollback = stage.tip()
    assert payload["commit"] == git(stage.remote, "rev-parse", f"{rollback}^").strip()
    assert payload["rollback"]["commit"] == rollback
    assert payload["rollback"]["pushed"] is True
    assert payload["rollback"]["holds"] == {"alpha": True}
    assert payload["rollback"]["waited"][0]["state"].startswith("Synced/Healthy")
    assert "rolled back by" in payload["error"]


def test_a_healthy_release_is_left_alone(stage: Stage, cli: Cli) -> None:
    stage.fails_with("aborted")
    stage.fake.on_sync = lambda _name, _revision: "healthy"
    result = promote(stage, cli)
    assert result.exit_code == 0, result.output
    assert stage.image_at(stage.tip()) == image("alpha", BAD).tag
    assert remote_holds(stage.remote, stage.tip(), stage.target) == set()
    assert "rolled back" not in result.stdout


def test_progressing_past_the_timeout_is_the_timeout_not_a_rollback(stage: Stage, cli: Cli) -> None:
    stage.fails_with("progressing")
    result = promote(stage, cli, "--wait-timeout", "0.3")
    assert result.exit_code == 4, result.output
    assert stage.image_at(stage.tip()) == image("alpha", BAD).tag
    assert remote_holds(stage.remote, stage.tip(), stage.target) == set()
    (line,) = result.stderr.splitlines()
    assert "--wait failed" in line
    assert "Progressing" in line


def test_no_auto_rollback_reports_the_failure_and_what_to_run(stage: Stage, cli: Cli) -> None:
    stage.fails_with("aborted")
    result = promote(stage, cli, "--no-auto-rollback")
    assert result.exit_code == 4, result.output
    assert stage.image_at(stage.tip()) == image("alpha", BAD).tag
    assert remote_holds(stage.remote, stage.tip(), stage.target) == set()
    (line,) = result.stderr.splitlines()
    assert "Rollout svc-a Degraded: RolloutAborted" in line
    assert f"roll back with: platform rollback alpha --env {stage.target} --push --wait" in line


def test_a_rollback_the_remote_refuses_says_what_is_local_and_what_to_run(
    stage: Stage, cli: Cli
) -> None:
    stage.fails_with("aborted")
    hook = stage.remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  if git log -1 --format=%B "$new" | grep -q "^Platform-Action: rollback"; then\n'
        '    echo "rollbacks need a review" >&2; exit 1\n  fi\ndone\n'
    )
    hook.chmod(0o755)
    result = promote(stage, cli)
    assert result.exit_code == 3, result.output
    promotion = stage.tip()
    assert stage.image_at(promotion) == image("alpha", BAD).tag
    assert git(stage.work.root, "rev-parse", "HEAD").strip() == promotion
    assert git(stage.work.root, "status", "--porcelain") == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: pushed {promotion[:12]} to origin/main, then ")
    assert "the automatic rollback failed: push to origin/main refused" in line
    assert "nothing was pushed and the local commit was undone" in line
    assert f"roll back by hand: platform rollback alpha --env {stage.target} --push" in line


def test_no_auto_rollback_without_wait_is_a_usage_error(stage: Stage, cli: Cli) -> None:
    before = state(stage.work.root)
    args = ("promote", "alpha", "--to", stage.target, "--push", "--no-auto-rollback")
    result = cli(stage.work.root, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: --no-auto-rollback only goes with --wait (without --wait nothing watches the "
        "release, so nothing is rolled back)"
    ]
    assert state(stage.work.root) == before
    assert stage.fake.requests == []


def test_a_release_already_degraded_is_not_judged_before_the_sync_applies_the_promotion(
    stage: Stage, cli: Cli
) -> None:
    """Right after the refresh Argo CD names the new commit in ``sync.revision`` while it is
    OutOfSync and still runs the old, aborted release: that is not the promotion failing."""
    app = stage.fake.apps[application_name("alpha", stage.target)]
    app.tree, app.health = "aborted", "Degraded"
    stage.fake.polls_to_sync = 3
    result = promote(stage, cli)
    assert result.exit_code == 0, result.output
    assert stage.image_at(stage.tip()) == image("alpha", BAD).tag
    assert remote_holds(stage.remote, stage.tip(), stage.target) == set()
    assert app.applied == stage.tip()


def test_a_rollback_wait_of_an_aborted_release_waits_until_healthy(stage: Stage, cli: Cli) -> None:
    stage.fails_with("aborted")
    assert promote(stage, cli, "--no-auto-rollback").exit_code == 4
    promotion = stage.tip()
    stage.fake.polls_to_sync = 3
    result = cli(
        stage.work.root,
        *("rollback", "alpha", "--env", stage.target, "--reason", "canary aborted"),
        *("--push", "--wait", "--wait-interval", "0.01"),
    )
    assert result.exit_code == 0, result.output
    rollback = stage.tip()
    assert git(stage.remote, "rev-parse", f"{rollback}^").strip() == promotion
    assert stage.image_at(rollback) == image("alpha", 1).tag
    assert "Synced/Healthy" in result.stdout


def test_the_fix_after_a_rollback_is_not_judged_by_the_failed_run_of_the_release_before(
    stage: Stage, cli: Cli
) -> None:
    """A rollback to the stable ReplicaSet starts no AnalysisRun, and the fix's canary starts
    its own only at its ``startingStep``: until then the newest run is the bad release's
    Failed one, which says nothing of the fix."""
    bad, stable = image("alpha", BAD).tag, image("alpha", 1).tag
    scenarios = {bad: "aborted", stable: "stable"}
    stage.fake.on_sync = lambda _name, rev: scenarios.get(stage.image_at(rev) or "", "healthy")
    assert promote(stage, cli).exit_code == 1  # BAD aborted, rolled back and held
    work = stage.work
    assert cli(work.root, "unhold", "alpha", "--env", stage.target, "--push").exit_code == 0
    work.set_image(work.stages[-2], "alpha", 3)
    git(work.root, "push", "-q", "origin", "HEAD:main")
    stage.fake.pending_polls = 2
    result = promote(stage, cli)
    assert result.exit_code == 0, result.output
    assert stage.image_at(stage.tip()) == image("alpha", 3).tag
    assert "rolled back" not in result.stdout
