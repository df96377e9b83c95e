"""The dashboard's static files: every one served from the package, the vendored ones exactly
as upstream released them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import platformctl.dashboard

STATIC = Path(platformctl.dashboard.__file__).with_name("static")
MANIFEST = json.loads((STATIC / "VENDORED.json").read_text())["files"]


def test_each_vendored_file_has_its_recorded_checksum() -> None:
    for name, entry in MANIFEST.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert entry["tag"]
        assert entry["commit"]
        assert entry["license"]


def test_every_static_file_is_vendored_or_the_dashboards_own() -> None:
    own = {"VENDORED.json", "dashboard.css", "favicon.svg"}
    on_disk = {path.name for path in STATIC.iterdir()}
    assert on_disk == own | set(MANIFEST)


def test_the_package_ships_the_static_files_and_templates() -> None:
    """hatchling builds the wheel from src/platformctl, so the data files must sit inside it."""
    package = Path(platformctl.dashboard.__file__).parent
    assert (package / "templates" / "base.html").is_file()
    assert (package / "static" / "htmx.min.js").stat().st_size > 10_000
