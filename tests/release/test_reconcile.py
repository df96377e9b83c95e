"""`platform reconcile` against the Argo CD stand-in: a promotion merged as a pull request
whose Rollout Argo CD reports aborted is rolled back and held in git; a second run does
nothing and says so; a rollback's own release is never rolled back further; a refused push
says what is local and what to run; bad input changes nothing."""

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
from tests.support import github as fake_github
from tests.support.argocd import TOKEN, TREES, AppState, FakeArgoCD
from tests.support.github import FakeGitHub
from tests.support.http import serve

Cli = Callable[..., Any]
BAD = 2
github = fake_github.github


@dataclass
class Cluster:
    work: Fleet
    remote: Path
    fake: FakeArgoCD

    @property
    def target(self) -> str:
        return self.work.stages[-1]

    def tip(self) -> str:
        return git(self.remote, "rev-parse", "main").strip()

    def tag_at(self, revision: str, service: str = "alpha") -> str | None:
        text = git(self.remote, "show", f"{revision}:environments/{self.target}/{service}.yaml")
        found = image_of(text)
        return found.tag if found else None

    def runs(self, service: str, revision: str, scenario: str) -> None:
        """Argo CD reports ``service``'s Application Synced at ``revision`` in ``scenario``."""
        health = TREES[scenario][0]
        self.fake.apps[application_name(service, self.target)] = AppState(
            revision=revision, health=health, tree=scenario
        )


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """alpha and beta at build 1 in the last stage; alpha's build BAD merged into it as a
    pull request; Argo CD runs that merge: alpha's Rollout aborted, beta Healthy. The first
    stage declares no Argo CD."""
    fake = FakeArgoCD()
    with serve(fake.handle) as argocd:
        monkeypatch.setenv("ARGOCD_TOKEN_TEST", TOKEN)
        fleet = make_fleet(tmp_path / "origin", ["alpha", "beta"])
        last = fleet.stages[-1]

        def endpoints(settings: Any) -> None:
            settings["endpoints"]["argocd"] = {"url": argocd, "tokenEnv": "ARGOCD_TOKEN_TEST"}

        def unwatched(settings: Any) -> None:
            del settings["endpoints"]["argocd"]

        edit_yaml(fleet.root / "environments" / last / "environment.yaml", endpoints)
        edit_yaml(fleet.root / "environments" / fleet.stages[0] / "environment.yaml", unwatched)
        git(fleet.root, "commit", "-qam", "endpoints of the test; the first stage has no Argo CD")
        git(fleet.root, "checkout", "-qb", "promote/alpha")
        fleet.set_image(last, "alpha", BAD)
        git(fleet.root, "checkout", "-q", "main")
        git(fleet.root, "merge", "-q", "--no-ff", "-m", "Merge pull request #7", "promote/alpha")
        remote = bare_remote(fleet, tmp_path / "remote.git")
        work = clone_of(remote, tmp_path / "work", fleet, "work")
        result = Cluster(work, remote, fake)
        result.runs("alpha", result.tip(), "aborted")
        result.runs("beta", result.tip(), "healthy")
        yield result


def reconcile(cluster: Cluster, cli: Cli, *extra: str) -> Any:
    return cli(cluster.work.root, "reconcile", "--env", cluster.target, *extra)


def test_an_aborted_release_git_still_names_is_rolled_back_and_held(
    cluster: Cluster, cli: Cli
) -> None:
    merge = cluster.tip()
    result = reconcile(cluster, cli, "--push")
    assert result.exit_code == 0, result.output
    rollback = cluster.tip()
    assert git(cluster.remote, "rev-parse", f"{rollback}^").strip() == merge
    assert cluster.tag_at(rollback) == image("alpha", 1).tag
    assert cluster.tag_at(rollback, "beta") == image("beta", 1).tag
    assert remote_holds(cluster.remote, rollback, cluster.target) == {"alpha"}
    message = git(cluster.remote, "log", "-1", "--format=%B", rollback)
    assert "Platform-Action: rollback" in message
    assert "automatic rollback by reconcile: alpha-" in message
    assert f"committed {rollback[:12]} and pushed to origin/main" in result.stdout
    assert "rolled back and held" in result.stdout
    assert result.stderr == ""


def test_a_second_run_does_nothing_and_says_so(cluster: Cluster, cli: Cli) -> None:
    assert reconcile(cluster, cli, "--push").exit_code == 0
    rollback = cluster.tip()
    # Argo CD has not synced the rollback yet: it still runs the aborted merge
    again = reconcile(cluster, cli, "--push")
    assert again.exit_code == 0, again.output
    assert cluster.tip() == rollback
    assert again.stdout.startswith(f"nothing to reconcile in {cluster.target}")
    # it has, and the restored release is Degraded too: that one is never rolled back further
    cluster.runs("alpha", rollback, "aborted")
    third = reconcile(cluster, cli, "--push", "-o", "json")
    assert third.exit_code == 0, third.output
    assert cluster.tip() == rollback
    payload = json.loads(third.stdout)
    assert payload["changed"] is False
    (finding,) = payload["findings"]
    assert finding["rolled_back"] is False
    assert f"put there by the rollback {rollback[:12]}" in finding["skipped"]


