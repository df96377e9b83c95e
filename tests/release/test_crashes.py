"""Kills at every step boundary (PLATFORM_FAULT) and at random moments: the clone is left at
the old state or the new commit, and the same command run again converges on the remote."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from platformctl.imagefile import image_of
from platformctl.transaction import JOURNAL_FILE
from tests.conftest import PLATFORM_BINARY, git
from tests.release.fleet import Fleet, bare_remote, clone_of, image, make_fleet

pytestmark = [
    pytest.mark.long,  # minutes: handed out first
    pytest.mark.usefixtures("in_process"),  # a kill of the process that runs the command
]

STEPS = ("built", "journaled", "moved", "tree-partial", "synced", "pushed")
SERVICES = ["alpha", "beta"]


@pytest.fixture
def world(tmp_path: Path) -> tuple[Fleet, Path, Fleet]:
    """(origin fleet, bare remote, a clone) where the first stage has build 2 of both."""
    fleet = make_fleet(tmp_path / "origin", SERVICES)
    for service in SERVICES:
        fleet.set_image(fleet.stages[0], service, 2)
    remote = bare_remote(fleet, tmp_path / "remote.git")
    return fleet, remote, clone_of(remote, tmp_path / "work", fleet, "work")


def promote_command(fleet: Fleet) -> list[str]:
    return [PLATFORM_BINARY, "promote", *SERVICES, "--to", fleet.stages[1], "--push"]


def run(fleet: Fleet, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PLATFORM_FAULT"}
    if fault:
        env["PLATFORM_FAULT"] = fault
    return subprocess.run(
        promote_command(fleet), cwd=fleet.root, capture_output=True, text=True, env=env, check=False
    )


def assert_converged(work: Fleet, remote: Path, start: str) -> None:
    """The remote has exactly one new commit, with both promotions; the clone is on it."""
    tip = git(remote, "rev-parse", "main").strip()
    assert git(remote, "rev-list", "--count", f"{start}..{tip}").strip() == "1"
    for service in SERVICES:
        text = git(remote, "show", f"{tip}:environments/{work.stages[1]}/{service}.yaml")
        assert image_of(text) == image(service, 2)
    assert git(work.root, "rev-parse", "HEAD").strip() == tip
    assert git(work.root, "status", "--porcelain") == ""
    assert not (work.root / ".git" / JOURNAL_FILE).exists()


def assert_old_or_new(work: Fleet, start: str) -> None:
    """Right after a kill: the branch is at the old commit or at one promotion commit."""
    head = git(work.root, "rev-parse", "HEAD").strip()
    if head != start:
        assert git(work.root, "rev-parse", "HEAD^").strip() == start
        assert git(work.root, "log", "-1", "--format=%s").startswith("promote(")


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_each_step_boundary_then_a_rerun_converges(
    world: tuple[Fleet, Path, Fleet], step: str
) -> None:
    _, remote, work = world
    start = git(work.root, "rev-parse", "HEAD").strip()
    killed = run(work, step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_old_or_new(work, start)
    again = run(work)
    assert again.returncode == 0, again.stderr
    assert "nothing to promote" not in again.stdout
    assert_converged(work, remote, start)


def test_a_kill_after_the_branch_moved_is_finished_by_the_next_run_without_push(
    world: tuple[Fleet, Path, Fleet],
) -> None:
    """Any next write finishes the tree first; without --push it says what is left to do."""
    _, _, work = world
    assert run(work, "moved").returncode == -signal.SIGKILL
    assert git(work.root, "status", "--porcelain") != ""  # the tree is still at the old commit
    result = subprocess.run(
        [PLATFORM_BINARY, "promote", *SERVICES, "--to", work.stages[1]],
        cwd=work.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "run this command again with --push" in result.stdout
    assert "nothing to promote" not in result.stdout
    assert git(work.root, "status", "--porcelain") == ""


def test_random_kills_then_reruns_converge(tmp_path: Path) -> None:
    rng = random.Random(17)
    for attempt in range(4):
        fleet = make_fleet(tmp_path / f"origin{attempt}", SERVICES)
        for service in SERVICES:
            fleet.set_image(fleet.stages[0], service, 2)
        remote = bare_remote(fleet, tmp_path / f"remote{attempt}.git")
        work = clone_of(remote, tmp_path / f"work{attempt}", fleet, "work")
        start = git(work.root, "rev-parse", "HEAD").strip()
        process = subprocess.Popen(
            promote_command(work), cwd=work.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.2, 1.5))  # when to kill, not an assertion about speed
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert_old_or_new(work, start)
        again = run(work)
        assert again.returncode == 0, again.stderr
        assert_converged(work, remote, start)
