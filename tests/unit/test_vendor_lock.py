"""Pinned means pinned: every vendored chart matches its lock entry, and every pin (the add-ons'
chart versions, the Argo CD chart the stacks install) is a vendored, locked chart."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from platformctl.vendor import VENDOR_DIR, Lock, lock_problems, tree_digest
from tests.conftest import PROJECT_ROOT


def test_every_vendored_chart_matches_its_lock_entry() -> None:
    assert lock_problems(PROJECT_ROOT) == []


def test_each_dependency_subchart_is_vendored_at_its_locked_version() -> None:
    lock = Lock.load(PROJECT_ROOT)
    for name, entry in lock.charts.items():
        for dependency in entry.dependencies:
            meta = yaml.safe_load(
                (lock.chart_dir(name) / "charts" / dependency.name / "Chart.yaml").read_text()
            )
            assert meta["version"] == dependency.version, (name, dependency.name)


def test_every_addon_pin_is_the_vendored_version() -> None:
    values = yaml.safe_load((PROJECT_ROOT / "charts/addons/values.yaml").read_text())
    lock = Lock.load(PROJECT_ROOT)
    for name, addon in values["addons"].items():
        if "manifests" in addon:
            pin = addon["manifests"]
            assert lock.get_manifests(pin["name"]).version == str(pin["version"]), name
        else:
            chart = addon["chart"]
            assert lock.get(chart["name"]).version == str(chart["version"]), name


def _copy_vendor(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / VENDOR_DIR, tmp_path / VENDOR_DIR)
    return tmp_path


def test_a_hand_edited_vendored_file_is_found(tmp_path: Path) -> None:
    root = _copy_vendor(tmp_path)
    values = root / VENDOR_DIR / "metrics-server/values.yaml"
    values.write_text(values.read_text().replace("replicas: 1", "replicas: 3"))
    assert lock_problems(root) == ["metrics-server: files differ from the lock (edited by hand?)"]


def test_a_vendored_chart_at_another_version_than_locked_is_found(tmp_path: Path) -> None:
    root = _copy_vendor(tmp_path)
    chart = root / VENDOR_DIR / "external-dns/Chart.yaml"
    chart.write_text(chart.read_text().replace("version: 1.21.1", "version: 1.21.2"))
    (problem,) = lock_problems(root)
    assert "holds external-dns 1.21.2, the lock says 1.21.1" in problem


def test_an_unlocked_or_missing_chart_is_found(tmp_path: Path) -> None:
    root = _copy_vendor(tmp_path)
    shutil.move(root / VENDOR_DIR / "fluent-bit", root / VENDOR_DIR / "fluentbit")
    missing, stray = sorted(lock_problems(root))
    assert missing.startswith("fluent-bit: locked but ")
    assert missing.endswith("charts/vendor/fluent-bit is missing")
    assert stray.startswith("fluentbit: vendored but not in ")


def test_vendored_manifests_are_the_upstream_files_they_are_locked_as(tmp_path: Path) -> None:
    """The External Secrets CRD bundle is the tag's own file: its sha256 is the one the CRD
    schemas record, and a hand edit, a missing or an added file is found."""
    entry = Lock.load(PROJECT_ROOT).get_manifests("external-secrets-crds")
    assert entry.upstream.path == "deploy/crds/bundle.yaml"
    readme = (PROJECT_ROOT / "src/platformctl/crds/README.md").read_text()
    assert entry.sha256s["bundle.yaml"].removeprefix("sha256:") in readme
    root = _copy_vendor(tmp_path)
    folder = root / VENDOR_DIR / "external-secrets-crds"
    (folder / "extra.yaml").write_text("{}\n")
    assert lock_problems(root) == [
        "external-secrets-crds: files differ from the lock (added or removed by hand?)"
    ]
    (folder / "extra.yaml").unlink()
    bundle = folder / "bundle.yaml"
    bundle.write_text(bundle.read_text().replace("served: true", "served: false", 1))
    (problem,) = lock_problems(root)
    assert problem.startswith("external-secrets-crds: bundle.yaml is not sha256:08b08d88")
    bundle.unlink()
    (problem,) = lock_problems(root)
    assert problem.startswith("external-secrets-crds: bundle.yaml is not ")


def test_the_tree_digest_covers_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    first = tree_digest(tmp_path)
    (tmp_path / "a").rename(tmp_path / "b")
    assert tree_digest(tmp_path) != first
