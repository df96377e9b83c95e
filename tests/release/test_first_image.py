"""A service's first image in a later stage: the promotion writes its image line and the
callers' egress there in one commit, survives a race on the remote, reads offline what the
registry gate would resolve, and changes nothing else of any file.

The repositories are copies of this one's stages and charts with a service the test onboards
with ``platform new service``; callers and stages are whatever the copy holds."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from platformctl.cli import app
from platformctl.imagefile import image_of
from platformctl.model import Image, Repo, load_repo
from platformctl.scaffold import EGRESS_KEY, allow_egress
from tests.conftest import edit_yaml, git, init_repo
from tests.release.fleet import Fleet, bare_remote, clone_of, digest, make_fleet, write_image

Cli = Callable[..., Any]
# Lines a hand-written values file may hold, which no edit of this tool may touch.
KEPT = (
    "# a comment with 'single' and \"double\" quotes\n"
    "podAnnotations:\n"
    '  platform.test/double: "1.33"  # double quoted\n'
    "  platform.test/single: '1.33'  # single quoted\n"
)


def _get(values: Any, key_path: tuple[str, ...]) -> Any:
    for key in key_path:
        values = (values or {}).get(key)
    return values


def _snapshot(root: Path) -> tuple[str, str]:
    return git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain", "-uall")


def _stat(root: Path, revision: str = "HEAD") -> dict[str, tuple[int, int]]:
    """File -> (lines added, lines removed) of a commit."""
    rows = git(root, "show", "--numstat", "--format=", revision).split("\n")
    return {
        name: (int(added), int(removed))
        for added, removed, name in (row.split("\t") for row in rows if row)
    }


def _kept_in_order(before: str, after: str) -> bool:
    """Every line of ``before`` is in ``after``, byte for byte and in order (lines added only)."""
    rest = iter(after.splitlines(keepends=True))
    return all(any(line == other for other in rest) for line in before.splitlines(keepends=True))


@dataclass(frozen=True)
class Onboarded:
    """A copy of this repository where ``service`` is new: in the first stage by tag, the
    later stages without an image line, its ``callers`` wired in the first stage."""

    root: Path
    stages: tuple[str, ...]
    service: str
    callers: tuple[str, ...]

    @classmethod
    def create(cls, root: Path) -> Onboarded:
        init_repo(root)
        model = load_repo(root)
        stages = model.environment_names
        service = next(f"orders-{n}" for n in count() if f"orders-{n}" not in model.services)
        every = [s for s in model.services if all((s, e) in model.releases for e in stages)]
        assert every, "the copy has no service running in every stage"
        made = cls(root, stages, service, tuple(every[:2]))
        # a hand-written caller file: quotes and comments that the egress edit must keep
        for stage in stages[1:]:
            with made.values(stage, made.callers[0]).open("a", encoding="utf-8") as handle:
                handle.write(KEPT)
        git(root, "commit", "-qam", "hand edits")
        result = CliRunner().invoke(
            app,
            ["--repo", str(root), "new", "service", service, "--callers", ",".join(made.callers)],
        )
        assert result.exit_code == 0, result.output
        git(root, "add", "-A")
        git(root, "commit", "-qm", f"new service {service}")
        return made

    def copy(self, root: Path) -> Onboarded:
        """The same repository (its verify cache included) at ``root``."""
        shutil.copytree(self.root, root, symlinks=True)
        return replace(self, root=root)

    def values(self, stage: str, service: str) -> Path:
        return self.root / "environments" / stage / f"{service}.yaml"

    def relative(self, stage: str, service: str) -> str:
        return str(self.values(stage, service).relative_to(self.root))

    def pin_first_stage(self) -> Image:
        """CI's build recorded with its digest in the first stage (a later stage needs one)."""
        path = self.values(self.stages[0], self.service)
        current = image_of(path.read_text())
        assert current is not None
        pinned = Image(current.repository, current.tag, digest(7))
        write_image(path, pinned)
        git(self.root, "commit", "-qam", "ci: digest of the first build")
        return pinned


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Onboarded:
    """Onboarded once (``platform new service`` verifies every stage); each test a copy."""
    return Onboarded.create(tmp_path_factory.mktemp("onboarded") / "repo")


