"""The performance harness: the fleet it makes, and a run of it on a tiny fleet (no timings
are asserted here; the figures are the README's)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import main
from benchmarks.fleet import generate
from benchmarks.harness import offline_gates
from platformctl.git import Git
from platformctl.ledger import history
from platformctl.model import ADDONS_DIR, BASE_DIR, ENVIRONMENTS_DIR, PIPELINE_FILE, load_repo
from platformctl.yamlio import read_mapping
from tests.conftest import PROJECT_ROOT, edit_yaml, git
from tests.release.fleet import make_fleet

pytestmark = pytest.mark.long  # minutes: handed out first


def _peer(direction: str, service: str) -> Callable[[Any], None]:
    def add(values: Any) -> None:
        values.setdefault("networkPolicy", {})[direction] = {"services": [service]}

    return add


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the fleet copies: a repository whose svc-a calls svc-b (network policy both ways)."""
    origin = make_fleet(tmp_path_factory.mktemp("source") / "repo", ["svc-a", "svc-b"])
    edit_yaml(origin.values(BASE_DIR, "svc-a"), _peer("egressTo", "svc-b"))
    edit_yaml(origin.values(BASE_DIR, "svc-b"), _peer("ingressFrom", "svc-a"))
    git(origin.root, "commit", "-qam", "svc-a calls svc-b")
    return origin.root


