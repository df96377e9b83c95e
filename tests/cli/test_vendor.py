"""``platform vendor`` against a real local HTTP chart repository and a real OCI registry."""

from __future__ import annotations

import functools
import hashlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from platformctl.vendor import Lock, lock_problems
from tests.conftest import git
from tests.support.components import free_port
from tests.support.registry import start_registry


def _chart(folder: Path, name: str, version: str, note: str = "") -> Path:
    """A small chart packaged as ``<name>-<version>.tgz`` in ``folder``."""
    (folder.parent / "sources").mkdir(exist_ok=True)
    source = Path(tempfile.mkdtemp(dir=folder.parent / "sources"))
    helm_python.Chart.create(name, source)
    chart = source / name
    (chart / "templates" / "note.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: note\ndata:\n  note: '{note}'\n"
    )
    return Path(helm_python.package(chart, destination=folder, version=version))


class ChartRepository:
    """A directory of archives and its index.yaml, served by http.server."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.url = folder, url

    def publish(self, name: str, version: str, note: str = "") -> Path:
        archive = _chart(self.folder, name, version, note)
        helm_python.repo_index_generate(self.folder, base_url=self.url)
        return archive

    def edit_index(self, change: Callable[[dict[str, Any]], None]) -> None:
        index = self.folder / "index.yaml"
        data = yaml.safe_load(index.read_text())
        change(data)
        index.write_text(yaml.safe_dump(data))


@pytest.fixture
def charts(tmp_path: Path) -> Iterator[ChartRepository]:
    folder = tmp_path / "published"
    folder.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ChartRepository(folder, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _untouched(repo: Path) -> None:
    assert git(repo, "status", "--porcelain", "--ignored") == ""


def test_a_chart_from_an_http_repository_is_vendored_and_locked(
    repo: Path, cli: Any, charts: ChartRepository
) -> None:
    archive = charts.publish("demo", "0.1.0")
    result = cli(repo, "vendor", "demo", "--version", "0.1.0", "--from", charts.url)
    assert result.exit_code == 0, result.output
    entry = Lock.load(repo).get("demo")
    assert (entry.version, entry.repository, entry.digest) == (
        "0.1.0",
        charts.url,
        _sha256(archive),
    )
    assert (
        yaml.safe_load((repo / "charts/vendor/demo/Chart.yaml").read_text())["version"] == "0.1.0"
    )
    assert lock_problems(repo) == []


def test_a_bump_replaces_the_vendored_copy_and_pins_the_addons(
    repo: Path, cli: Any, charts: ChartRepository
) -> None:
    # the add-on's own chart, one patch release later
    vendored = repo / "charts/vendor/metrics-server"
    helm_python.package(vendored, destination=charts.folder, version="3.13.2")
    helm_python.repo_index_generate(charts.folder, base_url=charts.url)
    result = cli(repo, "vendor", "metrics-server", "--version", "3.13.2", "--from", charts.url)
    assert result.exit_code == 0, result.output
    assert Lock.load(repo).get("metrics-server").version == "3.13.2"
    values = (repo / "charts/addons/values.yaml").read_text()
    assert "version: 3.13.2" in values
    assert "# Each add-on: an upstream chart vendored" in values  # comments survive
    assert lock_problems(repo) == []
    assert cli(repo, "render", "addons", "--env", "dev").output.count("metrics-server-3.13.2") == 1


def test_an_unknown_chart_or_version_is_a_usage_error_and_changes_nothing(
    repo: Path, cli: Any, charts: ChartRepository
) -> None:
    charts.publish("demo", "0.1.0")
    unknown = cli(repo, "vendor", "dmeo", "--version", "0.1.0", "--from", charts.url)
    assert unknown.exit_code == 2
    assert "unknown chart in" in unknown.output
    assert "did you mean 'demo'?" in unknown.output
    missing = cli(repo, "vendor", "demo", "--version", "9.9.9", "--from", charts.url)
    assert missing.exit_code == 2
    assert "has no demo 9.9.9 (newest: 0.1.0)" in missing.output
    _untouched(repo)


def test_an_archive_that_does_not_match_its_index_is_refused(
    repo: Path, cli: Any, charts: ChartRepository
) -> None:
    charts.publish("demo", "0.1.0")
    charts.edit_index(lambda index: index["entries"]["demo"][0].update(digest="0" * 64))
    result = cli(repo, "vendor", "demo", "--version", "0.1.0", "--from", charts.url)
    assert result.exit_code == 1
    assert "its repository says sha256:000" in result.output
    _untouched(repo)


def test_a_re_pushed_version_is_refused(repo: Path, cli: Any, charts: ChartRepository) -> None:
    charts.publish("demo", "0.1.0")
    assert cli(repo, "vendor", "demo", "--version", "0.1.0", "--from", charts.url).exit_code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "vendor demo")
    (charts.folder / "demo-0.1.0.tgz").unlink()
    charts.publish("demo", "0.1.0", note="changed behind the same version")
    result = cli(repo, "vendor", "demo", "--version", "0.1.0")
    assert result.exit_code == 1
    assert "demo 0.1.0 was re-pushed" in result.output
    _untouched(repo)


def test_a_bump_keeps_the_vendored_manifests_locked(
    repo: Path, cli: Any, charts: ChartRepository
) -> None:
    """The lock's manifests (External Secrets' CRD bundle) survive a chart's re-vendoring, and
    are not something `platform vendor` fetches."""
    before = Lock.load(repo).get_manifests("external-secrets-crds")
    charts.publish("demo", "0.1.0")
    assert cli(repo, "vendor", "demo", "--version", "0.1.0", "--from", charts.url).exit_code == 0
    assert Lock.load(repo).get_manifests("external-secrets-crds") == before
    assert lock_problems(repo) == []
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "vendor demo")
    result = cli(repo, "vendor", "external-secrets-crds", "--version", "2.9.0")
    assert result.exit_code == 2
    assert "external-secrets-crds is vendored manifests, not a chart" in result.output
    _untouched(repo)


def test_no_repository_answering_is_an_environment_problem(repo: Path, cli: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(repo, "vendor", "demo", "--version", "0.1.0", "--from", url)
    assert result.exit_code == 3
    assert "cannot read the chart index" in result.output
    _untouched(repo)


@pytest.fixture(scope="module")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("oci-registry")
    with start_registry(folder, "token") as running:
        yield running


def test_a_chart_from_an_oci_registry_is_vendored_and_locked(
    repo: Path, cli: Any, tmp_path: Path, oci_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(oci_registry.docker_config(tmp_path / "docker")))
    archive = _chart(tmp_path, "demo", "0.3.0")
    client = helm_python.RegistryClient(plain_http=True)
    client.login(oci_registry.host, oci_registry.user, oci_registry.password, plain_http=True)
    client.push(archive, f"oci://{oci_registry.host}/charts", plain_http=True)
    client.close()
    source = f"oci://{oci_registry.host}/charts"
    result = cli(repo, "vendor", "demo", "--version", "0.3.0", "--from", source)
    assert result.exit_code == 0, result.output
    entry = Lock.load(repo).get("demo")
    assert (entry.version, entry.repository, entry.digest) == ("0.3.0", source, _sha256(archive))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "vendor demo")
    missing = cli(repo, "vendor", "demo", "--version", "0.4.0")
    assert missing.exit_code == 2
    assert "has no demo 0.4.0" in missing.output
    _untouched(repo)
