"""``platform verify`` records its last result per environment, whatever its outcome, and a
record it cannot read or write changes nothing of its answer."""

from __future__ import annotations

import datetime as dt
import errno
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from platformctl import verify_record
from platformctl.model import load_repo
from platformctl.policy.exceptions import Excepted, PolicyException
from platformctl.policy.findings import Finding
from platformctl.verify import TargetResult, VerifyReport
from platformctl.verify_record import (
    RECORD_FILE,
    last_results,
    record,
    record_path,
    results_of,
)
from tests.conftest import git
from tests.release.fleet import Fleet, make_fleet

Cli = Callable[..., Any]
ALPHA, BETA = SERVICES = ("alpha", "beta")


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return make_fleet(tmp_path / "repo", list(SERVICES))


def verify_alpha(cli: Cli, fleet: Fleet, stage: str) -> Any:
    """``verify`` of one service of ``stage``: enough for what a test of the record's file does
    to the run (it is written, and read back, for a ``-s`` run as for a whole environment),
    without rendering and checking the stage's add-ons in a cache of the test's own."""
    return cli(fleet.root, "verify", "-e", stage, "-s", ALPHA)


def strict_stage(fleet: Fleet) -> str:
    """A stage that refuses an image without a digest (PLAT001)."""
    return next(e.name for e in load_repo(fleet.root).environments if e.policy.require_digest)


def test_a_clean_run_is_recorded_for_the_environment_it_verified(fleet: Fleet, cli: Cli) -> None:
    first = fleet.stages[0]
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = cli(fleet.root, "verify", "-e", first, "-o", "json")
    assert result.exit_code == 0, result.output
    results = last_results(fleet.root)
    assert set(results) == {first}
    entry = results[first]
    assert entry.ok
    assert entry.failing == ()
    assert entry.services == ()
    assert entry.commit == git(fleet.root, "rev-parse", "HEAD").strip()
    assert entry.dirty is False
    assert before <= entry.when <= dt.datetime.now(dt.UTC)
    assert entry.when.utcoffset() == dt.timedelta(0)
    # every target of the environment: its Argo CD objects, add-ons and releases
    assert entry.targets == json.loads(result.stdout)["targets"] >= len(SERVICES) + 2


@pytest.mark.usefixtures("own_cache")
def test_a_failing_run_records_its_findings_as_the_json_output_prints_them(
    fleet: Fleet, cli: Cli
) -> None:
    stage = strict_stage(fleet)
    fleet.set_image(stage, ALPHA, 2, pinned=False, commit=False)
    result = cli(fleet.root, "verify", "-e", stage, "-o", "json")
    assert result.exit_code == 1, result.output
    printed = json.loads(result.stdout)
    path = fleet.root / ".platform-cache" / RECORD_FILE
    assert record_path(fleet.root) == path
    written = json.loads(path.read_text())["entries"][str(fleet.root.resolve())][stage]
    assert written["ok"] is False
    assert written["findings"] == printed["findings"]
    assert {(f["target"], f["check"]) for f in written["findings"]} >= {
        (f"{stage}/{ALPHA}", "PLAT001")
    }
    assert written["counts"] == {
        "targets": printed["targets"],
        "failing": len(printed["findings"]),
        "excepted": len(printed["excepted"]),
        "unused_exceptions": len(printed["unused_exceptions"]),
        "warnings": len(printed["warnings"]),
    }
    assert written["dirty"] is True  # the image edit is not committed
    assert written["scope"] == {"services": None}
    git(fleet.root, "commit", "-qam", "alpha by tag")
    cli(fleet.root, "verify", "-e", stage, "-o", "markdown")
    entry = last_results(fleet.root)[stage]
    assert not entry.ok
    assert entry.dirty is False
    assert entry.commit == git(fleet.root, "rev-parse", "HEAD").strip()


def test_a_service_run_records_its_scope_and_leaves_other_environments(
    fleet: Fleet, cli: Cli
) -> None:
    first, second = fleet.stages[:2]
    assert cli(fleet.root, "verify", "-e", first).exit_code == 0
    whole = last_results(fleet.root)[first]
    assert cli(fleet.root, "verify", "-e", second, "-s", ALPHA, "-o", "json").exit_code == 0
    results = last_results(fleet.root)
    assert results[first] == whole
    assert results[second].services == (ALPHA,)
    assert results[second].targets == 1
    # a whole-environment run replaces the entry and its scope
    assert cli(fleet.root, "verify", "-e", second).exit_code == 0
    assert last_results(fleet.root)[second].services == ()