@pytest.fixture
def onboarded(template: Onboarded, tmp_path: Path) -> Onboarded:
    return template.copy(tmp_path / "repo")


def _egress(model: Repo, caller: str, stage: str) -> list[str]:
    return list(_get(model.release(caller, stage).values, EGRESS_KEY) or [])


def test_the_first_promotion_wires_the_callers_egress_in_the_same_commit(
    onboarded: Onboarded, cli: Cli
) -> None:
    image = onboarded.pin_first_stage()
    new, callers = onboarded.service, onboarded.callers
    for stage in onboarded.stages[1:]:
        before = load_repo(onboarded.root)
        texts = {c: onboarded.values(stage, c).read_text() for c in callers}
        result = cli(onboarded.root, "promote", new, "--to", stage)
        assert result.exit_code == 0, result.output
        assert f"egress: {callers[0]} may call {new}" in result.stdout
        stat = _stat(onboarded.root)
        assert stat[onboarded.relative(stage, new)] == (1, 0)
        assert set(stat) == {onboarded.relative(stage, s) for s in (new, *callers)}
        assert all(removed == 0 for _, removed in stat.values())  # lines added, none changed
        after = load_repo(onboarded.root)
        assert after.release(new, stage).image == image
        for caller in callers:
            assert _kept_in_order(texts[caller], onboarded.values(stage, caller).read_text())
            assert _egress(after, caller, stage) == [*_egress(before, caller, stage), new]
            assert after.release(caller, stage).image == before.release(caller, stage).image
        assert KEPT in onboarded.values(stage, callers[0]).read_text()


def test_a_caller_whose_egress_names_the_service_already_is_left_alone(
    onboarded: Onboarded, cli: Cli
) -> None:
    onboarded.pin_first_stage()
    new, (caller, *others) = onboarded.service, onboarded.callers
    stage = onboarded.stages[1]
    model = load_repo(onboarded.root)
    # by hand, before the promotion: this caller's file in the stage names it already
    listed = [*_egress(model, caller, stage), new]
    path = onboarded.values(stage, caller)

    def name_it(data: Any) -> None:
        policy = data.setdefault("networkPolicy", {})
        policy.setdefault("egressTo", {})["services"] = listed

    edit_yaml(path, name_it)
    git(onboarded.root, "commit", "-qam", "egress by hand")
    assert allow_egress(load_repo(onboarded.root), caller, new, stage) == {}
    result = cli(onboarded.root, "promote", new, "--to", stage)
    assert result.exit_code == 0, result.output
    assert set(_stat(onboarded.root)) == {onboarded.relative(stage, s) for s in (new, *others)}


def test_a_caller_promoted_in_the_same_commit_gets_both_edits(
    onboarded: Onboarded, cli: Cli
) -> None:
    onboarded.pin_first_stage()
    new, caller, stage = onboarded.service, onboarded.callers[0], onboarded.stages[1]
    path = onboarded.values(onboarded.stages[0], caller)
    current = image_of(path.read_text())
    assert current is not None
    build = Image(current.repository, "9.9.9", digest(9))
    write_image(path, build)
    git(onboarded.root, "commit", "-qam", f"ci: {caller} 9.9.9")
    before = load_repo(onboarded.root)
    result = cli(onboarded.root, "promote", new, caller, "--to", stage)
    assert result.exit_code == 0, result.output
    after = load_repo(onboarded.root)
    assert after.release(caller, stage).image == build
    assert _egress(after, caller, stage) == [*_egress(before, caller, stage), new]
    assert _stat(onboarded.root)[onboarded.relative(stage, caller)][1] == 1  # the image line


