"""Holds are visible where people look: `status` (table and JSON) and `platform holds`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
