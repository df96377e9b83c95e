"""Helpers: a fixture repository with its stack files, rendered into the twin's targets."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from platformctl.model import Environment, Repo, load_repo
from platformctl.policy.findings import Finding
from platformctl.render import Rendered, Renderer
from platformctl.twin import check_environment
from platformctl.twin.bootstrap import Bootstrap, bootstrap_of
from platformctl.twin.build import build
from platformctl.twin.crds import Crds
from platformctl.twin.stack import stack_facts
from platformctl.twin.world import Target, World
from tests.conftest import PROJECT_ROOT, init_repo


@pytest.fixture
def stacked(tmp_path: Path) -> Path:
    """A fixture repository with this project's stack files (what the twin reads of them)."""
    root = init_repo(tmp_path / "repo")
    for stack in PROJECT_ROOT.glob("Pulumi.*.yaml"):
        shutil.copy(stack, root / stack.name)
    return root


def targets(
    repo: Repo, environment: Environment, charts: bool = False, **extra: Iterable[dict[str, Any]]
) -> dict[str, Target]:
    """The targets verify renders for the environment (its add-on Applications' vendored charts
    only with ``charts``: they cost seconds), plus synthetic ones: ``name=documents``
    (``addons`` replaces the add-ons target; ``addons/<app>`` is an add-on's own chart)."""
    renderer = Renderer(repo)
    jobs = [renderer.gitops_job(environment), renderer.addons_job(environment)]
    jobs += renderer.addon_chart_jobs(environment) if charts else []
    jobs += [renderer.release_job(release) for release in repo.select([environment.name])]
    found = {
        job.key: Target(renderer.render(job), str(job.chart.relative_to(repo.root))) for job in jobs
    }
    for argument, documents in extra.items():
        name = argument.replace("__", "/")
        chart = "charts/addons" if name == "addons" else f"charts/vendor/{name}"
        rendered = Rendered(environment, name, {}, tuple(documents))
        found[rendered.key] = Target(rendered, chart)
    return found


def twin(
    root: Path,
    env: str,
    *,
    bootstrap: Callable[[Bootstrap], Bootstrap] | None = None,
    pinned: Crds | None = None,
    charts: bool = False,
    **extra: Iterable[dict[str, Any]],
) -> list[Finding]:
    repo = load_repo(root)
    environment = repo.environment(env)
    return check_environment(
        repo,
        environment,
        targets(repo, environment, charts, **extra),
        stack_facts(repo, environment),
        bootstrap(bootstrap_of(repo, environment)) if bootstrap else None,
        pinned,
    )


def world_of(root: Path, env: str, **extra: Iterable[dict[str, Any]]) -> World:
    repo = load_repo(root)
    environment = repo.environment(env)
    return build(repo, environment, targets(repo, environment, **extra))


def releases_with(
    root: Path, env: str, predicate: Callable[[Mapping[str, Any]], bool]
) -> list[str]:
    """The release targets of ``env`` that render a document matching ``predicate``."""
    repo = load_repo(root)
    renderer = Renderer(repo)
    return [
        release.key
        for release in repo.select([env])
        if any(predicate(d) for d in renderer.release(release).documents)
    ]


def kind(name: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda document: document.get("kind") == name


def about(findings: Iterable[Finding], check: str, target: str | None = None) -> list[str]:
    return [
        f"{f.resource}: {f.message}"
        for f in findings
        if f.check == check and (target is None or f.target == target)
    ]