def test_a_release_argo_cd_does_not_run_yet_is_left_alone(cluster: Cluster, cli: Cli) -> None:
    before = git(cluster.remote, "rev-parse", "main^1").strip()
    cluster.runs("alpha", before, "aborted")
    result = reconcile(cluster, cli, "--push")
    assert result.exit_code == 0, result.output
    assert cluster.tag_at(cluster.tip()) == image("alpha", BAD).tag
    assert "nothing to reconcile" in result.stdout


def test_dry_run_writes_nothing_and_shows_the_rollback(cluster: Cluster, cli: Cli) -> None:
    before, tip = state(cluster.work.root), cluster.tip()
    result = reconcile(cluster, cli, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    assert state(cluster.work.root) == before
    assert cluster.tip() == tip
    payload = json.loads(result.stdout)
    (rollback,) = payload["rollbacks"]
    assert rollback["commit"] is None
    assert rollback["holds"] == {"alpha": True}
    assert image("alpha", 1).tag in rollback["diff"]


def test_a_refused_push_says_what_is_local_and_what_to_run(cluster: Cluster, cli: Cli) -> None:
    hook = cluster.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    before, tip = state(cluster.work.root), cluster.tip()
    result = reconcile(cluster, cli, "--push")
    assert result.exit_code == 3, result.output
    assert cluster.tip() == tip
    # the commit was made and undone: tree, refs and stash as they were, the index rewritten
    # (its stat cache) with the same entries
    after = state(cluster.work.root)
    assert {k: v for k, v in after.items() if k != "index"} == {
        k: v for k, v in before.items() if k != "index"
    }
    assert git(cluster.work.root, "status", "--porcelain") == ""
    (line,) = result.stderr.splitlines()
    assert f"rollback in {cluster.target} failed: push to origin/main refused" in line
    assert "nothing was pushed and the local commit was undone" in line
    assert f"run again: platform reconcile --env {cluster.target} --push" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--env", "nowhere"), "unknown environment 'nowhere'"),
        (("--env", "{first}"), "reconcile needs endpoints.argocd in {first}/environment.yaml"),
        (("--push", "--pull-request"), "--push or --pull-request, not both"),
        (("--output", "yaml"), "Invalid value for '--output'"),
    ],
    ids=["unknown-env", "no-argocd", "push-and-pr", "bad-output"],
)
def test_bad_input_is_one_line_exit_two_and_changes_nothing(
    cluster: Cluster, cli: Cli, args: tuple[str, ...], says: str
) -> None:
    first = cluster.work.stages[0]
    before = state(cluster.work.root)
    words = [arg.format(first=first) for arg in args]
    result = cli(cluster.work.root, "reconcile", *words)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert says.format(first=first) in line
    assert state(cluster.work.root) == before
    assert cluster.fake.requests == []


def test_an_application_degraded_by_another_resource_is_not_rolled_back(
    cluster: Cluster, cli: Cli
) -> None:
    """A Degraded ExternalSecret or PVC makes the Application Degraded while the Rollout and
    its analysis are Healthy: the image is not the fault, reconcile leaves it (``--wait`` of
    a promotion still treats it as the promotion failing)."""
    merge = cluster.tip()
    cluster.runs("alpha", merge, "app-degraded")
    result = reconcile(cluster, cli, "--push")
    assert result.exit_code == 0, result.output
    assert cluster.tip() == merge
    assert cluster.tag_at(merge) == image("alpha", BAD).tag
    assert "nothing to reconcile" in result.stdout


def test_a_second_run_with_pull_request_sees_the_open_rollback_pull_request(
    cluster: Cluster, cli: Cli, github: FakeGitHub
) -> None:
    """Until the rollback pull request is merged git still names the failed release: a second
    run leaves the pull request and its branch as they are and says why."""
    tip = cluster.tip()
    first = reconcile(cluster, cli, "--pull-request")
    assert first.exit_code == 0, first.output
    (pull,) = github.pulls.values()
    branch = pull["head"]["ref"]
    pushed = git(cluster.remote, "rev-parse", branch).strip()
    asked = len(github.requests)
    again = reconcile(cluster, cli, "--pull-request", "-o", "json")
    assert again.exit_code == 0, again.output
    assert len(github.requests) == asked
    assert git(cluster.remote, "rev-parse", branch).strip() == pushed
    assert cluster.tip() == tip
    payload = json.loads(again.stdout)
    assert payload["changed"] is False
    (finding,) = payload["findings"]
    assert finding["rolled_back"] is False
    assert (
        f"the rollback pull request from {branch} ({pushed[:12]}) is not merged"
        in (finding["skipped"])
    )
