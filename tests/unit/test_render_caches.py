"""The render caches change no answer: a chart digest is the hash of the files' contents
whatever the stat cache says, and the add-ons' Applications are what a render finds."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from platformctl import render
from platformctl.model import load_repo
from platformctl.render import RENDERS_DIR, Job, Rendered, Renderer
from platformctl.vendor import tree_digest
from tests.release.fleet import Fleet, make_fleet


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


# --- stored renders (.platform-cache/renders/) ----------------------------------------------


@pytest.fixture
def one_service(tmp_path: Path) -> Fleet:
    return make_fleet(tmp_path / "repo", ["svc-a"])


@pytest.fixture
def helm_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The targets Helm rendered (stored renders call no Helm)."""
    calls: list[str] = []
    helm = Renderer._helm

    def counted(self: Renderer, job: Job) -> dict[str, str]:
        calls.append(job.key)
        return helm(self, job)

    monkeypatch.setattr(Renderer, "_helm", counted)
    return calls


def _release(fleet: Fleet) -> Rendered:
    model = load_repo(fleet.root)
    return Renderer(model).release(model.release("svc-a", fleet.stages[0]))


@pytest.mark.usefixtures("own_cache")
def test_a_stored_render_is_the_render(one_service: Fleet, helm_calls: list[str]) -> None:
    first = _release(one_service)
    assert len(list((one_service.root / ".platform-cache" / RENDERS_DIR).glob("*.json"))) == 1
    again = _release(one_service)
    assert helm_calls == [first.key]
    assert (again.manifests, again.documents) == (first.manifests, first.documents)
    assert again.text == first.text


@pytest.mark.usefixtures("own_cache")
def test_stored_renders_of_a_whole_environment_are_its_renders(one_service: Fleet) -> None:
    """Every target the sync twin reads, the vendored charts' large CRDs included."""
    model = load_repo(one_service.root)
    environment = model.environment(one_service.stages[-1])

    def everything() -> list[Rendered]:
        renderer = Renderer(model)
        jobs = [renderer.gitops_job(environment), renderer.addons_job(environment)]
        jobs += renderer.addon_chart_jobs(environment)
        jobs += [renderer.release_job(release) for release in model.select([environment.name])]
        return [renderer.render(job) for job in jobs]

    fresh = everything()
    stored = list((one_service.root / ".platform-cache" / RENDERS_DIR).glob("*.json"))
    assert len(stored) == len(fresh)
    assert [(r.key, r.manifests, r.documents) for r in everything()] == [
        (r.key, r.manifests, r.documents) for r in fresh
    ]


def _edit_values(fleet: Fleet) -> str:
    path = fleet.values(fleet.stages[0], "svc-a")
    path.write_text(path.read_text() + "podAnnotations: {changed: values}\n")
    return "changed: values"


def _edit_template(fleet: Fleet) -> str:
    path = fleet.root / "charts/service/templates/configmap.yaml"
    path.write_text(path.read_text() + "\n# changed: template\n")
    return "# changed: template"


def _edit_kubernetes_version(fleet: Fleet) -> str:
    """Another cluster version: the same values and chart, other options for Helm."""
    path = fleet.root / "environments" / fleet.stages[0] / "environment.yaml"
    model = load_repo(fleet.root)
    current = model.environment(fleet.stages[0]).kubernetes_version
    major, minor = current.split(".")
    path.write_text(path.read_text().replace(f'"{current}"', f'"{major}.{int(minor) - 1}"'))
    return ""


@pytest.mark.usefixtures("own_cache")
@pytest.mark.parametrize("edit", [_edit_values, _edit_template, _edit_kubernetes_version])
def test_a_changed_input_is_rendered_again(
    one_service: Fleet, helm_calls: list[str], edit: Callable[[Fleet], str]
) -> None:
    first = _release(one_service)
    expected = edit(one_service)
    again = _release(one_service)
    assert helm_calls == [first.key, first.key]
    assert expected in again.text
    assert again.text != first.text or not expected
    assert len(list((one_service.root / ".platform-cache" / RENDERS_DIR).glob("*.json"))) == 2


def _directory_job(fleet: Fleet, folder: Path) -> Job:
    model = load_repo(fleet.root)
    environment = model.environment(fleet.stages[0])
    return Job(environment, "addons/plain", folder, {}, "plain", "apps", "test", directory={})


@pytest.mark.usefixtures("own_cache")
def test_a_directory_source_is_read_again_when_a_file_changes(one_service: Fleet) -> None:
    folder = one_service.root / "plain"
    folder.mkdir()
    manifest = folder / "config.yaml"
    manifest.write_text("kind: ConfigMap\nmetadata: {name: one}\n")
    model = load_repo(one_service.root)
    first = Renderer(model).render(_directory_job(one_service, folder))
    manifest.write_text("kind: ConfigMap\nmetadata: {name: two}\n")
    again = Renderer(model).render(_directory_job(one_service, folder))
    assert [d["metadata"]["name"] for d in (*first.documents, *again.documents)] == ["one", "two"]


@pytest.mark.usefixtures("own_cache")
def test_documents_json_cannot_hold_are_not_stored(one_service: Fleet) -> None:
    """A date stays a date: such a render is made again each time, never read back as text."""
    folder = one_service.root / "plain"
    folder.mkdir()
    (folder / "dated.yaml").write_text(
        "kind: ConfigMap\nmetadata: {name: d}\ndata: {on: 2024-01-02}\n"
    )
    model = load_repo(one_service.root)
    rendered = Renderer(model).render(_directory_job(one_service, folder))
    assert rendered.documents[0]["data"] == {True: dt.date(2024, 1, 2)}
    assert not (one_service.root / ".platform-cache" / RENDERS_DIR).exists()


@pytest.mark.usefixtures("own_cache")
def test_stored_renders_are_kept_within_their_bound(
    one_service: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "RENDERS_LIMIT", 2)
    folder = one_service.root / "plain"
    folder.mkdir()
    model = load_repo(one_service.root)
    stored = one_service.root / ".platform-cache" / RENDERS_DIR
    for name in ("one", "two", "three"):
        for earlier in stored.glob("*.json"):  # older by a second than the one written next
            mtime = earlier.stat().st_mtime_ns - 10**9
            os.utime(earlier, ns=(mtime, mtime))
        (folder / "config.yaml").write_text(f"kind: ConfigMap\nmetadata: {{name: {name}}}\n")
        Renderer(model).render(_directory_job(one_service, folder))
    kept = [json.loads(p.read_text()) for p in stored.glob("*.json")]
    names = sorted(e["entries"]["documents"][0]["metadata"]["name"] for e in kept)
    assert names == ["three", "two"]
    assert (stored / ".gitignore").is_file()