def test_the_dry_run_shows_the_egress_lines_and_writes_nothing(
    onboarded: Onboarded, cli: Cli
) -> None:
    onboarded.pin_first_stage()
    stage, before = onboarded.stages[1], _snapshot(onboarded.root)
    result = cli(onboarded.root, "promote", onboarded.service, "--to", stage, "--dry-run")
    assert result.exit_code == 0, result.output
    for caller in onboarded.callers:
        assert f"+++ b/{onboarded.relative(stage, caller)}" in result.stdout
    args = ("promote", onboarded.service, "--to", stage, "--dry-run", "-o", "json")
    payload = json.loads(cli(onboarded.root, *args).stdout)
    assert [e["caller"] for e in payload["egress"]] == list(onboarded.callers)
    assert [e["file"] for e in payload["egress"]] == [
        onboarded.relative(stage, caller) for caller in onboarded.callers
    ]
    assert payload["changes"][0]["before"] is None
    assert _snapshot(onboarded.root) == before


# --- offline, and a stage that requires a digest the first stage does not record ---------------


def _gates(root: Path, stage: str, gates: dict[str, Any]) -> None:
    def set_gates(pipeline: Any) -> None:
        (entry,) = [s for s in pipeline["stages"] if s["name"] == stage]
        if gates:
            entry["gates"] = gates
        else:
            entry.pop("gates", None)

    edit_yaml(root / "environments/pipeline.yaml", set_gates, sequence_indent=4)
    settings = root / "environments" / stage / "environment.yaml"
    edit_yaml(settings, lambda data: data.setdefault("policy", {}).update(requireDigest=True))
    git(root, "commit", "-qam", f"{stage}: registry gate, digests required")


def test_offline_the_plan_marks_the_digest_the_registry_gate_would_resolve(
    onboarded: Onboarded, cli: Cli
) -> None:
    stage = onboarded.stages[1]
    _gates(onboarded.root, stage, {"registry": {}})
    before = _snapshot(onboarded.root)
    args = ("promote", onboarded.service, "--to", stage, "--dry-run", "--offline")
    result = cli(onboarded.root, *args)
    assert result.exit_code == 0, result.output
    row = rf"{onboarded.service}\s+\(no image\)\s+\S+\s+unknown \(offline\)"
    assert re.search(row, result.stdout)
    assert f"digest of {onboarded.service} unknown offline" in result.stdout
    assert "offline: not asked" in result.stdout
    payload = json.loads(cli(onboarded.root, *args, "-o", "json").stdout)
    (change,) = payload["changes"]
    assert change["digest"] is None
    assert change["digest_unknown"] is True
    every = cli(onboarded.root, "promote", "--all", "--to", stage, "--dry-run", "--offline")
    assert every.exit_code == 0, every.output
    assert re.search(rf"^{onboarded.service}\s+\(no image\)", every.stdout, re.MULTILINE)
    assert _snapshot(onboarded.root) == before


def test_a_real_promotion_without_the_digest_says_what_to_do(
    onboarded: Onboarded, cli: Cli
) -> None:
    stage, new = onboarded.stages[1], onboarded.service
    source_file = onboarded.relative(onboarded.stages[0], new)
    _gates(onboarded.root, stage, {"registry": {}})
    before = _snapshot(onboarded.root)
    overridden = cli(
        onboarded.root, "promote", new, "--to", stage, "--override", "registry", "--reason", "r"
    )
    assert overridden.exit_code == 2, overridden.output
    assert len(overridden.stderr.strip().splitlines()) == 1
    assert "drop registry from --override" in overridden.stderr
    assert f"pin the digest in {source_file}" in overridden.stderr
    assert _snapshot(onboarded.root) == before
    _gates(onboarded.root, stage, {})
    before = _snapshot(onboarded.root)
    ungated = cli(onboarded.root, "promote", new, "--to", stage)
    assert ungated.exit_code == 1, ungated.output  # the stage's policy refuses a tag alone
    assert len(ungated.stderr.strip().splitlines()) == 1
    assert f"add 'registry: {{}}' to the gates of {stage}" in ungated.stderr
    assert _snapshot(onboarded.root) == before


# --- a race on the remote: re-planned on its tip, the first image and the egress both ---------


@pytest.fixture
def remote_and_clones(onboarded: Onboarded, tmp_path: Path) -> tuple[Path, Fleet, Fleet]:
    onboarded.pin_first_stage()
    fleet = Fleet(onboarded.root, onboarded.stages, ())
    remote = bare_remote(fleet, tmp_path / "remote.git")
    return (
        remote,
        clone_of(remote, tmp_path / "a", fleet, "a"),
        clone_of(remote, tmp_path / "b", fleet, "b"),
    )


