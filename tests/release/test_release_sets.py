"""Release sets: promote --all takes the images that ran together in the source stage for the
target's soak minimum, records the set in the trailers, and rollback --set restores it whole.

The fleet's history is dated with GIT_COMMITTER_DATE: staging ran build 1 from four days ago,
alpha and beta build 2 from two days ago (set A), and both build 3 from an hour ago (set B).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from platformctl.argocd import application_name
from platformctl.cli import app
from platformctl.errors import InputError
from platformctl.imagefile import image_of
from platformctl.model import Image
from platformctl.release_sets import commit_on_line
from tests.cli.test_bad_input import state
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, bare_remote, clone_of, image, make_fleet
from tests.support.argocd import TOKEN, AppState, FakeArgoCD
from tests.support.http import serve

SERVICES = ["alpha", "beta", "gamma"]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _commit_at(fleet: Fleet, message: str, age: dt.timedelta, *, amend: bool = False) -> str:
    stamp = f"@{int((NOW - age).timestamp())} +0000"
    subprocess.run(
        ["git", "-C", str(fleet.root), "commit", "-qa", *(["--amend"] if amend else []), "-F", "-"],
        input=message,
        text=True,
        check=True,
        env={**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
    )
    return git(fleet.root, "rev-parse", "HEAD").strip()


def _builds(fleet: Fleet, stage: str, builds: dict[str, int]) -> None:
    for service, build in builds.items():
        fleet.set_image(stage, service, build, commit=False)


def _soak(minimum: str | None) -> Any:
    def change(pipeline: Any) -> None:
        if minimum is None:
            pipeline["stages"][2].pop("gates", None)
        else:
            pipeline["stages"][2]["gates"] = {"soak": {"minimum": minimum}}

    return change


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Fleet, str, str]:
    """The dated fleet, built once; returns it with the commits sets A and B started at."""
    fleet = make_fleet(tmp_path_factory.mktemp("sets") / "fleet", SERVICES)
    staging = fleet.stages[1]
    edit_yaml(fleet.root / "environments/pipeline.yaml", _soak("24h"), sequence_indent=4)
    _commit_at(fleet, "initial, production soaks 24h", dt.timedelta(days=4), amend=True)
    _builds(fleet, staging, {"alpha": 2, "beta": 2})
    set_a = _commit_at(fleet, "staging: alpha and beta build 2", dt.timedelta(days=2))
    (fleet.root / "README.txt").write_text("not a release file\n")
    git(fleet.root, "add", "README.txt")
    _commit_at(fleet, "an unrelated change", dt.timedelta(days=1))
    _builds(fleet, staging, {"alpha": 3, "beta": 3})
    set_b = _commit_at(fleet, "staging: alpha and beta build 3", dt.timedelta(hours=1))
    return fleet, set_a, set_b


def _copy(fleet: Fleet, path: Path) -> Fleet:
    shutil.copytree(fleet.root, path, symlinks=True)
    return Fleet(path, fleet.stages, fleet.services)


@pytest.fixture
def fleet(tmp_path: Path, dated: tuple[Fleet, str, str]) -> tuple[Fleet, str, str]:
    """A copy of the dated fleet of the test's own."""
    template, set_a, set_b = dated
    return _copy(template, tmp_path / "fleet"), set_a, set_b


@pytest.fixture(scope="module")
def promoted(
    tmp_path_factory: pytest.TempPathFactory, dated: tuple[Fleet, str, str]
) -> tuple[Fleet, str]:
    """The dated fleet after promote --all into production (set A), built once."""
    template, set_a, _ = dated
    fleet = _copy(template, tmp_path_factory.mktemp("promoted") / "fleet")
    result = run(fleet, "promote", "--all", "--to", fleet.stages[2])
    assert result.exit_code == 0, result.output
    return fleet, set_a


def run(fleet: Fleet, *args: str) -> Result:
    return CliRunner().invoke(app, ["--repo", str(fleet.root), *args])


def trailer(fleet: Fleet, key: str, revision: str = "HEAD") -> str:
    text = git(fleet.root, "log", "-1", f"--format=%(trailers:key={key},valueonly)", revision)
    return text.strip()


def images(fleet: Fleet, stage: str) -> dict[str, Image]:
    return {service: fleet.image(stage, service) for service in SERVICES}


