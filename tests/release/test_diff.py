"""``platform diff``: which services differ between two stages, readable in 100 columns."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.release.fleet import Fleet, digest, make_fleet

Cli = Callable[..., Any]


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    fleet = make_fleet(tmp_path / "repo", ["alpha", "beta", "gamma"])
    fleet.set_image(fleet.stages[0], "alpha", 2)
    return fleet


def test_the_table_lists_what_differs_with_short_digests(fleet: Fleet, cli: Cli) -> None:
    first, second = fleet.stages[:2]
    result = cli(fleet.root, "diff", "--from", first, "--to", second)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", first.upper(), second.upper()]
    assert lines[1].split() == [
        "alpha",
        fleet.image(first, "alpha").label,
        "1.1.0@" + digest(1)[7:19],
    ]
    assert "beta" not in result.stdout
    assert digest(2) not in result.stdout
    assert "2 more the same in both" in result.stdout
    assert max(map(len, lines)) <= 100


def test_wide_shows_the_full_references(fleet: Fleet, cli: Cli) -> None:
    first, second = fleet.stages[:2]
    result = cli(fleet.root, "diff", "--from", first, "--to", second, "--wide")
    assert result.exit_code == 0, result.output
    assert fleet.image(first, "alpha").reference in result.stdout
    assert fleet.image(second, "alpha").reference in result.stdout


def test_json_says_for_each_service_whether_it_differs(fleet: Fleet, cli: Cli) -> None:
    first, second = fleet.stages[:2]
    result = cli(fleet.root, "diff", "--from", first, "--to", second, "-o", "json")
    rows = {row["service"]: row["differs"] for row in json.loads(result.stdout)}
    assert rows == {"alpha": True, "beta": False, "gamma": False}


def test_the_same_images_say_so(fleet: Fleet, cli: Cli) -> None:
    second, third = fleet.stages[1:3]
    result = cli(fleet.root, "diff", "--from", second, "--to", third)
    assert result.stdout.strip() == f"{second} and {third} run the same images"


def test_rendered_is_a_unified_diff_of_the_manifests(fleet: Fleet, cli: Cli) -> None:
    first, second = fleet.stages[:2]
    result = cli(fleet.root, "diff", "alpha", "--from", first, "--to", second, "--rendered")
    assert result.exit_code == 0, result.output
    assert f"--- {first}/alpha" in result.stdout
    assert f"+++ {second}/alpha" in result.stdout
    assert f'-          image: "{fleet.image(first, "alpha").reference}"' in result.stdout
    assert f'+          image: "{fleet.image(second, "alpha").reference}"' in result.stdout
