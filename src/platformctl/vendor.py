"""Upstream charts (and plain manifests) vendored in this repository at their pins, under a lock.

``charts/vendor/<name>/`` holds each chart unpacked (its dependency subcharts unpacked under
its ``charts/``), exactly as ``helm pull`` delivers it; ``charts/vendor/lock.yaml`` records,
per chart, the version, where it is published, the sha256 of the packaged chart that was
verified when it was vendored and a digest of the unpacked files the gate checks on every run.
Argo CD deploys the add-ons from these directories, so an upstream outage or a re-pushed tag
cannot change what runs, and the gate renders byte-for-byte what Argo CD renders.

Some upstream artefacts are not charts: External Secrets documents installing its CRDs from
the release's ``deploy/crds/bundle.yaml`` with the chart's ``installCRDs: false``. Those are
vendored verbatim under ``charts/vendor/<name>/`` as a ``manifests`` entry of the lock (the
sha256 of each file as upstream's tree holds it), and deployed as a directory source.

Installing a chart is all-or-nothing: it is unpacked and checked in a staging directory next to
the vendored ones, then swapped in with renames; the lock is written last, atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from platformctl.errors import EnvironmentProblem, InputError, RefusedError
from platformctl.yamlio import display_path, read_mapping

VENDOR_DIR = Path("charts/vendor")
LOCK_FILE = VENDOR_DIR / "lock.yaml"
_LOCK_HEADER = """\
# Upstream charts vendored under charts/vendor/<name>/ at their pinned versions. Written by
# `platform vendor`; a test fails when a vendored directory does not match its entry.
#   repository: where the chart is published (as `helm pull` / Argo CD would fetch it)
#   digest:     sha256 of the packaged chart (.tgz) that was verified and unpacked
#   files:      sha256 over the unpacked directory (relative paths and contents)
#   upstream:   the source it was built from when it was packaged from a git tag
# manifests: upstream files copied verbatim from a tag (sha256 of each: sha256s), deployed as a
# plain directory of manifests
"""


def tree_digest(path: Path) -> str:
    """A hash of every file below ``path`` (relative names and contents), in a stable order."""
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode() + b"\0")
        digest.update(item.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def file_digest(path: Path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def _present(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without empty fields, nested ones included (the lock stays short)."""
    return {
        key: _present(item) if isinstance(item, dict) else item
        for key, item in value.items()
        if item not in (None, "")
    }


@dataclass(frozen=True)
class Upstream:
    """The git source a chart was packaged from (``helm package`` of a tag's tree)."""

    source: str  # github:<owner>/<name>
    tag: str
    commit: str
    path: str
    recipe: str = ""  # what the release process does beyond `helm package`, if anything


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    repository: str
    upstream: Upstream | None = None


@dataclass(frozen=True)
class LockedChart:
    name: str
    version: str
    app_version: str
    repository: str
    digest: str
    files: str
    checked: str  # the date the pin was last checked against upstream
    dependencies: tuple[Dependency, ...] = ()
    upstream: Upstream | None = None

    def to_yaml(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "appVersion": self.app_version,
            "repository": self.repository,
            "digest": self.digest,
            "files": self.files,
            "checked": self.checked,
        }
        if self.upstream:
            data["upstream"] = _present(asdict(self.upstream))
        if self.dependencies:
            data["dependencies"] = [_present(asdict(d)) for d in self.dependencies]
        return data

    @classmethod
    def from_yaml(cls, name: str, data: Mapping[str, Any]) -> LockedChart:
        def upstream(value: Any) -> Upstream | None:
            return Upstream(**value) if isinstance(value, dict) else None

        return cls(
            name=name,
            version=str(data["version"]),
            app_version=str(data.get("appVersion", "")),
            repository=str(data["repository"]),
            digest=str(data["digest"]),
            files=str(data["files"]),
            checked=str(data.get("checked", "")),
            upstream=upstream(data.get("upstream")),
            dependencies=tuple(
                Dependency(
                    name=str(d["name"]),
                    version=str(d["version"]),
                    repository=str(d.get("repository", "")),
                    upstream=upstream(d.get("upstream")),
                )
                for d in data.get("dependencies") or []
            ),
        )


