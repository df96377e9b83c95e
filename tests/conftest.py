"""Fixtures: a throw-away git clone of this repository's environments and charts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from platformctl import launcher
from platformctl.cachefile import SHARED_CACHE_VARIABLE
from platformctl.cli import app
from tests.support.registry import RunningRegistry, start_registry

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PLATFORM_BINARY = str(Path(sys.executable).with_name("platform"))


def as_job(command: list[str], *, foreground: bool) -> list[str]:
    """``command`` with SIGINT as a shell starts it, whatever this process inherited (a suite
    started as a background job ignores SIGINT, and its children with it): at its default for
    a terminal's foreground job, ignored for a script's ``command &``. GNU env sets it and
    execs, so the process keeps env's pid."""
    disposition = "--default-signal=INT" if foreground else "--ignore-signal=INT"
    return ["env", disposition, *command]


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return result.stdout


# Fixture repositories made once per session and worker, by what they were made from (see
# from_template); None outside a test session.
_templates: dict[tuple[Any, ...], Path] = {}
_template_dir: list[Path] = []


COMMIT_DATES = ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")


def from_template(path: Path, key: tuple[Any, ...], make: Callable[[Path], object]) -> Path:
    """``path`` as a new clone of the repository ``make`` builds, made once per session for
    each ``key``: a local clone hard-links the template's objects and checks out its files,
    where building again copies 22 MB of charts and hashes them into new objects (~1 s of
    CPU each time). The clone is what ``make`` leaves: its one commit on main, the test
    identity, no remote."""
    if not _template_dir:
        make(path)
        return path
    # a test that dates its commits (GIT_*_DATE) gets a template made at that date
    key = (*key, *(os.environ.get(name) for name in COMMIT_DATES))
    template = _templates.get(key)
    if template is None:
        template = _template_dir[0] / f"t{len(_templates)}"
        make(template)
        _templates[key] = template
    subprocess.run(["git", "clone", "-q", "--local", str(template), str(path)], check=True)
    git(path, "remote", "remove", "origin")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    return path


@pytest.fixture(scope="session", autouse=True)
def _fixture_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _template_dir.append(tmp_path_factory.mktemp("templates"))
    yield
    _template_dir.clear()
    _templates.clear()


def init_repo(path: Path, *, gates: bool = False) -> Path:
    """A git repository holding a copy of environments/ and charts/ of this project.

    Without ``gates`` the stages declare none: tests of the release mechanics must not ask
    the example endpoints in pipeline.yaml (tests/gates sets gates up against local ones).
    """
    return from_template(path, ("init_repo", gates), lambda target: _init(target, gates))


def _init(path: Path, gates: bool) -> Path:
    for folder in ("environments", "charts"):
        shutil.copytree(PROJECT_ROOT / folder, path / folder)
    if not gates:
        edit_yaml(path / "environments/pipeline.yaml", _without_gates, sequence_indent=4)
    return initial_commit(path)


