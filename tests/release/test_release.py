"""promote, rollback, hold, history and diff on real git repositories."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.verify import verify
from tests.conftest import PLATFORM_BINARY, commit_edit, edit_yaml, git, run_platform

Cli = Callable[..., Any]


def image_line(repo: Path, env: str, service: str) -> str:
    text = (repo / f"environments/{env}/{service}.yaml").read_text()
    return next(line for line in text.splitlines() if line.startswith("image:"))


def snapshot(repo: Path) -> tuple[str, str]:
    return git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")


def test_promote_one_service_is_one_commit_with_a_one_line_diff(repo: Path, cli: Cli) -> None:
    staging = image_line(repo, "staging", "user-service")
    result = cli(repo, "promote", "user-service", "--to", "production")
    assert result.exit_code == 0, result.output
    assert image_line(repo, "production", "user-service") == staging
    stat = git(repo, "show", "--numstat", "--format=", "HEAD")
    assert stat.split() == ["1", "1", "environments/production/user-service.yaml"]
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("promote(user-service): staging → production 1.4.2")
    assert "Platform-Action: promote" in message
    assert "Platform-From: staging" in message
    assert git(repo, "status", "--porcelain") == ""


def test_promote_all_is_one_commit(repo: Path, cli: Cli) -> None:
    before = git(repo, "rev-list", "--count", "HEAD")
    result = cli(repo, "promote", "--all", "--to", "production", "--output", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {c["service"] for c in payload["changes"]} == {"user-service", "product-service"}
    assert sorted(payload["unchanged"]) == ["api-gateway", "auth-service"]
    assert int(git(repo, "rev-list", "--count", "HEAD")) == int(before) + 1
    assert git(repo, "log", "-1", "--format=%B").count("Platform-Service:") == 2


def test_dry_run_writes_nothing_and_prints_the_change(repo: Path, cli: Cli) -> None:
    before = snapshot(repo)
    result = cli(repo, "promote", "user-service", "--to", "production", "--dry-run")
    assert result.exit_code == 0
    assert "+image: {repository:" in result.stdout
    assert snapshot(repo) == before


def test_skipping_a_stage_needs_force_and_reason(repo: Path, cli: Cli) -> None:
    commit_edit(
        repo,
        "environments/dev/auth-service.yaml",
        lambda data: data["image"].__setitem__("digest", "sha256:" + "ab" * 32),
        "pin dev",
    )
    before = snapshot(repo)
    refused = cli(repo, "promote", "auth-service", "--from", "dev", "--to", "production")
    assert refused.exit_code == 1
    assert "--force --reason" in refused.stderr
    assert snapshot(repo) == before
    forced = cli(
        repo,
        "promote",
        "auth-service",
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
    result = cli(repo, "promote", "user-service", "--to", "staging")
    assert result.exit_code == 1
    assert "has no digest and staging requires one" in result.stderr
    assert snapshot(repo) == before


def test_policy_failure_restores_everything(repo: Path, cli: Cli) -> None:
    commit_edit(
        repo,
        "environments/production/user-service.yaml",
        lambda data: data["autoscaling"].__setitem__("minReplicas", 1),
        "someone merged a single replica",
    )
    before = snapshot(repo)
    result = cli(repo, "promote", "user-service", "--to", "production")
    assert result.exit_code == 1
    assert "PLAT003" in result.stderr
    assert snapshot(repo) == before


def test_dirty_tree_and_detached_head_are_refused(repo: Path, cli: Cli) -> None:
    (repo / "environments/dev/notes.txt").write_text("wip")
    dirty = cli(repo, "promote", "user-service", "--to", "production")
    assert dirty.exit_code == 2
    assert "uncommitted changes" in dirty.stderr
    (repo / "environments/dev/notes.txt").unlink()
    git(repo, "checkout", "-q", "--detach")
    detached = cli(repo, "promote", "user-service", "--to", "production")
    assert detached.exit_code == 2
    assert "detached" in detached.stderr


def set_production_tag(repo: Path, tag: str, digest_byte: str) -> None:
    commit_edit(
        repo,
        "environments/production/user-service.yaml",
        lambda data: data["image"].update(tag=tag, digest="sha256:" + digest_byte * 32),
        f"hand edit: user-service {tag}",
    )


def test_rollback_story_with_hold_history_and_double_rollback(repo: Path, cli: Cli) -> None:
    set_production_tag(repo, "1.5.0", "aa")  # a hand edit / squash merge counts as a release
    set_production_tag(repo, "1.6.0", "bb")
    first = cli(
        repo, "rollback", "user-service", "--env", "production", "--reason", "p95 latency 450 ms"
    )
    assert first.exit_code == 0, first.output
    assert "tag: 1.5.0" in image_line(repo, "production", "user-service")
    assert "Platform-Reason: p95 latency 450 ms" in git(repo, "log", "-1", "--format=%B")

    held = cli(repo, "promote", "user-service", "--to", "production")
    assert held.exit_code == 1
    assert "platform unhold user-service --env production" in held.stderr

    # 1.5.0 turns out bad too: the next rollback skips 1.6.0, which was rolled back from
    second = cli(repo, "rollback", "user-service", "--env", "production")
    assert second.exit_code == 0, second.output
    assert "tag: 1.4.1" in image_line(repo, "production", "user-service")

    rows = json.loads(
        cli(repo, "history", "user-service", "--env", "production", "--output", "json").stdout
    )
    assert [(r["action"], r["tag"]) for r in rows] == [
        ("rollback", "1.4.1"),
        ("rollback", "1.5.0"),
        ("manual", "1.6.0"),
        ("manual", "1.5.0"),
        ("manual", "1.4.1"),
    ]
    assert {"commit", "time", "author", "digest", "from_environment", "reason"} <= set(rows[0])

    assert cli(repo, "unhold", "user-service", "--env", "production").exit_code == 0
    again = cli(repo, "promote", "user-service", "--to", "production")
    assert again.exit_code == 0, again.output


def test_rollback_to_a_named_release_and_to_an_unknown_one(repo: Path, cli: Cli) -> None:
    set_production_tag(repo, "1.5.0", "aa")
    set_production_tag(repo, "1.6.0", "bb")
    before = snapshot(repo)
    unknown = cli(repo, "rollback", "user-service", "--env", "production", "--to", "9.9.9")
    assert unknown.exit_code == 2
    assert "not a release" in unknown.stderr
    assert snapshot(repo) == before
    named = cli(repo, "rollback", "user-service", "--env", "production", "--to", "1.4.1")
    assert named.exit_code == 0
    assert "tag: 1.4.1" in image_line(repo, "production", "user-service")


def test_rollback_without_an_earlier_release_is_refused(repo: Path, cli: Cli) -> None:
    result = cli(repo, "rollback", "auth-service", "--env", "production")
    assert result.exit_code == 1
    assert "no earlier good release" in result.stderr


# --- races on one remote -------------------------------------------------------------------


def clone(remote: Path, path: Path, warm_cache: Path | None) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(path)], check=True)
    git(path, "config", "user.email", f"{path.name}@example.com")
    git(path, "config", "user.name", path.name)
    if warm_cache is not None:
        shutil.copytree(warm_cache, path / ".platform-cache")
    return path


def add_services(repo: Path, count: int) -> list[str]:
    """More services whose staging and production differ, so each clone promotes its own."""
    names = []
    for index in range(count):
        name = f"svc-{index}"
        base = repo / f"environments/base/{name}.yaml"
        shutil.copy(repo / "environments/base/user-service.yaml", base)
        # nobody calls a new service yet: admitting callers that never send is refused too
        edit_yaml(base, lambda data: data["networkPolicy"].pop("ingressFrom"))
        for env in ("dev", "staging", "production"):
            text = (repo / f"environments/{env}/user-service.yaml").read_text()
            (repo / f"environments/{env}/{name}.yaml").write_text(
                # its own image and its own IAM role (the sync twin refuses a borrowed one)
                text.replace("user-service", name)
            )
        names.append(name)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "more services")
    return names


@pytest.fixture
def remote(repo: Path, tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    return bare


def test_two_clones_race_and_both_land(remote: Path, tmp_path: Path) -> None:
    first = clone(remote, tmp_path / "a", None)
    second = clone(remote, tmp_path / "b", None)
    one = run_platform(first, "promote", "user-service", "--to", "production", "--push")
    assert one.returncode == 0, one.stderr
    # second is now behind: its push is rejected, it rebases, re-verifies and pushes
    two = run_platform(second, "promote", "product-service", "--to", "production", "--push")
    assert two.returncode == 0, two.stderr
    log = git(remote, "log", "--format=%s", "-2")
    assert "product-service" in log.splitlines()[0]
    assert "user-service" in log.splitlines()[1]


def test_an_unpushed_hand_commit_is_not_replanned_and_nothing_is_lost(
    remote: Path, tmp_path: Path
) -> None:
    first = clone(remote, tmp_path / "a", None)
    second = clone(remote, tmp_path / "b", None)
    assert (
        run_platform(first, "promote", "user-service", "--to", "production", "--push").returncode
        == 0
    )
    set_production_tag(second, "1.9.0", "cc")
    before = snapshot(second)
    result = run_platform(
        second, "rollback", "user-service", "--env", "production", "--to", "1.4.1", "--push"
    )
    assert result.returncode == 2, result.stderr
    assert "unpushed commit" in result.stderr
    assert "did not make" in result.stderr
    assert snapshot(second) == before
    assert "promote(user-service)" in git(remote, "log", "-1", "--format=%s")


def test_eight_clones_push_at_once_and_nothing_is_lost(repo: Path, tmp_path: Path) -> None:
    services = add_services(repo, 8)
    assert verify(load_repo(repo)).ok  # warms the cache the clones start from
    bare = tmp_path / "remote8.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    clones = [clone(bare, tmp_path / f"c{i}", repo / ".platform-cache") for i in range(8)]
    processes = [
        subprocess.Popen(
            [PLATFORM_BINARY, "promote", service, "--to", "production", "--push"],
            cwd=path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for service, path in zip(services, clones, strict=True)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in processes]
    assert all(code == 0 for code, _ in results), results
    subjects = git(bare, "log", "--format=%s", "-8").splitlines()
    assert sorted(s.split("(")[1].split(")")[0] for s in subjects) == sorted(services)


def test_push_without_a_remote_exits_three_and_changes_nothing(repo: Path, cli: Cli) -> None:
    before = snapshot(repo)
    result = cli(repo, "promote", "user-service", "--to", "production", "--push")
    assert result.exit_code == 3
    assert "no git remote" in result.stderr
    assert snapshot(repo) == before


def test_push_the_remote_refuses_exits_three_and_changes_nothing(
    remote: Path, tmp_path: Path
) -> None:
    hook = remote / "hooks/pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    work = clone(remote, tmp_path / "a", None)
    before = snapshot(work)
    result = run_platform(work, "promote", "user-service", "--to", "production", "--push")
    assert result.returncode == 3
    assert result.stderr.startswith("error: push to origin/main")
    assert snapshot(work) == before


def test_story_dev_to_staging_to_production(repo: Path, cli: Cli) -> None:
    # CI pinned the digest of the build it pushed to dev
    digest = "sha256:" + "5e" * 32
    commit_edit(
        repo,
        "environments/dev/user-service.yaml",
        lambda data: data["image"].__setitem__("digest", digest),
        "ci: user-service 1.5.0 built",
    )
    # --all is one unit: the other services have no digest in dev, so nothing moves
    before = snapshot(repo)
    assert cli(repo, "promote", "--all", "--to", "staging").exit_code == 1
    assert snapshot(repo) == before
    for target in ("staging", "production"):
        result = cli(repo, "promote", "user-service", "--to", target)
        assert result.exit_code == 0, result.output
        assert digest in image_line(repo, target, "user-service")
    status = json.loads(cli(repo, "status", "--output", "json").stdout)
    rows = [r for r in status if r["service"] == "user-service"]
    assert {r["digest"] for r in rows} == {digest}
    assert not any(r["differs_from_previous"] for r in rows)
    subjects = git(repo, "log", "--format=%s", "-2").splitlines()
    assert subjects == [
        "promote(user-service): staging → production 1.5.0",
        "promote(user-service): dev → staging 1.5.0",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["promote", "user-service", "--to", "dev"], 2, "'dev' is the first stage"),
        (
            ["promote", "user-service", "--from", "staging", "--to", "staging"],
            2,
            "same environment",
        ),
        (["promote", "user-service", "--to", "production", "--force"], 2, "--force needs --reason"),
        (["promote", "user-service", "--all", "--to", "production"], 2, "not both"),
        (["promote", "--to", "production"], 2, "at least one service"),
        (["promote", "user-service", "--to", "prod"], 2, "did you mean 'production'"),
        (["promote", "user/service", "--to", "production"], 2, "not a valid service name"),
        (["rollback", "users", "--env", "production"], 2, "did you mean 'user-service'"),
        (["hold", "user-service", "--env", "qa", "--reason", "x"], 2, "unknown environment"),
    ],
)
def test_bad_release_input_exits_with_one_line_and_changes_nothing(
    repo: Path, cli: Cli, args: list[str], code: int, message: str
) -> None:
    before = snapshot(repo)
    result = cli(repo, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(repo) == before
