"""A team forks the repository, adds a service and a stage, drops a sample service: the gate
and the repository's own invariant tests still pass on the fork."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from platformctl.model import load_repo
from tests.conftest import PROJECT_ROOT, git, initial_commit, run_platform

pytestmark = pytest.mark.long  # minutes: handed out first

# The tests that check the repository itself (its files, charts and model), not a fixture:
# of tests/policy only the checks of the repository's own gate run (clean, every target held,
# every add-on exception used; its other tests seed violations in fixture repositories: they
# would only run again).
INVARIANT_TESTS = (
    "tests/unit",
    "tests/chart",
    "tests/policy/test_verify.py::test_this_repository_is_clean",
    "tests/policy/test_verify.py::test_every_addon_exception_excepts_a_finding_of_its_resource",
)
# Names from the model, whatever this repository calls its services: the fork adds one shaped
# like the second (the only one, if alone) and called by the first, and drops the last. The
# new name is derived too: in the fork it is a service, and no test may name one.
SERVICES = load_repo(PROJECT_ROOT).services
CALLER, LIKE, DROPPED = SERVICES[0], SERVICES[min(1, len(SERVICES) - 1)], SERVICES[-1]
ADDED = f"new-{LIKE}"


def fork(path: Path) -> Path:
    """The committed files of this repository, copied into a new git repository."""
    listed = git(PROJECT_ROOT, "ls-files", "-z").split("\0")
    for relative in filter(None, listed):
        source = PROJECT_ROOT / relative
        if source.is_file():
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, path / relative)
    return initial_commit(path)


def add_stage(root: Path, name: str, like: str) -> None:
    """A stage after the last, copied from ``like`` (its folder, add-on values and stack)."""
    shutil.copytree(root / f"environments/{like}", root / f"environments/{name}")
    copies = [
        (root / f"environments/addons/{like}.yaml", root / f"environments/addons/{name}.yaml"),
        (root / f"Pulumi.{like}.yaml", root / f"Pulumi.{name}.yaml"),
    ]
    for source, target in copies:
        shutil.copy2(source, target)
    for path in [*(root / f"environments/{name}").glob("*.yaml"), *(t for _, t in copies)]:
        text = path.read_text()
        path.write_text(re.sub(rf"\b{like}\b", name, text).replace("10.20.", "10.40."))
    # and the stage's dated exceptions, as a team copies them with the stage
    exceptions = root / "environments/policy-exceptions.yaml"
    entries = re.findall(
        rf'  - check: .*\n    target: "{like}/.*\n(?:    .*\n)*', exceptions.read_text()
    )
    copied = "".join(entry.replace(f'"{like}/', f'"{name}/') for entry in entries)
    exceptions.write_text(exceptions.read_text() + copied)
    pipeline = root / "environments/pipeline.yaml"
    pipeline.write_text(pipeline.read_text() + f"  - name: {name}\n")


def drop_service(root: Path, service: str) -> None:
    """The service's files, and every line that names it in the others' values files."""
    for path in root.glob(f"environments/*/{service}.yaml"):
        path.unlink()
    url = service.upper().replace("-", "_") + "_URL"
    for path in root.glob("environments/*/*.yaml"):
        text = path.read_text()
        lines = [line for line in text.splitlines(keepends=True) if url not in line]
        edited = re.sub(rf"(, )?\b{service}\b(, )?", _joined, "".join(lines))
        if edited != text:
            path.write_text(edited)


def _joined(match: re.Match[str]) -> str:
    return ", " if match[1] and match[2] else ""


def test_a_fork_with_a_new_service_a_new_stage_and_one_sample_dropped_stays_green(
    tmp_path: Path,
) -> None:
    root = fork(tmp_path / "fork")
    added = run_platform(root, "new", "service", ADDED, "--like", LIKE, "--callers", CALLER)
    assert added.returncode == 0, added.stderr
    add_stage(root, "qa", "staging")
    drop_service(root, DROPPED)
    assert not [p for p in root.glob("environments/**/*.yaml") if DROPPED in p.read_text()]
    git(root, "add", "-A")
    git(root, "commit", "-qm", f"fork: {ADDED}, a qa stage, no {DROPPED}")

    verified = run_platform(root, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # The copy's own tests, on the copy's files and code (they find the root from their path).
    # They inherit this session's cache folder (tests/conftest.py _shared_cache): its entries
    # are keyed by content, so only what the fork changed is rendered and checked again. Their
    # temporary folders are this test's: a session under pytest's default base folder deletes,
    # as it ends, all but the newest three sessions' folders kept there (after a few runs of
    # this suite, gigabytes of fixture clones), and that time was counted here.
    nested = ("-q", "-x", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "nested"))
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", *nested, *INVARIANT_TESTS],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root / "src"), "NO_COLOR": "1"},
        check=False,
    )
    assert tests.returncode == 0, tests.stdout[-4000:]