def test_promote_all_takes_the_newest_set_that_soaked(fleet: tuple[Fleet, str, str]) -> None:
    repo, set_a, _ = fleet
    staging, production = repo.stages[1], repo.stages[2]
    result = run(repo, "promote", "--all", "--to", production)
    assert result.exit_code == 0, result.output
    # set A (two days unchanged), not staging's files as they are now (build 3, an hour old)
    assert images(repo, production) == {
        "alpha": image("alpha", 2),
        "beta": image("beta", 2),
        "gamma": image("gamma", 1),
    }
    set_id = f"{staging}@{set_a[:12]}"
    assert trailer(repo, "Platform-Release-Set") == set_id
    assert f"release set {set_id}: {staging} as of {set_a[:12]}" in result.output
    assert "replaced since" in result.output
    gates = trailer(repo, "Platform-Gate").splitlines()[:2]
    assert [g.split(" ")[0] for g in gates] == ["soak/alpha", "soak/beta"]
    assert all(f"set {set_id} ran 1d23h" in g and "≥ 1d" in g for g in gates), gates


def test_no_set_soaked_long_enough_refuses_until_overridden(
    fleet: tuple[Fleet, str, str],
) -> None:
    repo, _, set_b = fleet
    staging, production = repo.stages[1], repo.stages[2]
    edit_yaml(repo.root / "environments/pipeline.yaml", _soak("5d"), sequence_indent=4)
    _commit_at(repo, "production soaks five days", dt.timedelta(minutes=30))
    before = state(repo.root)
    result = run(repo, "promote", "--all", "--to", production)
    assert result.exit_code == 1, result.output
    ready = NOW - dt.timedelta(hours=1) + dt.timedelta(days=5)
    assert result.stderr.startswith(
        f"error: no release set of {staging} has run 5d unchanged: the newest, "
        f"{staging}@{set_b[:12]}, will have at {ready:%Y-%m-%d %H:%M} UTC"
    )
    assert state(repo.root) == before

    result = run(
        repo, "promote", "--all", "--to", production, "--override", "soak", "--reason", "INC-9"
    )
    assert result.exit_code == 0, result.output
    assert fleet_images_are(repo, production, 3)
    assert trailer(repo, "Platform-Release-Set") == f"{staging}@{set_b[:12]}"
    assert trailer(repo, "Platform-Gate").startswith("soak/alpha overridden")


def fleet_images_are(repo: Fleet, stage: str, build: int) -> bool:
    found = images(repo, stage)
    return found["alpha"] == image("alpha", build) and found["beta"] == image("beta", build)


