"""After a rejected push the intent is planned again on the remote's tip, never rebased: a
hold or a rollback of the source that arrived meanwhile refuses it (exit 1, nothing pushed)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from platformctl import render
from platformctl.git import Git
from platformctl.imagefile import image_of
from platformctl.model import load_repo
from platformctl.release import _checkout_aside
from platformctl.render import Renderer
from tests.conftest import PLATFORM_BINARY, git
from tests.release.fleet import Fleet, bare_remote, clone_of, image, make_fleet, remote_holds


def platform(work: Fleet, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PLATFORM_FAULT": fault} if fault else {}
    return subprocess.run(
        [PLATFORM_BINARY, *args],
        cwd=work.root,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Fleet, Fleet]:
    """A remote and two clones; build 2 of alpha is in the first stage."""
    fleet = make_fleet(tmp_path / "origin", ["alpha", "beta"])
    fleet.set_image(fleet.stages[0], "alpha", 2)
    fleet.set_image(fleet.stages[0], "beta", 2)
    remote = bare_remote(fleet, tmp_path / "remote.git")
    return (
        remote,
        clone_of(remote, tmp_path / "a", fleet, "a"),
        clone_of(remote, tmp_path / "b", fleet, "b"),
    )


def state(work: Fleet) -> tuple[str, str]:
    return git(work.root, "rev-parse", "HEAD"), git(work.root, "status", "--porcelain")


def test_a_hold_that_reached_the_remote_refuses_the_promotion(
    two: tuple[Path, Fleet, Fleet],
) -> None:
    remote, first, second = two
    target = first.stages[1]
    held = platform(second, "hold", "alpha", "--env", target, "--reason", "incident 7", "--push")
    assert held.returncode == 0, held.stderr
    tip, before = git(remote, "rev-parse", "main"), state(first)
    refused = platform(first, "promote", "alpha", "--to", target, "--push")
    assert refused.returncode == 1, refused.stderr
    assert "held" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert git(remote, "rev-parse", "main") == tip  # nothing pushed
    assert state(first) == before


def test_a_source_stage_rolled_back_meanwhile_refuses_the_promotion(
    two: tuple[Path, Fleet, Fleet],
) -> None:
    remote, first, second = two
    source, target = first.stages[0], first.stages[1]
    rolled = platform(second, "rollback", "alpha", "--env", source, "--push")
    assert rolled.returncode == 0, rolled.stderr
    tip, before = git(remote, "rev-parse", "main"), state(first)
    refused = platform(first, "promote", "alpha", "--to", target, "--push")
    assert refused.returncode == 1, refused.stderr
    assert "rolled back or replaced meanwhile" in refused.stderr
    assert git(remote, "rev-parse", "main") == tip
    assert state(first) == before


def test_a_different_service_moved_meanwhile_is_no_conflict(
    two: tuple[Path, Fleet, Fleet],
) -> None:
    remote, first, second = two
    target = first.stages[1]
    assert platform(second, "promote", "beta", "--to", target, "--push").returncode == 0
    landed = platform(first, "promote", "alpha", "--to", target, "--push", "--output", "json")
    assert landed.returncode == 0, landed.stderr
    tip = git(remote, "rev-parse", "main").strip()
    for service in ("alpha", "beta"):
        text = git(remote, "show", f"{tip}:environments/{target}/{service}.yaml")
        assert image_of(text) == image(service, 2)
    # re-planned, not rebased: the new commit's parent is the remote's tip it found
    assert git(remote, "log", "-1", "--format=%s", tip).startswith("promote(alpha)")
    assert git(first.root, "status", "--porcelain") == ""


def test_a_commit_an_interrupted_run_left_is_replanned_on_a_moved_remote(
    two: tuple[Path, Fleet, Fleet],
) -> None:
    remote, first, second = two
    target = first.stages[1]
    hold = ("hold", "alpha", "--env", target, "--reason", "incident 8", "--push")
    assert platform(first, *hold, fault="synced").returncode == -signal.SIGKILL
    other = platform(second, "hold", "beta", "--env", target, "--reason", "y", "--push")
    assert other.returncode == 0, other.stderr
    again = platform(first, *hold)
    assert again.returncode == 0, again.stderr
    assert "pushed" in again.stdout
    tip = git(remote, "rev-parse", "main").strip()
    assert remote_holds(remote, tip, target) == {"alpha", "beta"}
    assert git(first.root, "rev-parse", "HEAD").strip() == tip
    assert git(first.root, "status", "--porcelain") == ""


def test_a_first_image_is_replanned_on_the_remote_tip(tmp_path: Path) -> None:
    """The stage has no image line for alpha yet (a new service): the intent read back has
    nothing it replaced, and the tip, where the file still has none, takes it as planned."""
    fleet = make_fleet(tmp_path / "origin", ["alpha", "beta"])
    source, target = fleet.stages[0], fleet.stages[1]
    fleet.set_image(source, "alpha", 2)
    fleet.set_image(source, "beta", 2)
    pending = fleet.values(target, "alpha")
    pending.write_text("".join(
        line for line in pending.read_text().splitlines(keepends=True)
        if not line.startswith("image:")
    ))  # fmt: skip
    git(fleet.root, "commit", "-qam", "alpha: not in the second stage yet")
    remote = bare_remote(fleet, tmp_path / "remote.git")
    first = clone_of(remote, tmp_path / "a", fleet, "a")
    second = clone_of(remote, tmp_path / "b", fleet, "b")
    assert platform(second, "promote", "beta", "--to", target, "--push").returncode == 0
    theirs = git(remote, "rev-parse", "main").strip()
    landed = platform(first, "promote", "alpha", "--to", target, "--push")
    assert landed.returncode == 0, landed.stderr
    tip = git(remote, "rev-parse", "main").strip()
    assert git(remote, "rev-parse", f"{tip}^").strip() == theirs
    relative = f"environments/{target}/alpha.yaml"
    assert image_of(git(remote, "show", f"{tip}:{relative}")) == image("alpha", 2)
    stat = git(remote, "show", "--numstat", "--format=", tip).split()
    assert stat == ["1", "0", relative]  # the image line, added on the tip's file
    assert git(first.root, "rev-parse", "HEAD").strip() == tip
    assert git(first.root, "status", "--porcelain") == ""


def test_a_chart_changed_on_the_remote_is_the_chart_the_replan_verifies(
    two: tuple[Path, Fleet, Fleet],
) -> None:
    """The re-plan checks the tip's charts, not the clone's: a template that breaks on the
    remote meanwhile refuses the promotion (this clone's own gate passed on its charts)."""
    remote, first, second = two
    target = first.stages[1]
    template = second.root / "charts/service/templates/configmap.yaml"
    template.write_text(template.read_text() + '\n{{ fail "broken on the remote" }}\n')
    git(second.root, "commit", "-qam", "chart: broken")
    git(second.root, "push", "-q", "origin", "main")
    tip, before = git(remote, "rev-parse", "main"), state(first)
    refused = platform(first, "promote", "alpha", "--to", target, "--push")
    assert refused.returncode != 0, refused.stdout
    assert "broken on the remote" in refused.stderr
    assert git(remote, "rev-parse", "main") == tip
    assert state(first) == before


def test_the_replan_shares_the_clones_charts_when_the_tip_has_the_same(
    two: tuple[Path, Fleet, Fleet], tmp_path: Path
) -> None:
    """Charts identical on the tip (by tree id) are not written out again: 20 MB per
    rejected push, and a chart digest that the clone's own cache already holds."""
    _, first, second = two
    held = platform(second, "hold", "beta", "--env", first.stages[1], "--reason", "x", "--push")
    assert held.returncode == 0, held.stderr
    git(first.root, "fetch", "-q")
    aside = tmp_path / "aside"
    aside.mkdir()
    _checkout_aside(Git(first.root), git(first.root, "rev-parse", "origin/main").strip(), aside)
    assert (aside / "charts").resolve() == (first.root / "charts").resolve()
    assert not (aside / "environments").is_symlink()
    settings = (aside / f"environments/{first.stages[1]}/environment.yaml").read_text()
    assert "beta" in settings  # the tip's environments, not the clone's

    template = second.root / "charts/service/templates/configmap.yaml"
    template.write_text(template.read_text() + "\n# changed\n")
    git(second.root, "commit", "-qam", "chart: changed")
    git(second.root, "push", "-q", "origin", "main")
    git(first.root, "fetch", "-q")
    changed = tmp_path / "changed"
    changed.mkdir()
    _checkout_aside(Git(first.root), git(first.root, "rev-parse", "origin/main").strip(), changed)
    assert not (changed / "charts").is_symlink()
    assert "# changed" in (changed / "charts/service/templates/configmap.yaml").read_text()


def test_a_chart_reached_through_a_link_keeps_its_known_digest(
    two: tuple[Path, Fleet, Fleet], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """charts.json is keyed by the chart's real path: a re-plan's link to the clone's charts
    finds the digest the clone's last command stored, without hashing 20 MB again."""
    _, first, _ = two
    chart = first.root / "charts/service"
    monkeypatch.setattr(render, "RACY_NS", 0)  # files of a fresh clone are stored at once
    known = Renderer(load_repo(first.root)).chart_digest(chart)
    aside = tmp_path / "aside"
    aside.mkdir()
    _checkout_aside(Git(first.root), git(first.root, "rev-parse", "HEAD").strip(), aside)
    hashed: list[Path] = []
    monkeypatch.setattr(render, "tree_digest", lambda path: hashed.append(path) or "")
    assert Renderer(load_repo(aside)).chart_digest(aside / "charts/service") == known
    assert hashed == []
