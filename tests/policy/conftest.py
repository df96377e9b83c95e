"""A fleet's own cache as its first ``verify`` leaves it, for tests of what a warm cache does.

That first run starts empty: it renders every release and add-on chart of every environment
and runs checkov over them (10-25 s), only to warm the cache the test then examines. It is
run once per session and worker for each set of services; each test gets a copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from platformctl.cachefile import CACHE_DIR, SHARED_CACHE_VARIABLE
from platformctl.model import load_repo
from platformctl.render import CHARTS_FILE
from platformctl.verify import verify
from tests.release.fleet import make_fleet

# The one file of the folder keyed by where a checkout is (a chart's absolute path and its
# files' inodes): a copy would hold another checkout's digests, which the test's own first run
# would not have written. (The last results, keyed by checkout too, are the CLI's: ``verify``
# itself writes none.)
BY_CHECKOUT = CHARTS_FILE

# The verified folders, by session (its base folder) and services.
_verified: dict[tuple[Path, tuple[str, ...]], Path] = {}


def verified_cache(factory: pytest.TempPathFactory, services: Sequence[str]) -> Path:
    """The ``.platform-cache/`` of a fleet of ``services`` after one ``verify`` of every
    environment with its own, empty cache."""
    key = (factory.getbasetemp(), tuple(services))
    if key not in _verified:
        root = make_fleet(factory.mktemp("verified") / "repo", list(services)).root
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv(SHARED_CACHE_VARIABLE, raising=False)  # own_cache may have already
            report = verify(load_repo(root))
        assert report.cache_hits == 0  # it started empty: all it holds is this run's
        _verified[key] = root / CACHE_DIR
    return _verified[key]


def copy_verified_cache(
    root: Path, factory: pytest.TempPathFactory, services: Sequence[str]
) -> None:
    """``root``, a new fleet of ``services``, with the cache its own first ``verify`` would
    write: a fleet is a clone of the same template, every other entry is keyed by content
    (chart files, exact values, the engines), and the date of the run is in none of them."""
    shutil.copytree(
        verified_cache(factory, services),
        root / CACHE_DIR,
        ignore=shutil.ignore_patterns(BY_CHECKOUT),
    )
