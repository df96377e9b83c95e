"""The render caches change no answer: a chart digest is the hash of the files' contents
whatever the stat cache says, and the add-ons' Applications are what a render finds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from platformctl import render
from platformctl.model import load_repo
from platformctl.render import Renderer
from platformctl.vendor import tree_digest


def test_a_changed_file_of_the_same_size_and_time_changes_the_chart_digest(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "RACY_NS", -(10**12))  # store even files changed just now
    chart = repo / "charts/service"
    model = load_repo(repo)
    first = Renderer(model).chart_digest(chart)
    assert first == tree_digest(chart)
    assert Renderer(model).chart_digest(chart) == first  # from .platform-cache/charts.json
    values = chart / "values.yaml"
    before = values.stat()
    text = values.read_text()
    values.write_text(text.replace("a", "b", 1) if "a" in text else text + "x")
    os.utime(values, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert Renderer(model).chart_digest(chart) == tree_digest(chart) != first


@pytest.mark.usefixtures("own_cache")
def test_cached_addon_applications_are_the_rendered_ones(repo: Path) -> None:
    model = load_repo(repo)
    environment = model.environment("dev")
    rendered = Renderer(model).addon_chart_jobs(environment)
    assert rendered
    assert (repo / ".platform-cache/applications.json").is_file()
    cached = Renderer(model).addon_chart_jobs(environment)
    assert cached == rendered
    assert [job.where for job in cached] == [job.where for job in rendered]
