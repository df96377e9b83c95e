"""promote, rollback, hold, history and diff on real git repositories."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.verify import verify
from tests.conftest import PLATFORM_BINARY, commit_edit, git, run_platform
from tests.release.fleet import (
    LIVE,
    STAGED,
    Fleet,
    bare_remote,
    clone_of,
    image,
    make_fleet,
    make_pipeline,
)

pytestmark = pytest.mark.long  # minutes: handed out first

Cli = Callable[..., Any]
SERVICES = ["svc-a", "svc-b", "svc-c", "svc-d"]
AHEAD = ["svc-a", "svc-b"]  # newer in staging than in production; svc-c and svc-d are level


def tag(build: int) -> str:
    """The tag fleet.py gives ``build``."""
    name = image(SERVICES[0], build).tag
    assert name is not None
    return name


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return make_pipeline(tmp_path / "repo", SERVICES, AHEAD)


@pytest.fixture
def repo(fleet: Fleet) -> Path:
    """The pipeline's root, in place of tests/conftest.py's copy of this repository."""
    return fleet.root


def image_line(repo: Path, env: str, service: str) -> str:
    text = (repo / f"environments/{env}/{service}.yaml").read_text()
    return next(line for line in text.splitlines() if line.startswith("image:"))


def snapshot(repo: Path) -> tuple[str, str]:
    return git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")


def test_promote_one_service_is_one_commit_with_a_one_line_diff(repo: Path, cli: Cli) -> None:
    staging = image_line(repo, "staging", "svc-a")
    result = cli(repo, "promote", "svc-a", "--to", "production")
    assert result.exit_code == 0, result.output
    assert image_line(repo, "production", "svc-a") == staging
    stat = git(repo, "show", "--numstat", "--format=", "HEAD")
    assert stat.split() == ["1", "1", "environments/production/svc-a.yaml"]
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith(f"promote(svc-a): staging → production {tag(STAGED)}")
    assert "Platform-Action: promote" in message
    assert "Platform-From: staging" in message
    assert git(repo, "status", "--porcelain") == ""


def test_promote_all_is_one_commit(repo: Path, cli: Cli) -> None:
    before = git(repo, "rev-list", "--count", "HEAD")
    result = cli(repo, "promote", "--all", "--to", "production", "--output", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {c["service"] for c in payload["changes"]} == set(AHEAD)
    assert sorted(payload["unchanged"]) == sorted(set(SERVICES) - set(AHEAD))
    assert int(git(repo, "rev-list", "--count", "HEAD")) == int(before) + 1
    assert git(repo, "log", "-1", "--format=%B").count("Platform-Service:") == len(AHEAD)


def test_dry_run_writes_nothing_and_prints_the_change(repo: Path, cli: Cli) -> None:
    before = snapshot(repo)
    result = cli(repo, "promote", "svc-a", "--to", "production", "--dry-run")
    assert result.exit_code == 0
    assert "+image: {repository:" in result.stdout
    assert snapshot(repo) == before


def test_skipping_a_stage_needs_force_and_reason(repo: Path, cli: Cli) -> None:
    commit_edit(
        repo,
        "environments/dev/svc-c.yaml",
        lambda data: data["image"].__setitem__("digest", "sha256:" + "ab" * 32),
        "pin dev",
    )
    before = snapshot(repo)
    refused = cli(repo, "promote", "svc-c", "--from", "dev", "--to", "production")
    assert refused.exit_code == 1
    assert "--force --reason" in refused.stderr
    assert snapshot(repo) == before
    forced = cli(
        repo,
        "promote",
        "svc-c",
        "--from",
        "dev",
        "--to",
        "production",
        "--force",
        "--reason",
        "hotfix CVE-2026-1234",
    )
    assert forced.exit_code == 0, forced.output
    assert "Platform-Reason: hotfix CVE-2026-1234" in git(repo, "log", "-1", "--format=%B")


def test_source_without_digest_into_digest_environment_is_refused(repo: Path, cli: Cli) -> None:
    before = snapshot(repo)
    result = cli(repo, "promote", "svc-a", "--to", "staging")
    assert result.exit_code == 1
    assert "has no digest and staging requires one" in result.stderr
    assert snapshot(repo) == before


def test_policy_failure_restores_everything(repo: Path, cli: Cli) -> None:
    commit_edit(
        repo,
        "environments/production/svc-a.yaml",
        lambda data: data.update(autoscaling={"enabled": False}, replicaCount=1),
        "someone merged a single replica",
    )
    before = snapshot(repo)
    result = cli(repo, "promote", "svc-a", "--to", "production")
    assert result.exit_code == 1
    assert "PLAT003" in result.stderr
    assert snapshot(repo) == before


def test_dirty_tree_and_detached_head_are_refused(repo: Path, cli: Cli) -> None:
    (repo / "environments/dev/notes.txt").write_text("wip")
    dirty = cli(repo, "promote", "svc-a", "--to", "production")
    assert dirty.exit_code == 2
    assert "uncommitted changes" in dirty.stderr
    (repo / "environments/dev/notes.txt").unlink()
    git(repo, "checkout", "-q", "--detach")
    detached = cli(repo, "promote", "svc-a", "--to", "production")
    assert detached.exit_code == 2
    assert "detached" in detached.stderr


def test_rollback_story_with_hold_history_and_double_rollback(
    fleet: Fleet, repo: Path, cli: Cli
) -> None:
    fleet.set_image("production", "svc-a", 5)  # a hand edit / squash merge counts as a release
    fleet.set_image("production", "svc-a", 6)
    first = cli(repo, "rollback", "svc-a", "--env", "production", "--reason", "p95 latency 450 ms")
    assert first.exit_code == 0, first.output
    assert f"tag: {tag(5)}" in image_line(repo, "production", "svc-a")
    assert "Platform-Reason: p95 latency 450 ms" in git(repo, "log", "-1", "--format=%B")

    held = cli(repo, "promote", "svc-a", "--to", "production")
    assert held.exit_code == 1
    assert "platform unhold svc-a --env production" in held.stderr

    # build 5 turns out bad too: the next rollback skips 6, which was rolled back from
    second = cli(repo, "rollback", "svc-a", "--env", "production")
    assert second.exit_code == 0, second.output
    assert f"tag: {tag(LIVE)}" in image_line(repo, "production", "svc-a")

    rows = json.loads(
        cli(repo, "history", "svc-a", "--env", "production", "--output", "json").stdout
    )
    assert [(r["action"], r["tag"]) for r in rows] == [
        ("rollback", tag(LIVE)),
        ("rollback", tag(5)),
        ("manual", tag(6)),
        ("manual", tag(5)),
        ("manual", tag(LIVE)),
    ]
    assert {"commit", "time", "author", "digest", "from_environment", "reason"} <= set(rows[0])

    assert cli(repo, "unhold", "svc-a", "--env", "production").exit_code == 0
    again = cli(repo, "promote", "svc-a", "--to", "production")
    assert again.exit_code == 0, again.output


def test_rollback_to_a_named_release_and_to_an_unknown_one(
    fleet: Fleet, repo: Path, cli: Cli
) -> None:
    fleet.set_image("production", "svc-a", 5)
    fleet.set_image("production", "svc-a", 6)
    before = snapshot(repo)
    unknown = cli(repo, "rollback", "svc-a", "--env", "production", "--to", "9.9.9")
    assert unknown.exit_code == 2
    assert "not a release" in unknown.stderr
    assert snapshot(repo) == before
    named = cli(repo, "rollback", "svc-a", "--env", "production", "--to", tag(LIVE))
    assert named.exit_code == 0
    assert f"tag: {tag(LIVE)}" in image_line(repo, "production", "svc-a")


def test_rollback_without_an_earlier_release_is_refused(repo: Path, cli: Cli) -> None:
    result = cli(repo, "rollback", "svc-c", "--env", "production")
    assert result.exit_code == 1
    assert "no earlier good release" in result.stderr


# --- races on one remote -------------------------------------------------------------------


@pytest.fixture
def remote(fleet: Fleet, tmp_path: Path) -> Path:
    return bare_remote(fleet, tmp_path / "remote.git")


def test_two_clones_race_and_both_land(fleet: Fleet, remote: Path, tmp_path: Path) -> None:
    first = clone_of(remote, tmp_path / "a", fleet, "a")
    second = clone_of(remote, tmp_path / "b", fleet, "b")
    one = run_platform(first.root, "promote", "svc-a", "--to", "production", "--push")
    assert one.returncode == 0, one.stderr
    # second is now behind: its push is rejected, it rebases, re-verifies and pushes
    two = run_platform(second.root, "promote", "svc-b", "--to", "production", "--push")
    assert two.returncode == 0, two.stderr
    log = git(remote, "log", "--format=%s", "-2")
    assert "svc-b" in log.splitlines()[0]
    assert "svc-a" in log.splitlines()[1]


def test_an_unpushed_hand_commit_is_not_replanned_and_nothing_is_lost(
    fleet: Fleet, remote: Path, tmp_path: Path
) -> None:
    first = clone_of(remote, tmp_path / "a", fleet, "a")
    second = clone_of(remote, tmp_path / "b", fleet, "b")
    promoted = run_platform(first.root, "promote", "svc-a", "--to", "production", "--push")
    assert promoted.returncode == 0, promoted.stderr
    second.set_image("production", "svc-a", 9)
    before = snapshot(second.root)
    result = run_platform(
        second.root, "rollback", "svc-a", "--env", "production", "--to", tag(LIVE), "--push"
    )
    assert result.returncode == 2, result.stderr
    assert "unpushed commit" in result.stderr
    assert "did not make" in result.stderr
    assert snapshot(second.root) == before
    assert "promote(svc-a)" in git(remote, "log", "-1", "--format=%s")


def test_eight_clones_push_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    services = [f"svc-{n}" for n in range(8)]
    fleet = make_fleet(tmp_path / "repo", services)
    for service in services:  # each clone has a change of its own to promote
        fleet.set_image("staging", service, STAGED, commit=False)
    git(fleet.root, "commit", "-qam", "staging is ahead")
    assert verify(load_repo(fleet.root)).ok  # warms the cache the clones start from
    bare = bare_remote(fleet, tmp_path / "remote8.git")
    clones = [clone_of(bare, tmp_path / f"c{n}", fleet, f"c{n}") for n in range(8)]
    processes = [
        subprocess.Popen(
            [PLATFORM_BINARY, "promote", service, "--to", "production", "--push"],
            cwd=work.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for service, work in zip(services, clones, strict=True)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in processes]
    assert all(code == 0 for code, _ in results), results
    subjects = git(bare, "log", "--format=%s", "-8").splitlines()
    assert sorted(s.split("(")[1].split(")")[0] for s in subjects) == sorted(services)


def test_push_without_a_remote_exits_three_and_changes_nothing(repo: Path, cli: Cli) -> None:
    before = snapshot(repo)
    result = cli(repo, "promote", "svc-a", "--to", "production", "--push")
    assert result.exit_code == 3
    assert "no git remote" in result.stderr
    assert snapshot(repo) == before


def test_push_the_remote_refuses_exits_three_and_changes_nothing(
    fleet: Fleet, remote: Path, tmp_path: Path
) -> None:
    hook = remote / "hooks/pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    work = clone_of(remote, tmp_path / "a", fleet, "a").root
    before = snapshot(work)
    result = run_platform(work, "promote", "svc-a", "--to", "production", "--push")
    assert result.returncode == 3
    assert result.stderr.startswith("error: push to origin/main")
    assert snapshot(work) == before


def test_story_dev_to_staging_to_production(fleet: Fleet, repo: Path, cli: Cli) -> None:
    # CI pinned the digest of the build it pushed to dev
    fleet.set_image("dev", "svc-a", 5)
    digest = image("svc-a", 5).digest
    assert digest is not None
    # --all is one unit: the other services have no digest in dev, so nothing moves
    before = snapshot(repo)
    assert cli(repo, "promote", "--all", "--to", "staging").exit_code == 1
    assert snapshot(repo) == before
    for target in ("staging", "production"):
        result = cli(repo, "promote", "svc-a", "--to", target)
        assert result.exit_code == 0, result.output
        assert digest in image_line(repo, target, "svc-a")
    status = json.loads(cli(repo, "status", "--output", "json").stdout)
    rows = [r for r in status if r["service"] == "svc-a"]
    assert {r["digest"] for r in rows} == {digest}
    assert not any(r["differs_from_previous"] for r in rows)
    subjects = git(repo, "log", "--format=%s", "-2").splitlines()
    assert subjects == [
        f"promote(svc-a): staging → production {tag(5)}",
        f"promote(svc-a): dev → staging {tag(5)}",
    ]


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for every bad input: each case asserts it changed nothing."""
    return make_pipeline(tmp_path_factory.mktemp("bad-input") / "repo", SERVICES, AHEAD).root


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["promote", "svc-a", "--to", "dev"], 2, "'dev' is the first stage"),
        (
            ["promote", "svc-a", "--from", "staging", "--to", "staging"],
            2,
            "same environment",
        ),
        (["promote", "svc-a", "--to", "production", "--force"], 2, "--force needs --reason"),
        (["promote", "svc-a", "--all", "--to", "production"], 2, "not both"),
        (["promote", "--to", "production"], 2, "at least one service"),
        (["promote", "svc-a", "--to", "prod"], 2, "did you mean 'production'"),
        (["promote", "svc/a", "--to", "production"], 2, "not a valid service name"),
        (["rollback", "svca", "--env", "production"], 2, "did you mean 'svc-a'"),
        (["hold", "svc-a", "--env", "qa", "--reason", "x"], 2, "unknown environment"),
    ],
)
def test_bad_release_input_exits_with_one_line_and_changes_nothing(
    untouched: Path, cli: Cli, args: list[str], code: int, message: str
) -> None:
    before = snapshot(untouched)
    result = cli(untouched, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(untouched) == before
