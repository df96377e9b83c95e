"""Fixture repositories with services of the test's own, whatever this template ships.

The stages, their settings and the charts are this repository's; the services are copies of
whichever service it ships first, renamed, with images the test sets. Nothing here knows the
sample services' names or number.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformctl.imagefile import with_image
from platformctl.model import BASE_DIR, ENVIRONMENT_FILE, Image, load_repo
from platformctl.release import holds_of
from tests.conftest import (
    PROJECT_ROOT,
    _without_gates,
    edit_yaml,
    from_template,
    git,
    initial_commit,
)

REGISTRY = "registry.example/team"
# the builds of a pipeline in its steady state (make_pipeline): the last stage's, the one a
# second stage runs ahead of it, and the tag CI pushed to the first
LIVE, STAGED, BUILT = 1, 2, 3


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(service: str, n: int, *, pinned: bool = True) -> Image:
    """Build ``n`` of a service: tag 1.n.0 with its own digest (none unless ``pinned``: a tag
    CI has pushed, as a first stage may run it)."""
    return Image(f"{REGISTRY}/{service}", f"1.{n}.0", digest(n) if pinned else None)


def write_image(path: Path, built: Image) -> None:
    """A values file with its one-line image set to ``built`` (as CI or a promotion writes it)."""
    edited = with_image(path.read_text(), built)
    assert edited is not None, f"{path} has no one-line image"
    path.write_text(edited)


@dataclass(frozen=True)
class Fleet:
    root: Path
    stages: tuple[str, ...]
    services: tuple[str, ...]

    def values(self, stage: str, service: str) -> Path:
        return self.root / "environments" / stage / f"{service}.yaml"

    def image(self, stage: str, service: str) -> Image:
        return load_repo(self.root).release(service, stage).image

    def set_image(
        self, stage: str, service: str, build: int, *, commit: bool = True, pinned: bool = True
    ) -> None:
        path = self.values(stage, service)
        write_image(path, image(service, build, pinned=pinned))
        if commit:
            git(self.root, "commit", "-qam", f"ci: {service} build {build} in {stage}")

    def holds(self, stage: str) -> set[str]:
        return set(load_repo(self.root).environment(stage).holds)


def make_fleet(path: Path, services: list[str], *, build: int = 1) -> Fleet:
    """A git repository with ``services`` in every stage, all at ``build``, no gates."""
    stages = load_repo(PROJECT_ROOT).environment_names
    from_template(path, ("fleet", tuple(services), build), lambda t: _make(t, services, build))
    return Fleet(path, stages, tuple(services))


def _make(path: Path, services: list[str], build: int) -> None:
    project = load_repo(PROJECT_ROOT)
    template = project.services[0]
    shutil.copytree(PROJECT_ROOT / "charts", path / "charts")
    shutil.copytree(PROJECT_ROOT / "environments", path / "environments")
    environments = path / "environments"
    for stage in project.environment_names:
        for file in (environments / stage).glob("*.yaml"):
            if file.name != ENVIRONMENT_FILE:
                file.unlink()
    for file in (environments / BASE_DIR).glob("*.yaml"):
        file.unlink()
    base = (PROJECT_ROOT / "environments" / BASE_DIR / f"{template}.yaml").read_text()
    for service in services:
        (environments / BASE_DIR / f"{service}.yaml").write_text(base.replace(template, service))
        edit_yaml(environments / BASE_DIR / f"{service}.yaml", _peers_within(services))
        for stage in project.environment_names:
            text = (PROJECT_ROOT / "environments" / stage / f"{template}.yaml").read_text()
            renamed = text.replace(template, service)
            edited = with_image(renamed, image(service, build))
            assert edited is not None, f"{stage}/{template}.yaml has no one-line image"
            (environments / stage / f"{service}.yaml").write_text(edited)
    edit_yaml(environments / "pipeline.yaml", _without_gates, sequence_indent=4)
    initial_commit(path)


def make_pipeline(path: Path, services: list[str], ahead: list[str]) -> Fleet:
    """A pipeline's steady state: the first stage runs CI's tags (no digest), ``ahead`` runs a
    newer pinned build in the second stage, every later stage runs the first build."""
    fleet = make_fleet(path, services, build=LIVE)
    for service in services:
        fleet.set_image(fleet.stages[0], service, BUILT, pinned=False, commit=False)
    for service in ahead:
        fleet.set_image(fleet.stages[1], service, STAGED, commit=False)
    git(fleet.root, "commit", "-qam", "ci: new tags in the first stage, the second is ahead")
    return fleet


def _peers_within(services: list[str]) -> Callable[[Any], None]:
    """Network policy peers only among the fleet's services: the sync twin refuses a peer that
    selects no pods, and the template's peers are services this fleet does not have."""

    def prune(data: Any) -> None:
        policy = data.get("networkPolicy") or {}
        for direction in ("egressTo", "ingressFrom"):
            peers = policy.get(direction)
            if not isinstance(peers, dict) or "services" not in peers:
                continue
            kept = [peer for peer in peers["services"] if peer in services]
            if kept:
                peers["services"] = kept
            else:
                del peers["services"]
            if not peers:
                del policy[direction]

    return prune


def bare_remote(fleet: Fleet, path: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--bare", str(fleet.root), str(path)], check=True)
    return path


def clone_of(remote: Path, path: Path, fleet: Fleet, name: str) -> Fleet:
    subprocess.run(["git", "clone", "-q", str(remote), str(path)], check=True)
    git(path, "config", "user.email", f"{name}@example.com")
    git(path, "config", "user.name", name)
    cache = fleet.root / ".platform-cache"
    if cache.is_dir():
        shutil.copytree(cache, path / ".platform-cache")
    return Fleet(path, fleet.stages, fleet.services)


@dataclass(frozen=True)
class SlowPush:
    """A clone of a one-service fleet (build 2 waiting in the first stage) whose pushes wait
    at the remote's pre-receive hook: it touches ``started``, sleeps 30 s, then refuses."""

    origin: Fleet
    remote: Path
    work: Fleet
    hook: Path
    started: Path

    def wait_for_hook(self, process: subprocess.Popen[str]) -> None:
        """Until ``process``'s push reached the hook (bounded), not measuring anything."""
        deadline = time.monotonic() + 120
        while not self.started.exists() and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert self.started.exists(), process.communicate()


def slow_push(tmp_path: Path) -> SlowPush:
    origin = make_fleet(tmp_path / "origin", ["alpha"])
    origin.set_image(origin.stages[0], "alpha", 2)
    remote = bare_remote(origin, tmp_path / "remote.git")
    started = tmp_path / "hook-started"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ntouch {started}\nsleep 30\nexit 1\n")
    hook.chmod(0o755)
    work = clone_of(remote, tmp_path / "work", origin, "work")
    return SlowPush(origin, remote, work, hook, started)


def remote_holds(remote: Path, revision: str, stage: str) -> set[str]:
    """The services held in ``stage`` at ``revision`` of a (bare) repository."""
    return set(holds_of(git(remote, "show", f"{revision}:environments/{stage}/environment.yaml")))