@pytest.fixture(scope="module")
def two_stages(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the harness runs measure over (``--source``): ``source`` with only its first and
    last stages, the fewest every row needs (a promotion into the second stage, a rollback in
    the last). The usual way and ``verify_full`` render and check every add-on's upstream chart
    once per environment, whatever the number of services: each stage less is a third of the
    run. Its second stage keeps only gates that ask the network, which the harness overrides
    (a freeze or soak gate would make the promotions depend on the clock)."""
    root = tmp_path_factory.mktemp("two-stages") / "repo"
    git(source, "clone", "-q", str(source), str(root))
    dropped: list[str] = []

    def first_and_last(pipeline: Any) -> None:
        stages = pipeline["stages"]
        dropped.extend(stage["name"] for stage in stages[1:-1])
        del stages[1:-1]
        # gates that ask the network, unreachable here: the promotions pass only if the harness
        # overrides them (benchmarks.harness.offline_gates)
        stages[1]["gates"] = {"registry": {}, "argocd": {}}

    edit_yaml(root / ENVIRONMENTS_DIR / PIPELINE_FILE, first_and_last, sequence_indent=4)
    for stage in dropped:
        addons = f"{ENVIRONMENTS_DIR}/{ADDONS_DIR}/{stage}.yaml"
        git(root, "rm", "-rq", f"{ENVIRONMENTS_DIR}/{stage}", addons)
    git(root, "commit", "-qam", f"only the first and last stages (not {', '.join(dropped)})")
    second = load_repo(root).environments[1]
    assert (len(load_repo(root).environments), second.gates.names) == (2, ("registry", "argocd"))
    return root


@pytest.fixture(scope="module")
def fleet(source: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return generate(
        tmp_path_factory.mktemp("fleet") / "repo", services=6, history=400, source=source
    )


def test_fleet_is_a_valid_repository_of_n_services(fleet) -> None:  # type: ignore[no-untyped-def]
    repo = load_repo(fleet.root)
    assert repo.services == tuple(sorted(fleet.services))
    assert len(fleet.services) == 6
    assert {name for (name, _) in repo.releases} == set(fleet.services)
    assert {env for (_, env) in repo.releases} == set(fleet.environments)
    # renamed within their block: a caller's peers are its own block's services
    for block in ("00", "01", "02"):
        base = fleet.root / "environments" / BASE_DIR
        caller = read_mapping(base / f"svc-a-{block}.yaml")["networkPolicy"]
        assert caller["egressTo"]["services"] == [f"svc-b-{block}"]
        callee = read_mapping(base / f"svc-b-{block}.yaml")["networkPolicy"]
        assert callee["ingressFrom"]["services"] == [f"svc-a-{block}"]


def test_history_has_the_asked_length_and_a_clean_tree(fleet) -> None:  # type: ignore[no-untyped-def]
    assert git(fleet.root, "rev-list", "--count", "HEAD").strip() == "400"
    assert git(fleet.root, "status", "--porcelain") == ""


def test_every_stage_leads_the_next(fleet) -> None:  # type: ignore[no-untyped-def]
    """So promote --all has a change for every service."""
    repo = load_repo(fleet.root)
    stages = [env.name for env in repo.environments]
    for service in repo.services:
        images = [repo.release(service, stage).image for stage in stages]
        assert len(set(images)) == len(stages), (service, images)
        assert all(image.digest for image in images)


def test_history_holds_promotions_rollbacks_and_hand_edits(fleet) -> None:  # type: ignore[no-untyped-def]
    log = git(fleet.root, "log", "--format=%B")
    assert "Platform-Action: promote" in log
    assert "Platform-Action: rollback" in log
    assert ": log level " in log
    repo = load_repo(fleet.root)
    actions = {
        entry.action
        for service in repo.services
        for entry in history(Git(fleet.root), repo.release(service, "production"))
    }
    assert {"promote", "manual"} <= actions


def test_fleet_generation_is_reproducible(tmp_path: Path, source: Path, fleet) -> None:  # type: ignore[no-untyped-def]
    again = generate(tmp_path / "again", services=6, history=400, source=source)
    assert git(again.root, "rev-parse", "HEAD^{tree}") == git(
        fleet.root, "rev-parse", "HEAD^{tree}"
    )


@pytest.mark.parametrize(
    ("services", "history_length"), [(0, 10), (3, 1)], ids=["no-services", "no-history"]
)
def test_fleet_refuses_empty_sizes(tmp_path: Path, services: int, history_length: int) -> None:
    with pytest.raises(ValueError, match="at least"):
        generate(tmp_path / "f", services=services, history=history_length)
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("services", [1, 3])
def test_a_fleet_whose_last_block_would_name_a_missing_peer_is_refused(
    tmp_path: Path, source: Path, services: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """``source``'s svc-a calls svc-b: a last block of svc-a alone would name a svc-b it does
    not have (its network policy and its peers' would be broken, and verify would fail)."""
    block = services // 2
    with pytest.raises(ValueError, match=f"svc-a-{block:02d} would name svc-b-{block:02d}"):
        generate(tmp_path / "f", services=services, history=10, source=source)
    assert not (tmp_path / "f").exists()
    kept = ["--keep", str(tmp_path / "kept")]
    assert main(["--services", str(services), "--source", str(source), *kept]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert "use a multiple of 2 (the source's services)" in error
    assert not (tmp_path / "kept").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--services", "0"], "not a positive number"),
        (["--history", "1"], "at least two commits"),
        (["--runs", "x"], "invalid"),
    ],
)
def test_bad_arguments_exit_2(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_promotion_overrides_only_the_gates_that_ask_the_network(
    source: Path, two_stages: Path, tmp_path: Path
) -> None:
    """The harness is offline: the second stage's network gates are overridden (with the
    reason recorded), its own gates (freeze, soak) are not, and no gates means no options."""
    assert offline_gates(load_repo(source).environments[1]) == ()
    network = ("--override", "registry", "--override", "argocd", "--reason", "benchmark")
    assert offline_gates(load_repo(two_stages).environments[1]) == network
    local = tmp_path / "local"
    git(tmp_path, "clone", "-q", str(two_stages), str(local))

    def local_gates(pipeline: Any) -> None:
        pipeline["stages"][1]["gates"].update(
            soak={"minimum": "1h"},
            freeze={
                "timezone": "UTC",
                "windows": [{"name": "past", "from": "2020-01-01", "until": "2020-01-02"}],
            },
        )

    edit_yaml(local / ENVIRONMENTS_DIR / PIPELINE_FILE, local_gates, sequence_indent=4)
    second = load_repo(local).environments[1]
    assert {"soak", "freeze", "registry", "argocd"} == set(second.gates.names)
    assert offline_gates(second) == network


def test_an_unknown_row_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--only", "status,statsu"])
    assert exit_.value.code == 2
    assert "statsu: not a row (rows: usual_way," in capsys.readouterr().err


def test_keep_refuses_an_existing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--keep", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err


def test_a_source_that_is_not_a_platform_repository_exits_2(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    untracked = tmp_path / "untracked"  # the files, outside git: the fleet copies from git
    shutil.copytree(source, untracked, ignore=shutil.ignore_patterns(".git"))
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(empty))
    pending = tmp_path / "pending"  # a service without an image in a stage
    git(tmp_path, "clone", "-q", str(source), str(pending))
    last = load_repo(source).environment_names[-1]
    (pending / ENVIRONMENTS_DIR / last / "svc-a.yaml").write_text("replicaCount: 1\n")
    git(pending, "commit", "-qam", "svc-a: no image in the last stage yet")
    expected = {
        tmp_path / "nothing": "not a git working tree",
        untracked: "not a git working tree",
        empty: "pipeline.yaml",
        pending: "no image",
    }
    for path, message in expected.items():
        assert main(["--source", str(path)]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: --source {path}: "), error
        assert message in error, error


def _harness(
    tmp_path: Path, source: Path, *arguments: str
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``python -m benchmarks --source SOURCE`` on one whole block of its services (so every
    peer a network policy names exists), as the README runs it; its output and JSON report."""
    out = tmp_path / "bench.json"
    services = str(len(load_repo(source).services))
    command = [sys.executable, "-m", "benchmarks", "--services", services, "--json", str(out)]
    result = subprocess.run(
        [*command, "--source", str(source), *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text())


def test_smoke_run_prints_the_table_and_writes_json(tmp_path: Path, two_stages: Path) -> None:
    """The whole harness on a tiny fleet: it must not rot."""
    result, report = _harness(tmp_path, two_stages, "--history", "40", "--runs", "1")
    services = len(load_repo(two_stages).services)
    names = [r["name"] for r in report["results"]]
    assert names == [
        "usual_way",
        "verify_full",
        "verify_unchanged",
        "verify_one_changed",
        "floor",
        "promote_one",
        "promote_all",
        "rollback",
        "metrics",
        "status",
        "serve_matrix_cold",
        "serve_matrix_warm",
        "promote_one_worker",
        "promote_all_worker",
        "rollback_worker",
    ]
    for row in report["results"]:
        assert row["seconds"] > 0
        assert row["peak_mb"] > 0
        assert row["name"] in result.stdout
    full = next(r for r in report["results"] if r["name"] == "verify_full")
    assert set(full["ratio"]) == {"usual_way"}
    for command in ("promote_one", "promote_all", "rollback"):
        for name in (command, f"{command}_worker"):  # cold, and through a started worker
            row = next(r for r in report["results"] if r["name"] == name)
            assert set(row["ratio"]) == {"floor"}
    metrics = next(r for r in report["results"] if r["name"] == "metrics")
    assert set(metrics["ratio"]) == {"rollback"}
    # the served matrix is compared with `platform status` of the same run; its first
    # request (the cache's build) is a figure without a goal
    warm = next(r for r in report["results"] if r["name"] == "serve_matrix_warm")
    assert set(warm["ratio"]) == {"status"}
    assert warm["goal"] == "≤ 2 times platform status"
    cold = next(r for r in report["results"] if r["name"] == "serve_matrix_cold")
    assert (cold["goal"], cold["ratio"], cold["met"]) == (None, {}, None)
    assert report["only"] is None
    assert report["fleet"] == {
        "source": str(two_stages),
        "services": services,
        "environments": list(load_repo(two_stages).environment_names),
        "commits": 40,
        "generated_seconds": report["fleet"]["generated_seconds"],
    }


def test_only_measures_the_rows_named_and_those_they_compare_with(
    tmp_path: Path, two_stages: Path
) -> None:
    """The served matrix alone: `status` (its goal's reference) comes with it; the server is
    started, warmed up unmeasured, and stopped."""
    _, report = _harness(
        tmp_path, two_stages, "--history", "10", "--runs", "2", "--only", "serve_matrix_warm"
    )
    assert [r["name"] for r in report["results"]] == ["status", "serve_matrix_warm"]
    assert report["only"] == ["serve_matrix_warm", "status"]
    warm = report["results"][1]
    assert len(warm["samples"]) == 2
    assert warm["met"] in (True, False)
    assert set(warm["ratio"]) == {"status"}