def initial_commit(path: Path) -> Path:
    """``path`` as a new git repository on main, its files in one commit."""
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files marked ``long`` first (in collection order), then the others by their number
    of tests: pytest-xdist hands out whole files in this order (``--no-loadscope-reorder`` in
    pyproject.toml keeps it: its own order, by number of tests alone, put the long files last,
    as they have few tests), and a long file started last keeps one worker busy while the
    others idle."""
    per_file = Counter(item.path for item in items)

    def order(item: pytest.Item) -> tuple[bool, int]:
        long = item.get_closest_marker("long") is not None
        return (not long, 0 if long else -per_file[item.path])

    items.sort(key=order)


@pytest.fixture(scope="session", autouse=True)
def _checkov_in_process() -> None:
    """Once checkov is imported, verify checks in-process (see CheckovRun): one import for the
    session instead of a worker process per run. Tests that run the CLI as a subprocess, and
    tests/policy/test_checkov_worker.py, exercise the worker."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import checkov.kubernetes.runner  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The fixture repositories share one cache folder, as a CI runner's checkouts may
    (``$PLATFORM_CACHE_DIR``): most tests verify copies of the same charts and values, and
    every entry is keyed by content, so each is checked once. The pytest-xdist workers share
    it too (a third of what one worker renders and checks the other did as well): each file
    is written whole and atomically, so a worker's write can only drop entries another
    added, a miss and never a wrong answer. Tests of the caches themselves take
    ``own_cache``. A session started with a cache folder keeps it: the fork test's run of
    the invariant tests on a copy reuses what its session already checked."""
    shared = os.environ.get(SHARED_CACHE_VARIABLE)
    if not shared:
        # each worker's base folder is one of the session's
        base = tmp_path_factory.getbasetemp()
        session = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        (session / "shared-cache").mkdir(exist_ok=True)
        shared = str(session / "shared-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SHARED_CACHE_VARIABLE, shared)
        yield


@pytest.fixture(scope="session", autouse=True)
def _bytecode_kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The ``platform`` processes the tests start keep their compiled modules in one folder
    of the session, as an installed command has them: with ``PYTHONDONTWRITEBYTECODE`` set
    (as on this machine) each of the hundreds of processes would compile every module of
    the package and its dependencies from source again (~0.5 s each)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        patch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.mktemp("bytecode")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _resident_worker(_bytecode_kept: None) -> Iterator[None]:
    """The ``platform`` processes the tests start run through one resident worker of the
    session (``platform worker start``, in a runtime folder of its own), as a team that
    starts one in CI has them: each command skips the 0.16-0.19 s of imports, hundreds of
    times. So the whole suite is also the worker's proof that a command run through it is the
    command run in-process. Tests of what a process does take ``in_process``; those of the
    worker start their own."""
    # short: a unix socket's path has at most 107 bytes
    runtime = tempfile.mkdtemp(prefix="pw-")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", runtime)
        # started by the command, so that it has the command's sys.path, not pytest's
        worker = [PLATFORM_BINARY, "worker"]
        _must([*worker, "start", "--idle-timeout", "14400"])
        yield
        _must([*worker, "stop"])
    shutil.rmtree(runtime, ignore_errors=True)


def _must(command: list[str]) -> None:
    """Run ``command``; a failure is the tests' error, with what the command said."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        said = result.stderr.strip()
        pytest.fail(f"{' '.join(command)} exited {result.returncode}: {said}", pytrace=False)


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``platform`` processes of a test run the CLI themselves, as for a user who started
    no worker: for the tests of what a process does (exit codes, signals, crashes)."""
    monkeypatch.setenv(launcher.OFF_VARIABLE, "off")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A registry behind a bearer-token service; its login is in DOCKER_CONFIG. One for the
    session, defined here only: a second definition (a module importing this fixture) would
    start a second registry and point DOCKER_CONFIG at its login instead."""
    folder = tmp_path_factory.mktemp("registry")
    with start_registry(folder, "token") as running:
        previous = os.environ.get("DOCKER_CONFIG")
        os.environ["DOCKER_CONFIG"] = str(running.docker_config(folder / "docker"))
        yield running
        if previous is None:
            os.environ.pop("DOCKER_CONFIG", None)
        else:
            os.environ["DOCKER_CONFIG"] = previous


@pytest.fixture
def own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each repository keeps its cache in its own ``.platform-cache/``, where the test looks."""
    monkeypatch.delenv(SHARED_CACHE_VARIABLE)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo")


def _without_gates(pipeline: Any) -> None:
    for stage in pipeline["stages"]:
        stage.pop("gates", None)


def edit_yaml(path: Path, change: Callable[[Any], None], *, sequence_indent: int = 2) -> None:
    """Round-trip edit of a YAML file (comments and order kept)."""
    yaml = YAML()
    yaml.width = 4096  # keep one-line image mappings on one line
    yaml.indent(mapping=2, sequence=sequence_indent, offset=sequence_indent - 2)
    data = yaml.load(path.read_text())
    change(data)
    with path.open("w") as handle:
        yaml.dump(data, handle)


def commit_edit(repo: Path, relative: str, change: Callable[[Any], None], message: str) -> None:
    """A hand edit of one values file, committed (what a merged pull request leaves behind)."""
    edit_yaml(repo / relative, change)
    git(repo, "commit", "-qam", message)


def run_platform(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``platform`` command as a separate process, as users and CI run it."""
    return subprocess.run(
        [PLATFORM_BINARY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


@pytest.fixture
def cli() -> Callable[..., Any]:
    runner = CliRunner()

    def invoke(repo: Path, *args: str) -> Any:
        return runner.invoke(app, ["--repo", str(repo), *args])

    return invoke
