"""A cache file reads back exactly what was stored, or nothing: never a changed value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from platformctl.cachefile import read_cache, survives_json, write_cache


@pytest.mark.parametrize(
    "value",
    [
        {"replicas": 3, "ratio": 0.25, "name": "x", "none": None, "nested": [{"a": True}]},
        {"max64": 2**64 - 1, "min64": -(2**63), "zero": -0.0, "text": "caf\u00e9 \U0001f600"},
    ],
    ids=["plain", "edges"],
)
def test_what_survives_reads_back_equal(tmp_path: Path, value: dict[str, Any]) -> None:
    assert survives_json(value)
    write_cache(tmp_path / "c.json", "f1", {"k": value})
    assert read_cache(tmp_path / "c.json", "f1") == {"k": value}


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, float("inf"), float("nan"), "\ud800", (1, 2), {1: "a"}],
    ids=["past-64-bits", "below-64-bits", "infinity", "nan", "lone-surrogate", "tuple", "int-key"],
)
def test_what_would_read_back_different_is_never_stored(value: Any) -> None:
    """orjson, which reads the caches, reads an integer past 64 bits as a float, equal to it in
    Python: such a value must not be stored, or a cached render would differ from a cold one."""
    assert not survives_json({"spec": {"value": value}})


def test_a_cache_that_json_cannot_hold_exactly_is_not_written(tmp_path: Path) -> None:
    write_cache(tmp_path / "c.json", "f1", {"k": float("inf")})
    assert not (tmp_path / "c.json").exists()


def test_a_file_the_reader_refuses_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"fingerprint": "f1", "entries": {"k": float("nan")}}))
    assert read_cache(path, "f1") == {}
    path.write_text('{"fingerprint": "f1", "entries": {"k": 1}}')
    assert read_cache(path, "f2") == {}
    assert read_cache(path, "f1") == {"k": 1}


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The replace fails (here: a folder holds the cache file's name); the old state stays,
    with no half-written file beside it."""
    (tmp_path / "c.json").mkdir()
    (tmp_path / "c.json" / "kept").write_text("")
    write_cache(tmp_path / "c.json", "f1", {"k": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", "c.json"]
    assert read_cache(tmp_path / "c.json", "f1") == {}