@dataclass(frozen=True)
class LockedManifests:
    """Upstream files vendored verbatim (no chart): ``sha256s`` of each, as the tag holds it."""

    name: str
    version: str  # the upstream release they belong to
    files: str
    checked: str
    upstream: Upstream
    sha256s: Mapping[str, str]  # vendored file name -> sha256 of its bytes

    def to_yaml(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "files": self.files,
            "checked": self.checked,
            "upstream": _present(asdict(self.upstream)),
            "sha256s": dict(sorted(self.sha256s.items())),
        }

    @classmethod
    def from_yaml(cls, name: str, data: Mapping[str, Any]) -> LockedManifests:
        return cls(
            name=name,
            version=str(data["version"]),
            files=str(data["files"]),
            checked=str(data.get("checked", "")),
            upstream=Upstream(**data["upstream"]),
            sha256s={str(k): str(v) for k, v in (data.get("sha256s") or {}).items()},
        )


@dataclass
class Lock:
    """``charts/vendor/lock.yaml`` of one repository."""

    root: Path
    charts: dict[str, LockedChart] = field(default_factory=dict)
    manifests: dict[str, LockedManifests] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / LOCK_FILE

    def chart_dir(self, name: str) -> Path:
        return self.root / VENDOR_DIR / name

    @classmethod
    def load(cls, root: Path) -> Lock:
        path = root / LOCK_FILE
        data = read_mapping(path) if path.is_file() else {}
        charts = data.get("charts") or {}
        manifests = data.get("manifests") or {}
        try:
            return cls(
                root,
                {n: LockedChart.from_yaml(n, c) for n, c in charts.items()},
                {n: LockedManifests.from_yaml(n, m) for n, m in manifests.items()},
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise InputError(
                f"{display_path(path)}: malformed entry ({error})",
                hint="restore it from git or re-run `platform vendor`",
            ) from error

    def get(self, name: str) -> LockedChart:
        from platformctl.errors import unknown_name

        if name not in self.charts:
            raise unknown_name("vendored chart", name, self.charts)
        return self.charts[name]

    def get_manifests(self, name: str) -> LockedManifests:
        from platformctl.errors import unknown_name

        if name not in self.manifests:
            raise unknown_name("vendored manifests", name, self.manifests)
        return self.manifests[name]

    def save(self) -> None:
        data: dict[str, Any] = {"charts": {n: c.to_yaml() for n, c in sorted(self.charts.items())}}
        if self.manifests:
            data["manifests"] = {n: m.to_yaml() for n, m in sorted(self.manifests.items())}
        body = yaml.safe_dump(data, sort_keys=False, width=100)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".lock-")
        with os.fdopen(fd, "w") as handle:
            handle.write(_LOCK_HEADER + body)
        os.replace(temporary, self.path)


def _unpack(archive: Path, into: Path) -> Path:
    """``archive`` expanded under ``into``; dependency archives in its ``charts/`` unpacked
    in place, as Helm loads them either way."""
    import helm_python

    into.mkdir(parents=True, exist_ok=True)
    before = set(into.iterdir())
    try:
        helm_python.expand(into, archive)
    except helm_python.HelmError as error:
        raise InputError(f"{archive.name}: not a chart archive: {error}") from error
    (chart,) = set(into.iterdir()) - before
    subcharts = chart / "charts"
    for nested in sorted(subcharts.glob("*.tgz")) if subcharts.is_dir() else []:
        _unpack(nested, subcharts)
        nested.unlink()
    return chart


def _dependencies(chart: Path, given: Mapping[str, Upstream]) -> tuple[Dependency, ...]:
    import helm_python

    declared = {
        str(d["name"]): str(d.get("repository", ""))
        for d in helm_python.Chart.load(chart).metadata.get("dependencies") or []
    }
    found = []
    for sub in sorted(p for p in (chart / "charts").glob("*") if (p / "Chart.yaml").is_file()):
        meta = read_mapping(sub / "Chart.yaml")
        name = str(meta["name"])
        found.append(
            Dependency(name, str(meta["version"]), declared.get(name, ""), given.get(name))
        )
    return tuple(found)


@contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A scratch directory on the vendored charts' filesystem, so the swap is a rename."""
    (root / VENDOR_DIR).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root / VENDOR_DIR, prefix=".staging-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(lock: Lock, name: str, folder: Path, staging: Path) -> None:
    """Rename ``folder`` (checked, in ``staging``) into place and save ``lock`` (which already
    holds its entry); if saving fails, the previous copy comes back."""
    target = lock.chart_dir(name)
    previous = staging / "previous"
    if target.exists():
        target.rename(previous)
    folder.rename(target)
    try:
        lock.save()
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        if previous.exists():
            previous.rename(target)
        raise


def install(
    root: Path,
    archive: Path,
    *,
    repository: str,
    expected: tuple[str, str] | None = None,
    upstream: Upstream | None = None,
    dependencies: Mapping[str, Upstream] | None = None,
    today: dt.date | None = None,
) -> LockedChart:
    """Vendor the chart in ``archive`` (already verified against its source) and lock it.

    ``expected`` is the (name, version) asked for: an archive holding anything else is
    refused and nothing changes.
    """
    import helm_python

    lock = Lock.load(root)
    with _staging(root) as staging:
        chart_dir = _unpack(archive, staging / "unpacked")
        try:
            metadata = helm_python.Chart.load(chart_dir).metadata
        except helm_python.HelmError as error:
            raise InputError(f"{archive.name}: cannot load the chart: {error}") from error
        name, version = str(metadata["name"]), str(metadata["version"])
        if expected and expected != (name, version):
            raise RefusedError(
                f"{archive.name} holds {name} {version}, not {expected[0]} {expected[1]}",
                hint="the source serves another chart under this name: nothing was changed",
            )
        entry = LockedChart(
            name=name,
            version=version,
            app_version=str(metadata.get("appVersion", "")),
            repository=repository,
            digest=file_digest(archive),
            files=tree_digest(chart_dir),
            checked=(today or dt.date.today()).isoformat(),
            dependencies=_dependencies(chart_dir, dependencies or {}),
            upstream=upstream,
        )
        lock.charts[name] = entry
        _swap_in(lock, name, chart_dir, staging)
    return entry


def install_manifests(
    root: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    upstream: Upstream,
    today: dt.date | None = None,
) -> LockedManifests:
    """Vendor upstream ``files`` (vendored name -> bytes, exactly as the tag holds them) as
    ``charts/vendor/<name>`` and lock them; all-or-nothing, like ``install``."""
    lock = Lock.load(root)
    if name in lock.charts:
        raise InputError(f"{name} is a vendored chart, not manifests")
    with _staging(root) as staging:
        folder = staging / "unpacked"
        folder.mkdir()
        for file_name, content in files.items():
            (folder / file_name).write_bytes(content)
        entry = LockedManifests(
            name=name,
            version=version,
            files=tree_digest(folder),
            checked=(today or dt.date.today()).isoformat(),
            upstream=upstream,
            sha256s={n: f"sha256:{hashlib.sha256(c).hexdigest()}" for n, c in files.items()},
        )
        lock.manifests[name] = entry
        _swap_in(lock, name, folder, staging)
    return entry


def _manifests_problems(lock: Lock, entry: LockedManifests) -> list[str]:
    folder = lock.chart_dir(entry.name)
    if not folder.is_dir():
        return [f"{entry.name}: locked but {display_path(folder)} is missing"]
    present = {p.name for p in folder.iterdir() if p.is_file()}
    problems = [
        f"{entry.name}: {file_name} is not {digest} (edited by hand?)"
        for file_name, digest in sorted(entry.sha256s.items())
        if file_name not in present or file_digest(folder / file_name) != digest
    ]
    if not problems and tree_digest(folder) != entry.files:
        problems.append(f"{entry.name}: files differ from the lock (added or removed by hand?)")
    return problems


def lock_problems(root: Path) -> list[str]:
    """Every vendored directory that does not match its lock entry, and every stray one."""
    lock = Lock.load(root)
    problems = []
    for name, entry in sorted(lock.charts.items()):
        folder = lock.chart_dir(name)
        if not (folder / "Chart.yaml").is_file():
            problems.append(f"{name}: locked but {display_path(folder)} is missing")
            continue
        meta = read_mapping(folder / "Chart.yaml")
        if (str(meta.get("name")), str(meta.get("version"))) != (name, entry.version):
            problems.append(
                f"{name}: {display_path(folder)} holds {meta.get('name')} {meta.get('version')}, "
                f"the lock says {entry.version}"
            )
        elif tree_digest(folder) != entry.files:
            problems.append(f"{name}: files differ from the lock (edited by hand?)")
    for manifests in sorted(lock.manifests.values(), key=lambda m: m.name):
        problems += _manifests_problems(lock, manifests)
    known = set(lock.charts) | set(lock.manifests)
    for folder in sorted((root / VENDOR_DIR).glob("*")):
        if folder.is_dir() and not folder.name.startswith(".") and folder.name not in known:
            problems.append(f"{folder.name}: vendored but not in {display_path(lock.path)}")
    return problems


