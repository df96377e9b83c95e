"""Holds are visible where people look: `status` (table and JSON) and `platform holds`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git
from tests.release.fleet import Fleet, make_fleet

Cli = Callable[..., Any]


@pytest.fixture
def held(tmp_path: Path, cli: Cli) -> Fleet:
    fleet = make_fleet(tmp_path / "repo", ["alpha", "beta"])
    result = cli(fleet.root, "hold", "beta", "-e", fleet.stages[-1], "--reason", "INC-7 pager")
    assert result.exit_code == 0, result.output
    return fleet


def test_status_marks_the_held_release_with_its_reason(held: Fleet, cli: Cli) -> None:
    result = cli(held.root, "status")
    assert result.exit_code == 0, result.output
    [beta] = [line for line in result.stdout.splitlines() if line.startswith("beta ")]
    assert beta.rstrip().endswith("(held)")
    [alpha] = [line for line in result.stdout.splitlines() if line.startswith("alpha ")]
    assert "(held)" not in alpha
    assert f"held: beta in {held.stages[-1]}: INC-7 pager" in result.stdout


def test_status_json_carries_the_hold(held: Fleet, cli: Cli) -> None:
    rows = json.loads(cli(held.root, "status", "-o", "json").stdout)
    marks = {(r["service"], r["environment"]): r["held"] for r in rows}
    hold = marks.pop(("beta", held.stages[-1]))
    assert hold["reason"] == "INC-7 pager"
    assert hold["by"]
    assert hold["since"]
    assert set(marks.values()) == {None}


def test_holds_lists_them_and_filters_by_environment(held: Fleet, cli: Cli) -> None:
    table = cli(held.root, "holds")
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split()[:3] == ["ENVIRONMENT", "SERVICE", "REASON"]
    assert "INC-7 pager" in table.stdout
    rows = json.loads(cli(held.root, "holds", "-o", "json").stdout)
    assert [(r["service"], r["environment"], r["reason"]) for r in rows] == [
        ("beta", held.stages[-1], "INC-7 pager")
    ]
    assert cli(held.root, "holds", "-e", held.stages[0]).stdout.strip() == "no holds"
    unknown = cli(held.root, "holds", "-e", "no-such-env")
    assert unknown.exit_code == 2


def head(fleet: Fleet) -> str:
    return git(fleet.root, "rev-parse", "HEAD").strip()


def test_hold_dry_run_writes_nothing_and_json_says_what(held: Fleet, cli: Cli) -> None:
    before = head(held), git(held.root, "status", "--porcelain")
    target = held.stages[-1]
    dry = cli(held.root, "hold", "alpha", "-e", target, "--reason", "INC-8", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing written" in dry.stdout
    assert "+  alpha:" in dry.stdout
    payload = json.loads(
        cli(
            held.root, "hold", "alpha", "-e", target, "--reason", "x", "--dry-run", "-o", "json"
        ).stdout
    )
    assert payload["dry_run"] is True
    assert payload["changed"] is True
    assert payload["commit"] is None
    assert (head(held), git(held.root, "status", "--porcelain")) == before


def test_holding_again_with_the_same_reason_is_a_no_op(held: Fleet, cli: Cli) -> None:
    before = head(held)
    again = cli(held.root, "hold", "beta", "-e", held.stages[-1], "--reason", "INC-7 pager")
    assert again.exit_code == 0, again.output
    assert "already held with that reason" in again.stdout
    assert head(held) == before


def test_unhold_records_its_reason(held: Fleet, cli: Cli) -> None:
    result = cli(held.root, "unhold", "beta", "-e", held.stages[-1], "--reason", "INC-7 fixed")
    assert result.exit_code == 0, result.output
    assert "INC-7 fixed" in git(held.root, "log", "-1", "--format=%B")
    assert held.holds(held.stages[-1]) == set()


@pytest.fixture
def pending(tmp_path: Path, cli: Cli) -> Fleet:
    """Both services have a new build in the first stage; beta is held in the second."""
    fleet = make_fleet(tmp_path / "repo", ["alpha", "beta"])
    for service in ("alpha", "beta"):
        fleet.set_image(fleet.stages[0], service, 2)
    result = cli(fleet.root, "hold", "beta", "-e", fleet.stages[1], "--reason", "INC-9")
    assert result.exit_code == 0, result.output
    return fleet


def test_a_held_service_refuses_promote_all_unless_skipped(pending: Fleet, cli: Cli) -> None:
    target = pending.stages[1]
    refused = cli(pending.root, "promote", "--all", "--to", target)
    assert refused.exit_code == 1
    assert "beta is held" in refused.stderr
    result = cli(pending.root, "promote", "--all", "--to", target, "--skip-held")
    assert result.exit_code == 0, result.output
    assert f"skipped beta: held in {target} (INC-9)" in result.stdout
    assert pending.image(target, "alpha") == pending.image(pending.stages[0], "alpha")
    assert pending.image(target, "beta") != pending.image(pending.stages[0], "beta")


def test_a_held_service_with_nothing_to_promote_is_no_obstacle(pending: Fleet, cli: Cli) -> None:
    target = pending.stages[1]
    pending.set_image(target, "beta", 2)  # beta already runs what the first stage has
    result = cli(pending.root, "promote", "--all", "--to", target)
    assert result.exit_code == 0, result.output
    assert pending.image(target, "alpha") == pending.image(pending.stages[0], "alpha")


def test_history_shows_holds_unholds_and_what_was_rolled_back(tmp_path: Path, cli: Cli) -> None:
    fleet = make_fleet(tmp_path / "repo", ["alpha"])
    first, target = fleet.stages[:2]
    fleet.set_image(first, "alpha", 2)
    steps = [
        ("promote", "alpha", "--to", target),
        ("rollback", "alpha", "-e", target, "--reason", "p95 up"),
        ("unhold", "alpha", "-e", target, "--reason", "fixed"),
        ("hold", "alpha", "-e", target, "--reason", "freeze week"),
    ]
    for step in steps:
        result = cli(fleet.root, *step)
        assert result.exit_code == 0, (step, result.output)
    rows = json.loads(cli(fleet.root, "history", "alpha", "-e", target, "-o", "json").stdout)
    assert [row["action"] for row in rows][:4] == ["hold", "unhold", "rollback", "promote"]
    assert rows[0]["reason"] == "freeze week"
    assert rows[1]["reason"] == "fixed"
    promoted = rows[3]
    assert promoted["rolled_back"] is True
    assert rows[2]["rolled_back"] is False
    table = cli(fleet.root, "history", "alpha", "-e", target)
    assert "promote (rolled back)" in table.stdout
    assert (
        len(
            json.loads(
                cli(fleet.root, "history", "alpha", "-e", target, "-n", "2", "-o", "json").stdout
            )
        )
        == 2
    )