@pytest.mark.usefixtures("own_cache")
def test_a_corrupt_record_is_no_record_and_is_replaced(fleet: Fleet, cli: Cli) -> None:
    first = fleet.stages[0]
    path = record_path(fleet.root)
    path.parent.mkdir()
    path.write_text('{"fingerprint": "verify-last/1", "entries": {"')
    assert last_results(fleet.root) == {}
    assert verify_alpha(cli, fleet, first).exit_code == 0
    assert set(last_results(fleet.root)) == {first}
    # an entry of the right file in a wrong shape is left out, not guessed at
    data = json.loads(path.read_text())
    data["entries"][str(fleet.root.resolve())][first]["counts"] = "many"
    path.write_text(json.dumps(data))
    assert last_results(fleet.root) == {}


@pytest.mark.usefixtures("own_cache")
def test_a_record_that_cannot_be_written_changes_no_exit_code(fleet: Fleet, cli: Cli) -> None:
    stage = strict_stage(fleet)
    record_path(fleet.root).mkdir(parents=True)  # a folder where the file would go
    assert verify_alpha(cli, fleet, stage).exit_code == 0
    fleet.set_image(stage, ALPHA, 2, pinned=False)
    failed = verify_alpha(cli, fleet, stage)
    assert failed.exit_code == 1
    assert "PLAT001" in failed.stdout
    assert last_results(fleet.root) == {}


@pytest.mark.usefixtures("own_cache")
@pytest.mark.parametrize("failure", ["no locks", "held by another"])
def test_a_record_that_cannot_be_locked_is_skipped_and_changes_no_answer(
    fleet: Fleet, cli: Cli, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A file system without locks (NFS without lockd: ENOLCK), or a holder that hangs: the
    run's result is not recorded, and verify prints and exits as it would have."""

    def flock(handle: Any, operation: int) -> None:
        if failure == "no locks":
            raise OSError(errno.ENOLCK, "No locks available")
        raise BlockingIOError(errno.EWOULDBLOCK, "held")

    monkeypatch.setattr(verify_record.fcntl, "flock", flock)
    monkeypatch.setattr(verify_record, "LOCK_WAIT", 0.1)
    stage = strict_stage(fleet)
    fleet.set_image(stage, ALPHA, 2, pinned=False)
    failed = verify_alpha(cli, fleet, stage)
    assert failed.exit_code == 1
    assert "PLAT001" in failed.stdout
    assert last_results(fleet.root) == {}


def test_a_shared_cache_folder_keeps_each_checkout_apart(tmp_path: Path, cli: Cli) -> None:
    one = make_fleet(tmp_path / "one", list(SERVICES))
    other = make_fleet(tmp_path / "other", list(SERVICES))
    assert record_path(one.root) == record_path(other.root)  # the session's shared folder
    stage = strict_stage(one)
    one.set_image(stage, ALPHA, 2, pinned=False)
    assert cli(one.root, "verify", "-e", stage).exit_code == 1
    assert cli(other.root, "verify", "-e", stage).exit_code == 0
    assert not last_results(one.root)[stage].ok
    assert last_results(other.root)[stage].ok


def finding(target: str, check: str = "PLAT001") -> Finding:
    return Finding(target, check, "Deployment/web", "no digest", "project")


def test_findings_of_no_single_verified_environment_go_to_each_of_them() -> None:
    exception = PolicyException(
        "PLAT002", "b/web", "vendor image", dt.date(2026, 12, 31), Path("x.yaml"), 0
    )
    report = VerifyReport(
        targets=[TargetResult(f"{env}/web", env, "web", False) for env in ("a", "b")],
        failing=[finding("a/web"), finding("argocd", "support-calendar"), finding("*/web")],
        excepted=[Excepted(finding("b/web", "PLAT002"), exception)],
        unused_exceptions=[],
        checked_by_checkov=2,
        warnings=["argocd 3.0 ends its support in 30 days"],
    )
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    a, b = results_of(report, ["a", "b", "c"], [], commit="c0ffee", dirty=False, now=now)
    assert (a.environment, b.environment) == ("a", "b")  # pipeline order; c was not verified
    assert [f["target"] for f in a.failing] == ["a/web", "argocd", "*/web"]
    assert [f["target"] for f in b.failing] == ["argocd", "*/web"]
    assert a.excepted == ()
    assert b.excepted[0]["expires"] == "2026-12-31"
    assert a.at == b.at == "2026-12-01T12:00:00+00:00"
    assert a.warnings == b.warnings == 1


@pytest.mark.usefixtures("own_cache")
def test_runs_of_different_environments_at_once_keep_each_others_entry(tmp_path: Path) -> None:
    """Each thread's read, merge and write is serialized; unlocked, a writer that read the
    record before another wrote it would drop that one's entry."""
    root = tmp_path / "repo"
    root.mkdir()
    names = [f"e{n}" for n in range(12)]

    def run(name: str) -> None:
        for _ in range(5):
            targets = [TargetResult(f"{name}/web", name, "web", False)]
            record(root, VerifyReport(targets, [], [], [], 0), names, [])

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(run, names))
    assert sorted(last_results(root)) == sorted(names)