CRD_SUFFIX = ".json"


def crd_file_name(crd: Mapping[str, Any]) -> str:
    """``<group>_<Kind>.json``: what the schema validator looks a custom resource up by (JSON:
    the validator reads these megabytes ten times faster than YAML)."""
    return f"{crd['spec']['group']}_{crd['spec']['names']['kind']}{CRD_SUFFIX}"


def pinned_crds(root: Path) -> dict[str, dict[str, Any]]:
    """The CRDs the environments install, as the vendored material renders them: every add-on
    chart (or directory of manifests) with the values its Application passes (the first
    environment's; CRDs do not depend on the environment), and Argo CD's chart with its
    defaults (the bootstrap sets no CRD value but ``crds.keep``, an annotation)."""
    from platformctl.model import load_repo
    from platformctl.render import Job, Renderer

    repo = load_repo(root)
    renderer = Renderer(repo)
    environment = repo.environments[0]
    jobs = renderer.addon_chart_jobs(environment)
    jobs.append(
        Job(
            environment=environment,
            name="argo-cd",
            chart=Lock.load(root).chart_dir("argo-cd"),
            values={},
            release_name="argocd",
            namespace=environment.argocd_namespace,
            where=str(LOCK_FILE),
        )
    )
    found: dict[str, dict[str, Any]] = {}
    for job in jobs:
        for document in renderer.render(job).documents:
            if document.get("kind") == "CustomResourceDefinition":
                found[crd_file_name(document)] = document
    return dict(sorted(found.items()))


# Where the schema validator reads CRDs from, inside this repository (platformctl's own
# package data): refreshed from the vendored charts whenever one changes.
CRD_DIR = Path("src/platformctl/crds")


def refresh_crds(root: Path) -> list[str]:
    """Write the pinned CRDs into ``src/platformctl/crds`` (when this repository holds the
    package); returns the files that changed."""
    folder = root / CRD_DIR
    if not folder.is_dir():
        return []
    changed = []
    for name, crd in pinned_crds(root).items():
        text = json.dumps(crd, indent=1) + "\n"
        path = folder / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
    return changed


# ---- fetching a chart from its repository (platform vendor) ----------------------------------

_HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
_SHOWN_VERSIONS = 5


def _unknown_version(chart: str, version: str, known: list[str], where: str) -> InputError:
    shown = ", ".join(known[:_SHOWN_VERSIONS]) or "none"
    return InputError(f"{where} has no {chart} {version}", hint=f"newest: {shown}")


def _pull_http(chart: str, version: str, repository: str, into: Path) -> tuple[Path, str]:
    """The archive from an HTTP chart repository and the digest its index gives for it."""
    import helm_python

    from platformctl.errors import unknown_name

    try:
        index = helm_python.repo_index(repository)
    except helm_python.HelmError as error:
        raise EnvironmentProblem(
            f"cannot read the chart index of {repository}: {error}",
            hint="check the URL and the network; nothing was changed",
        ) from error
    entries = index.get("entries") or {}
    if chart not in entries:
        raise unknown_name(f"chart in {repository}", chart, entries)
    versions = {str(e.get("version")): e for e in entries[chart]}
    if version not in versions:
        raise _unknown_version(chart, version, list(versions), repository)
    try:
        pulled = helm_python.pull(chart, repo_url=repository, version=version, destination=into)
    except helm_python.HelmError as error:
        raise EnvironmentProblem(f"cannot download {chart} {version}: {error}") from error
    archive = _archive(into, pulled)
    return archive, f"sha256:{versions[version].get('digest', '')}"


