"""Eight clones of one remote, ten rounds of promote, rollback and hold at once, of the same
and of different services in one environment: nothing lost, nothing refused for no reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from platformctl.imagefile import image_of
from platformctl.model import load_repo
from platformctl.verify import verify
from tests.conftest import PLATFORM_BINARY, git
from tests.release.fleet import Fleet, bare_remote, clone_of, image, make_fleet, remote_holds

pytestmark = pytest.mark.long  # minutes: handed out first

ROUNDS = 10
JSON = ("--output", "json")
SERVICES = [f"svc-{n}" for n in range(8)]


def _setup_round(admin: Fleet, number: int) -> None:
    """New builds to promote and to roll back from; last round's holds lifted; pushed."""
    source, target = admin.stages[0], admin.stages[1]
    git(admin.root, "pull", "-q", "--ff-only")
    settings = admin.root / "environments" / target / "environment.yaml"
    text = settings.read_text()
    if "\nholds:" in text:
        settings.write_text(text[: text.index("\nholds:") + 1])
    for service in SERVICES[:4]:
        admin.set_image(source, service, number + 2, commit=False)
    for service in SERVICES[5:7]:
        admin.set_image(target, service, number + 100, commit=False)
    git(admin.root, "commit", "-qam", f"round {number}: new builds")
    git(admin.root, "push", "-q", "origin", "main")


def _commands(target: str, number: int) -> list[list[str]]:
    held = SERVICES[7] if number % 2 == 0 else SERVICES[5]  # odd rounds: the one rolled back
    return [
        *(["promote", service, "--to", target, "--push", *JSON] for service in SERVICES[:4]),
        ["promote", SERVICES[0], "--to", target, "--push", *JSON],  # the same intent twice
        ["rollback", SERVICES[5], "--env", target, "--push", *JSON],
        ["rollback", SERVICES[6], "--env", target, "--push", *JSON],
        ["hold", held, "--env", target, "--reason", f"round {number}", "--push"],
    ]


def test_eight_clones_ten_rounds_nothing_lost_nothing_refused(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "origin", SERVICES)
    assert verify(load_repo(fleet.root)).ok  # warms the cache the clones start from
    remote = bare_remote(fleet, tmp_path / "remote.git")
    admin = clone_of(remote, tmp_path / "admin", fleet, "admin")
    clones = [clone_of(remote, tmp_path / f"c{n}", fleet, f"c{n}") for n in range(8)]
    target = fleet.stages[1]
    refusals: list[str] = []
    attempts: list[int] = []
    for number in range(ROUNDS):
        _setup_round(admin, number)
        start = git(remote, "rev-parse", "main").strip()
        for work in clones:
            git(work.root, "pull", "-q", "--ff-only")
        commands = _commands(target, number)
        processes = [
            subprocess.Popen(
                [PLATFORM_BINARY, *command],
                cwd=work.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for command, work in zip(commands, clones, strict=True)
        ]
        for command, process in zip(commands, processes, strict=True):
            stdout, stderr = process.communicate(timeout=300)
            if process.returncode != 0:
                refusals.append(f"round {number}: {' '.join(command)}: {stderr.strip()}")
            elif "json" in command:
                attempts.append(json.loads(stdout)["push_attempts"])
        tip = git(remote, "rev-parse", "main").strip()
        for service in SERVICES[:4]:
            text = git(remote, "show", f"{tip}:environments/{target}/{service}.yaml")
            assert image_of(text) == image(service, number + 2), (number, service)
        for service in SERVICES[5:7]:
            text = git(remote, "show", f"{tip}:environments/{target}/{service}.yaml")
            assert image_of(text) == image(service, 1), (number, service)
        held = {SERVICES[5], SERVICES[6], commands[-1][1]}
        assert held <= remote_holds(remote, tip, target), number
        # four promotions, two rollbacks, one hold: the doubled promotion found it done
        assert git(remote, "rev-list", "--count", f"{start}..{tip}").strip() == "7", number
    assert refusals == []
    assert max(attempts) > 1  # the writers did race: pushes were rejected and re-planned


def test_four_holds_at_once_in_one_clone_are_all_kept(tmp_path: Path) -> None:
    """Each plan is made under the clone's lock, so no writer builds on a text it read
    before another writer committed."""
    services = [f"svc-{n}" for n in range(4)]
    fleet = make_fleet(tmp_path / "fleet", services)
    target = fleet.stages[-1]
    for number in range(3):
        processes = [
            subprocess.Popen(
                [PLATFORM_BINARY, "hold", service, "--env", target, "--reason", f"round {number}"],
                cwd=fleet.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for service in services
        ]
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr
        assert fleet.holds(target) == set(services)
        reasons = {
            hold["reason"] for hold in load_repo(fleet.root).environment(target).holds.values()
        }
        assert reasons == {f"round {number}"}
        assert git(fleet.root, "status", "--porcelain") == ""