def test_a_first_image_is_replanned_on_a_tip_where_a_caller_file_moved(
    onboarded: Onboarded, remote_and_clones: tuple[Path, Fleet, Fleet], cli: Cli
) -> None:
    remote, first, second = remote_and_clones
    stage, new, caller = onboarded.stages[1], onboarded.service, onboarded.callers[0]
    # meanwhile, a merged hand edit of the caller's file in that stage
    moved = second.values(stage, caller)
    moved.write_text(moved.read_text() + "# reviewed in incident 9\n")
    git(second.root, "commit", "-qam", "a note")
    git(second.root, "push", "-q", "origin", "main")
    theirs = git(remote, "rev-parse", "main").strip()
    result = cli(first.root, "promote", new, "--to", stage, "--push")
    assert result.exit_code == 0, result.output
    tip = git(remote, "rev-parse", "main").strip()
    assert git(remote, "rev-parse", f"{tip}^").strip() == theirs  # re-planned on their tip
    text = git(remote, "show", f"{tip}:{onboarded.relative(stage, caller)}")
    assert text.endswith("# reviewed in incident 9\n")
    assert new in str(_get(load_repo(first.root).release(caller, stage).values, EGRESS_KEY))
    assert image_of(git(remote, "show", f"{tip}:{onboarded.relative(stage, new)}")) is not None
    changed = {onboarded.relative(stage, s) for s in (new, *onboarded.callers)}
    assert set(_stat(remote, tip)) == changed
    assert git(first.root, "rev-parse", "HEAD").strip() == tip
    assert git(first.root, "status", "--porcelain") == ""


def test_the_same_first_promotion_made_twice_lands_once(
    onboarded: Onboarded, remote_and_clones: tuple[Path, Fleet, Fleet], cli: Cli
) -> None:
    remote, first, second = remote_and_clones
    stage, new = onboarded.stages[1], onboarded.service
    landed = cli(second.root, "promote", new, "--to", stage, "--push")
    assert landed.exit_code == 0, landed.output
    theirs = git(remote, "rev-parse", "main").strip()
    again = cli(first.root, "promote", new, "--to", stage, "--push")
    assert again.exit_code == 0, again.output
    assert git(remote, "rev-parse", "main").strip() == theirs
    assert git(first.root, "rev-parse", "HEAD").strip() == theirs
    assert git(first.root, "status", "--porcelain") == ""


# --- only the image line: quotes and comments of every other line kept -------------------------


def test_promote_and_rollback_change_only_the_image_line(tmp_path: Path, cli: Cli) -> None:
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    source, target = fleet.stages[0], fleet.stages[1]
    values = fleet.values(target, "alpha")
    values.write_text(values.read_text() + KEPT)
    settings = values.with_name("environment.yaml")
    quoted, found = re.subn(
        r"(?m)^namespace: (\S+)$", r'namespace: "\1"  # quoted as written', settings.read_text()
    )
    assert found == 1
    settings.write_text(quoted)
    git(fleet.root, "commit", "-qam", "hand-written quotes")
    fleet.set_image(source, "alpha", 2)
    original = values.read_text()
    lines = original.splitlines(keepends=True)

    def outside_image(text: str) -> list[str]:
        return [line for line in text.splitlines(keepends=True) if not line.startswith("image:")]

    promoted = cli(fleet.root, "promote", "alpha", "--to", target)
    assert promoted.exit_code == 0, promoted.output
    assert outside_image(values.read_text()) == outside_image(original)
    assert values.read_text() != original
    settings_before = settings.read_text()
    rolled = cli(fleet.root, "rollback", "alpha", "--env", target, "--reason", "p95 high")
    assert rolled.exit_code == 0, rolled.output
    assert values.read_text() == original  # the old image line, byte for byte
    assert len(lines) == len(values.read_text().splitlines())
    # the hold is added below; every line that was there stays as written
    assert settings.read_text().startswith(settings_before)
    assert fleet.holds(target) == {"alpha"}