def _pull_oci(chart: str, version: str, repository: str, into: Path) -> tuple[Path, str]:
    """The archive from an OCI registry and the digest of the chart layer its manifest names."""
    import helm_python

    from platformctl.oci import Reference, Registry, default_credentials

    reference = Reference.parse(f"{repository.removeprefix('oci://').rstrip('/')}/{chart}")
    registry = Registry(reference.host)
    manifest = registry.manifest(reference.name, version)
    if manifest is None:
        raise InputError(
            f"{repository} has no {chart} {version}",
            hint="check the chart name and version (the registry answered 404)",
        )
    layers = [
        layer
        for layer in manifest.json().get("layers") or []
        if layer.get("mediaType") == _HELM_CHART_LAYER
    ]
    if len(layers) != 1:
        raise InputError(f"{repository}/{chart}:{version} is not a Helm chart (no chart layer)")
    client = helm_python.RegistryClient(plain_http=registry.base_url.startswith("http://"))
    credentials = default_credentials(reference.host)
    try:
        if credentials:
            client.login(
                reference.host, *credentials, plain_http=registry.base_url.startswith("http://")
            )
        pulled = client.pull(
            f"oci://{reference.host}/{reference.name}", version=version, destination=into
        )
    except helm_python.HelmError as error:
        raise EnvironmentProblem(
            f"cannot pull {chart} {version} from {repository}: {error}"
        ) from error
    finally:
        client.close()
    return _archive(into, pulled), str(layers[0]["digest"])


def _archive(into: Path, pulled: dict[str, Any]) -> Path:
    archives = sorted(into.glob("*.tgz"))
    if len(archives) != 1:
        raise EnvironmentProblem(f"the download left no single chart archive ({pulled})")
    return archives[0]


def vendor_chart(
    root: Path,
    chart: str,
    version: str,
    repository: str | None = None,
    *,
    today: dt.date | None = None,
) -> LockedChart:
    """Add ``chart`` at ``version`` from ``repository`` (an HTTP chart repository or
    ``oci://`` registry; the locked one when not given), or bump it: the archive must match
    the digest its repository publishes, and a version already locked must match the lock's
    digest (a re-pushed tag is refused). Nothing changes unless all of that holds."""
    lock = Lock.load(root)
    if chart in lock.manifests:
        raise InputError(
            f"{chart} is vendored manifests, not a chart",
            hint="they are copied from their upstream tag: scripts/vendor-from-git.py",
        )
    locked = lock.charts.get(chart)
    if repository is None:
        if locked is None:
            raise InputError(
                f"{chart} is not vendored yet", hint="say where it is published: --repo URL"
            )
        repository = locked.repository
    if not repository.startswith(("https://", "http://", "oci://")):
        raise InputError(f"'{repository}' is neither an HTTP chart repository nor oci://")
    with tempfile.TemporaryDirectory(prefix="platform-vendor-") as scratch:
        pull = _pull_oci if repository.startswith("oci://") else _pull_http
        archive, published = pull(chart, version, repository, Path(scratch))
        actual = file_digest(archive)
        if actual != published:
            raise RefusedError(
                f"{chart} {version} from {repository} is {actual}, its repository says {published}",
                hint="the download is corrupt or was tampered with: nothing was changed",
            )
        if locked and locked.version == version and locked.digest != actual:
            raise RefusedError(
                f"{chart} {version} was re-pushed: {actual}, the lock has {locked.digest}",
                hint="a published version must not change; nothing was changed",
            )
        entry = install(
            root, archive, repository=repository, expected=(chart, version), today=today
        )
    pin_addons(root, chart, version)
    refresh_crds(root)
    return entry


ADDONS_VALUES = Path("charts/addons/values.yaml")


def pin_addons(root: Path, chart: str, version: str) -> bool:
    """Set ``chart.version`` of every add-on deploying ``chart`` in charts/addons (comments
    and layout kept); True when something changed."""
    path = root / ADDONS_VALUES
    if not path.is_file():
        return False
    from ruamel.yaml import YAML

    loader = YAML(typ="rt")
    loader.width = 4096
    data = loader.load(path.read_text())
    changed = False
    for addon in (data.get("addons") or {}).values():
        pinned = addon.get("chart") or {}
        if pinned.get("name") == chart and str(pinned.get("version")) != version:
            pinned["version"] = version
            changed = True
    if changed:
        with path.open("w") as handle:
            loader.dump(data, handle)
    return changed