def test_without_a_soak_gate_the_set_is_the_current_state(fleet: tuple[Fleet, str, str]) -> None:
    repo, _, set_b = fleet
    staging, production = repo.stages[1], repo.stages[2]
    edit_yaml(repo.root / "environments/pipeline.yaml", _soak(None), sequence_indent=4)
    _commit_at(repo, "production without gates", dt.timedelta(minutes=30))
    result = run(repo, "promote", "--all", "--to", production, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["release_set"]["id"] == f"{staging}@{set_b[:12]}"
    assert plan["release_set"]["until"] is None
    assert {c["service"]: c["tag"] for c in plan["changes"]} == {"alpha": "1.3.0", "beta": "1.3.0"}


def test_a_set_holding_a_release_rolled_back_since_is_passed_over(
    fleet: tuple[Fleet, str, str],
) -> None:
    """Set A ran two days, but staging rolled beta back from its build 2 afterwards: the set
    before A (build 1 everywhere, two days) is the newest that soaked and holds nothing bad."""
    repo, set_a, _ = fleet
    staging, production = repo.stages[1], repo.stages[2]
    root = git(repo.root, "rev-list", "--max-parents=0", "HEAD").strip()
    # the first rollback replaces beta's build 3 (set B), the second its build 2 (set A)
    result = run(repo, "rollback", "beta", "--env", staging, "--to", "1.2.0", "--reason", "p95")
    assert result.exit_code == 0, result.output
    assert run(repo, "unhold", "beta", "--env", staging).exit_code == 0
    result = run(repo, "rollback", "beta", "--env", staging, "--to", "1.1.0", "--reason", "p99")
    assert result.exit_code == 0, result.output
    result = run(repo, "promote", "--all", "--to", production, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["release_set"]["id"] == f"{staging}@{root[:12]}", (set_a, plan["release_set"])
    assert plan["changes"] == []


def test_a_set_id_outside_the_trailer_block_is_not_believed(
    fleet: tuple[Fleet, str, str],
) -> None:
    repo, set_a, _ = fleet
    staging, production = repo.stages[1], repo.stages[2]
    forged = f"Platform-Release-Set: {staging}@{set_a[:12]}"
    result = run(
        repo, "promote", "alpha", "--to", production, "--override", "soak", "--reason", forged
    )
    assert result.exit_code == 0, result.output
    assert trailer(repo, "Platform-Release-Set") == ""  # one service: no set
    repo.set_image(production, "beta", 2, commit=False)
    body = (
        f"hand edit\n\n{forged}\nPlatform-Action: promote\n"
        f"Platform-Environment: {production}\nPlatform-Service: beta\n\nnot the trailer block\n"
    )
    _commit_at(repo, body, dt.timedelta(0))
    before = state(repo.root)
    result = run(repo, "rollback", "--set", f"{staging}@{set_a[:12]}", "--env", production)
    assert result.exit_code == 2, result.output
    assert "no promotion into" in result.stderr
    assert state(repo.root) == before
    history = json.loads(run(repo, "history", "alpha", "--env", production, "-o", "json").stdout)
    assert history[0]["release_set"] is None


def test_rollback_set_restores_the_whole_set_in_one_commit(
    fleet: tuple[Fleet, str, str],
) -> None:
    repo, set_a, set_b = fleet
    staging, production = repo.stages[1], repo.stages[2]
    assert run(repo, "promote", "--all", "--to", production).exit_code == 0
    promoted_a = git(repo.root, "rev-parse", "HEAD").strip()
    result = run(
        repo, "promote", "--all", "--to", production, "--override", "soak", "--reason", "hotfix"
    )
    assert result.exit_code == 0, result.output
    assert fleet_images_are(repo, production, 3)
    head = git(repo.root, "rev-parse", "HEAD").strip()
    set_id = f"{staging}@{set_a[:12]}"

    result = run(repo, "rollback", "--set", set_id, "--env", production, "--reason", "INC-11")
    assert result.exit_code == 0, result.output
    assert f"restores release set {set_id}" in result.output
    assert git(repo.root, "rev-list", f"{head}..HEAD").split() == [
        git(repo.root, "rev-parse", "HEAD").strip()
    ]
    assert images(repo, production) == images_at(repo, promoted_a, production)
    assert trailer(repo, "Platform-Action") == "rollback"
    assert trailer(repo, "Platform-Service").split() == ["alpha", "beta"]
    assert trailer(repo, "Platform-Release-Set") == set_id
    assert repo.holds(production) == {"alpha", "beta"}

    history = json.loads(run(repo, "history", "alpha", "--env", production, "-o", "json").stdout)
    assert [e["release_set"] for e in history[:3]] == [set_id, f"{staging}@{set_b[:12]}", set_id]
    table = run(repo, "history", "beta", "--env", production).stdout
    assert set_id in table.splitlines()[1]

    status = json.loads(run(repo, "status", "-e", production, "-o", "json").stdout)
    assert {row["service"]: row["release_set"] for row in status} == {
        "alpha": set_id,
        "beta": set_id,
        "gamma": None,
    }
    text = run(repo, "status").stdout
    assert f"set: {production} runs {set_id} (alpha, beta)" in text

    again = run(repo, "rollback", "--set", set_id, "--env", production)
    assert again.exit_code == 0, again.output
    assert "nothing to rollback" in again.output


def images_at(repo: Fleet, revision: str, stage: str) -> dict[str, Image | None]:
    found = {}
    for service in SERVICES:
        text = git(repo.root, "show", f"{revision}:environments/{stage}/{service}.yaml")
        found[service] = image_of(text)
    return found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "{unknown}", "--env", "{t2}"), "no promotion into {t2} carries"),
        (("--set", "{a}", "--env", "{t1}"), "it went into {t2}"),
        (("--set", "staging", "--env", "{t2}"), "is not a release set id"),
        (("--set", "{a}\n", "--env", "{t2}"), "is not a release set id"),
        (("alpha", "--set", "{a}", "--env", "{t2}"), "--set restores a whole set"),
        (("--all", "--set", "{a}", "--env", "{t2}"), "--set restores a whole set"),
        (("--set", "{a}", "--to", "1.1.0", "--env", "{t2}"), "--set restores a whole set"),
    ],
    ids=["unknown id", "another env", "malformed", "newline", "service", "all", "to"],
)
def test_rollback_set_bad_input_is_one_line_exit_2_nothing_written(
    promoted: tuple[Fleet, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    template, set_a = promoted
    repo = _copy(template, tmp_path / "fleet")
    names = {
        "t1": repo.stages[1],
        "t2": repo.stages[2],
        "a": f"{repo.stages[1]}@{set_a[:12]}",
        "unknown": f"{repo.stages[1]}@{'0' * 12}",
    }
    before = state(repo.root)
    result = run(repo, "rollback", *(arg.format(**names) for arg in args))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message.format(**names) in result.stderr
    assert state(repo.root) == before


def test_a_file_without_a_release_has_no_set(tmp_path: Path) -> None:
    """A service staging got after the set ran is left out of the promotion, and said so."""
    repo = make_fleet(tmp_path / "fleet", ["alpha", "beta"])
    staging, production = repo.stages[1], repo.stages[2]
    edit_yaml(repo.root / "environments/pipeline.yaml", _soak("1d"), sequence_indent=4)
    path = repo.values(staging, "beta")
    text = path.read_text()
    git(repo.root, "rm", "-q", str(path))
    _commit_at(repo, "staging without beta", dt.timedelta(days=3), amend=True)
    path.write_text(text)
    git(repo.root, "add", str(path))
    _commit_at(repo, "beta arrives in staging", dt.timedelta(hours=2))
    result = run(repo, "promote", "--all", "--to", production, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["not_in_set"] == ["beta"]


@pytest.fixture
def clones(tmp_path: Path, fleet: tuple[Fleet, str, str]) -> tuple[Path, Fleet, Fleet, str]:
    """The dated fleet as a remote and two clones of it, and the commit set A started at."""
    origin, set_a, _ = fleet
    remote = bare_remote(origin, tmp_path / "remote.git")
    first = clone_of(remote, tmp_path / "a", origin, "a")
    second = clone_of(remote, tmp_path / "b", origin, "b")
    return remote, first, second, set_a


def test_a_rejected_push_lands_the_same_set_on_the_remote_tip(
    clones: tuple[Path, Fleet, Fleet, str],
) -> None:
    remote, first, second, set_a = clones
    staging, production = first.stages[1], first.stages[2]
    held = run(second, "hold", "gamma", "--env", production, "--reason", "audit", "--push")
    assert held.exit_code == 0, held.output
    result = run(first, "promote", "--all", "--to", production, "--push")
    assert result.exit_code == 0, result.output
    assert trailer(first, "Platform-Release-Set", "origin/main") == f"{staging}@{set_a[:12]}"
    tip = git(remote, "rev-parse", "main").strip()
    assert (
        git(remote, "rev-parse", f"{tip}^").strip() == git(second.root, "rev-parse", "HEAD").strip()
    )
    assert images_at(first, tip, production)["beta"] == image("beta", 2)


def test_a_set_rolled_back_on_the_remote_meanwhile_refuses_the_push(
    clones: tuple[Path, Fleet, Fleet, str],
) -> None:
    remote, first, second, _ = clones
    staging, production = first.stages[1], first.stages[2]
    for args in (
        ("rollback", "beta", "--env", staging, "--to", "1.2.0", "--push"),
        ("unhold", "beta", "--env", staging, "--push"),
        ("rollback", "beta", "--env", staging, "--to", "1.1.0", "--push"),
    ):
        assert run(second, *args).exit_code == 0, args
    tip = git(remote, "rev-parse", "main")
    before = git(first.root, "rev-parse", "HEAD"), git(first.root, "status", "--porcelain")
    result = run(first, "promote", "--all", "--to", production, "--push")
    assert result.exit_code == 1, result.output
    assert "release set to promote is" in result.stderr
    assert git(remote, "rev-parse", "main") == tip  # nothing pushed, the branch as it was
    assert (
        git(first.root, "rev-parse", "HEAD"),
        git(first.root, "status", "--porcelain"),
    ) == before


def test_status_of_an_exported_tree_shows_no_sets(
    promoted: tuple[Fleet, str], tmp_path: Path
) -> None:
    """A tree without its clone (an archive) has no ledger: status still answers."""
    repo = _copy(promoted[0], tmp_path / "export")
    shutil.rmtree(repo.root / ".git")
    result = run(repo, "status", "-o", "json")
    assert result.exit_code == 0, result.output
    assert {row["release_set"] for row in json.loads(result.stdout)} == {None}


def test_promote_all_never_downgrades_a_later_release_without_force(
    fleet: tuple[Fleet, str, str],
) -> None:
    """beta went to production alone (build 3, soak overridden): set A's build 2 of it is an
    older release, so promote --all leaves beta out and says so; --force downgrades it."""
    repo, set_a, _ = fleet
    staging, production = repo.stages[1], repo.stages[2]
    alone = ("--to", production, "--override", "soak", "--reason", "hotfix")
    assert run(repo, "promote", "beta", *alone).exit_code == 0
    result = run(repo, "promote", "--all", "--to", production)
    assert result.exit_code == 0, result.output
    assert images(repo, production)["alpha"] == image("alpha", 2)
    assert images(repo, production)["beta"] == image("beta", 3)
    assert trailer(repo, "Platform-Service").split() == ["alpha"]
    set_id = f"{staging}@{set_a[:12]}"
    assert f"left out beta: {production} already runs a later release" in result.output
    assert f"ran after release set {set_id}" in result.output

    again = run(repo, "promote", "--all", "--to", production, "--dry-run", "-o", "json")
    assert json.loads(again.stdout)["later_in_target"] == ["beta"]
    forced = run(
        repo, "promote", "--all", "--to", production, "--force", "--reason", "revert beta",
        "--dry-run", "-o", "json",
    )  # fmt: skip
    assert forced.exit_code == 0, forced.output
    plan = json.loads(forced.stdout)
    assert plan["later_in_target"] == []
    assert {c["service"]: c["tag"] for c in plan["changes"]} == {"beta": "1.2.0"}


def _promote_all_on_a_side_branch(repo: Fleet, then_undo: bool) -> None:
    """promote --all into production on a side branch (undone there by hand if
    ``then_undo``), merged into the watched branch with a merge commit of its own."""
    production = repo.stages[2]
    branch = git(repo.root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    git(repo.root, "checkout", "-q", "-b", "side")
    assert run(repo, "promote", "--all", "--to", production).exit_code == 0
    if then_undo:
        for service in ("alpha", "beta"):
            repo.set_image(production, service, 1, commit=False)
        _commit_at(repo, "production back to build 1", dt.timedelta(0))
    git(repo.root, "checkout", "-q", branch)
    git(repo.root, "merge", "-q", "--no-ff", "-m", "Merge pull request #7 from side", "side")


def test_a_set_promotion_undone_on_its_side_branch_is_no_promotion(
    fleet: tuple[Fleet, str, str],
) -> None:
    """Only the first-parent line counts: the merge brought in a pull request whose newest
    commit put production back, so no commit of the branch promoted set A into it."""
    repo, set_a, _ = fleet
    staging, production = repo.stages[1], repo.stages[2]
    _promote_all_on_a_side_branch(repo, then_undo=True)
    before = state(repo.root)
    result = run(repo, "rollback", "--set", f"{staging}@{set_a[:12]}", "--env", production)
    assert result.exit_code == 2, result.output
    assert f"no promotion into {production} carries" in result.stderr
    assert state(repo.root) == before


def test_a_set_promotion_merged_as_a_pull_request_is_restored(
    fleet: tuple[Fleet, str, str],
) -> None:
    repo, set_a, _ = fleet
    staging, production = repo.stages[1], repo.stages[2]
    _promote_all_on_a_side_branch(repo, then_undo=False)
    merge = git(repo.root, "rev-parse", "HEAD").strip()
    repo.set_image(production, "alpha", 3)
    result = run(repo, "rollback", "--set", f"{staging}@{set_a[:12]}", "--env", production)
    assert result.exit_code == 0, result.output
    assert images(repo, production) == images_at(repo, merge, production)


def test_a_set_commit_prefix_resolves_on_the_line_only(fleet: tuple[Fleet, str, str]) -> None:
    """A prefix two commits of the branch share is ambiguous (said so); a ref named like the
    set's commit does not stand in for it."""
    repo, set_a, set_b = fleet
    for n in range(16):  # 17 commits or more: two share their first hex digit
        git(repo.root, "commit", "-q", "--allow-empty", "-m", f"empty {n}")
    line = git(repo.root, "rev-list", "--first-parent", "HEAD").split()
    assert commit_on_line(set_a[:12], line, "set") == set_a
    shared = next(c[:1] for i, c in enumerate(line) if any(o[:1] == c[:1] for o in line[i + 1 :]))
    with pytest.raises(InputError, match=f"set: commit {shared} is ambiguous"):
        commit_on_line(shared, line, "set")
    with pytest.raises(InputError, match="is not in the branch's history"):
        commit_on_line("0" * 12, [c for c in line if not c.startswith("0" * 12)], "set")
    staging, production = repo.stages[1], repo.stages[2]
    assert run(repo, "promote", "--all", "--to", production).exit_code == 0
    promoted = images(repo, production)
    repo.set_image(production, "alpha", 3)
    git(repo.root, "tag", set_a[:12], set_b)
    result = run(repo, "rollback", "--set", f"{staging}@{set_a[:12]}", "--env", production)
    assert result.exit_code == 0, result.output
    assert images(repo, production) == promoted


def test_the_automatic_rollback_of_a_set_promotion_restores_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """promote --all --push --wait: alpha's canary aborts in production, beta's is healthy;
    the rollback restores both (the promotion moved both) and records the set it undoes,
    without claiming production runs that set."""
    fake = FakeArgoCD(polls_to_sync=1)
    with serve(fake.handle) as argocd:
        monkeypatch.setenv("ARGOCD_TOKEN_TEST", TOKEN)
        fleet = make_fleet(tmp_path / "origin", SERVICES)
        staging, production = fleet.stages[1], fleet.stages[2]
        fleet.set_image(staging, "alpha", 2)
        fleet.set_image(staging, "beta", 2)

        def endpoints(settings: Any) -> None:
            settings["endpoints"]["argocd"] = {"url": argocd, "tokenEnv": "ARGOCD_TOKEN_TEST"}

        edit_yaml(fleet.root / "environments" / production / "environment.yaml", endpoints)
        git(fleet.root, "commit", "-qam", "endpoints of the test")
        remote = bare_remote(fleet, tmp_path / "remote.git")
        work = clone_of(remote, tmp_path / "work", fleet, "work")

        def tip() -> str:
            return git(remote, "rev-parse", "main").strip()

        def on_sync(name: str, revision: str) -> str:
            text = git(remote, "show", f"{revision}:environments/{production}/alpha.yaml")
            bad = name.startswith("alpha") and image_of(text) == image("alpha", 2)
            return "aborted" if bad else "healthy"

        for service in ("alpha", "beta"):
            fake.apps[application_name(service, production)] = AppState(revision=tip())
        fake.on_refresh = lambda _name: tip()
        fake.on_sync = on_sync
        result = run(
            work, "promote", "--all", "--to", production, "--push", "--wait",
            "--wait-interval", "0.01",
        )  # fmt: skip
    assert result.exit_code == 1, result.output
    rollback = tip()
    set_id = trailer(work, "Platform-Release-Set", f"{rollback}^")
    assert set_id.startswith(f"{staging}@"), set_id
    assert git(
        remote, "log", "-1", "--format=%(trailers:key=Platform-Action,valueonly)"
    ).strip() == ("rollback")
    git(work.root, "fetch", "-q", "origin")
    assert trailer(work, "Platform-Service", "origin/main").split() == ["alpha", "beta"]
    assert trailer(work, "Platform-Rolled-Back-Set", "origin/main") == set_id
    assert trailer(work, "Platform-Release-Set", "origin/main") == ""
    assert images_at(work, rollback, production) == {
        "alpha": image("alpha", 1),
        "beta": image("beta", 1),
        "gamma": image("gamma", 1),
    }
