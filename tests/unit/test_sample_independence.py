"""No test names a service of this repository: a fork renames or deletes the sample services.

Behaviour tests build fixture repositories with services of their own (tests/release/fleet.py);
tests about this repository iterate its model. A test file, or a fixture file it reads, that
names one of the repository's services breaks the fork that renamed it: this lists each line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from platformctl.model import load_repo
from tests.conftest import PROJECT_ROOT


def naming_lines(tests: Path, names: Iterable[str]) -> list[str]:
    """``file:line: name`` for each line of a file under ``tests`` naming one of ``names`` as a
    whole name (``dev/x.yaml`` names ``x``; ``x-v2`` and ``x_url`` do not)."""
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    if not alternatives:
        return []
    pattern = re.compile(rf"(?<![A-Za-z0-9_-])(?:{alternatives})(?![A-Za-z0-9_-])")
    found = []
    for path in sorted(tests.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for match in pattern.finditer(line):
                found.append(f"{path.relative_to(tests.parent)}:{number}: {match[0]}")
    return found


def test_no_test_names_a_service_of_this_repository() -> None:
    services = load_repo(PROJECT_ROOT).services
    named = naming_lines(PROJECT_ROOT / "tests", services)
    assert not named, (
        "tests must not depend on this repository's services (a fork renames them): build a "
        "fixture repository with names of the test's own (tests/release/fleet.py make_fleet) "
        "or iterate load_repo(PROJECT_ROOT)\n" + "\n".join(named)
    )


def test_the_guard_finds_whole_names_in_python_and_fixture_files(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    (tests / "fixtures").mkdir(parents=True)
    (tests / "test_x.py").write_text(
        'A = "alpha"\nB = "alpha-v2", "alpha_url", "alphas"\nC = f"dev/{A}"\n'
    )
    (tests / "fixtures" / "values.yaml").write_text("x: 1\ntarget: dev/alpha/Deployment\n")
    (tests / "__pycache__").mkdir()
    (tests / "__pycache__" / "test_x.pyc").write_bytes(b"\0alpha\0")
    assert naming_lines(tests, ["alpha", "beta"]) == [
        "tests/fixtures/values.yaml:2: alpha",
        "tests/test_x.py:1: alpha",
    ]
    assert naming_lines(tests, []) == []
