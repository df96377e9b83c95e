"""Rendering charts in-process with the Helm v4 SDK, exactly as Argo CD renders them.

A service release is ``charts/service`` with the two values files of the model; the Argo CD
objects of an environment are ``charts/gitops`` with values taken from the model; its add-ons
are ``charts/addons`` and, for each add-on Application that renders, the vendored upstream chart
it points at with the release name, namespace and values that Application passes (or, for a
directory of vendored manifests, the files Argo CD reads from it).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from stat import S_ISREG
from typing import Any

import yaml

from platformctl.bridge import (
    UnknownAnnotation,
    addon_cluster_values,
    fill,
    placeholder_annotations,
    reference,
)
from platformctl.cachefile import (
    cache_dir,
    read_cache,
    survives_json,
    write_cache,
    writes_allowed,
)
from platformctl.errors import InputError
from platformctl.model import (
    ADDONS_DIR,
    ENVIRONMENTS_DIR,
    Environment,
    Release,
    Repo,
    merge_values,
)
from platformctl.vendor import VENDOR_DIR, Lock, tree_digest
from platformctl.yamlio import display_path, read_mapping

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader, reading ``=`` as the plain string it is to Kubernetes' YAML (YAML 1.1's
    value key; prometheus-operator's CRDs list it among PromQL match operators)."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Base.construct_yaml_str)
# A line starting with ``---`` ends a document for Helm and Argo CD, whatever follows
# (``---# comment``); for YAML only when a space or the line's end follows.
_SEPARATOR = re.compile(r"^---(?=[^\s-])", re.MULTILINE)
GITOPS_TARGET = "argocd"
_NOTES = "/NOTES.txt"
ADDONS_TARGET = "addons"
APPLICATIONS_FILE = "applications.json"
# Enough for every environment's add-ons, a few versions each.
APPLICATIONS_LIMIT = 64
CHARTS_FILE = "charts.json"
RENDERS_DIR = "renders"
# Rendered targets kept (one file each, the least recently used dropped first): every target of
# a large fleet's environments, a few versions each, within a bound on disk.
RENDERS_LIMIT = 4_000
RENDERS_BYTES = 1 << 30
# A file changed this close to when its chart's digest is stored could change again within the
# file system's timestamp granularity and keep its stat (git's "racily clean" files): such a
# digest is not stored.
RACY_NS = 2_000_000_000


def target_key(environment: str, name: str) -> str:
    """What verify and its cache call a target: ``<environment>/<name>``."""
    return f"{environment}/{name}"


@dataclass(frozen=True)
class Rendered:
    """The manifests of one target: a service release, or an environment's Argo CD objects."""

    environment: Environment
    name: str
    manifests: dict[str, str] = field(repr=False)
    documents: tuple[dict[str, Any], ...] = field(repr=False)
    release: Release | None = None

    @property
    def key(self) -> str:
        return target_key(self.environment.name, self.name)

    @property
    def text(self) -> str:
        """One multi-document YAML stream, as ``helm template`` prints it."""
        # ``---# comment`` separates documents for Helm, not for every YAML reader
        bodies = {
            path: _SEPARATOR.sub("---\n", body).strip() for path, body in self.manifests.items()
        }
        return "".join(f"---\n# Source: {path}\n{body}\n" for path, body in bodies.items() if body)


@dataclass(frozen=True)
class Job:
    """Everything a render depends on besides the chart's files: what the cache keys on."""

    environment: Environment
    name: str
    chart: Path
    values: dict[str, Any]
    release_name: str
    namespace: str
    where: str = field(compare=False)
    release: Release | None = field(default=None, compare=False)
    # A plain-manifests source (Argo CD's directory type): its ``directory`` options; ``chart``
    # is then the folder. None: a Helm chart.
    directory: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return target_key(self.environment.name, self.name)


@lru_cache(maxsize=4096)
def _parse(body: str) -> tuple[dict[str, Any], ...]:
    """One manifest's documents; identical bodies (an upstream chart's CRDs, in every
    environment) are parsed once per process, so the documents are shared: never mutate one."""
    documents: list[dict[str, Any]] = []
    for document in yaml.load_all(_SEPARATOR.sub("---\n", body), Loader=_Loader):
        if isinstance(document, dict) and document.get("kind") == "List":
            # applied item by item, as kubectl and Argo CD unpack a List
            documents += [i for i in document.get("items") or [] if isinstance(i, dict)]
        elif isinstance(document, dict) and document:
            documents.append(document)
    return tuple(documents)


def parse_documents(manifests: dict[str, str], where: str) -> tuple[dict[str, Any], ...]:
    documents: list[dict[str, Any]] = []
    for path, body in manifests.items():
        try:
            documents += _parse(body)
        except yaml.YAMLError as error:
            raise InputError(f"{where}: {path} renders invalid YAML: {error}") from error
    return tuple(documents)


def platform_values(environment: Environment) -> dict[str, Any]:
    """What the service chart learns of its environment (``platform:``), from the model.

    Argo CD passes the same through the services' ApplicationSet (``helm.valuesObject``), so
    ``platform render`` and the cluster render the same manifests.
    """
    return {
        "platform": {
            "environment": environment.name,
            "cluster": environment.cluster_name,
            "region": environment.region,
        }
    }


def addons_values(environment: Environment) -> dict[str, Any]:
    """What the add-ons' ApplicationSet passes to ``charts/addons`` (``helm.valuesObject``):
    the cluster facts and this repository's URL and revision (where the vendored charts are) as
    references to the cluster secret, and the model's workload namespace and Prometheus host."""
    return {
        **addon_cluster_values(),
        "source": {
            "repoURL": reference("workload_repo_url"),
            "targetRevision": reference("workload_repo_revision"),
        },
        "workloads": {"namespace": environment.namespace},
        "prometheus": {"host": environment.prometheus_host or ""},
    }


def gitops_values(repo: Repo, environment: Environment) -> dict[str, Any]:
    """Values of the Argo CD chart for one environment, all from the model."""
    return {
        "environment": environment.name,
        "serviceValues": platform_values(environment),
        "addons": {
            # relative to charts/addons, as Argo CD resolves value files
            "valuesFile": f"../../{ENVIRONMENTS_DIR}/{ADDONS_DIR}/{environment.name}.yaml",
            "values": addons_values(environment),
        },
        "repoURL": repo.repository_url,
        "revision": repo.revision,
        "argocdNamespace": environment.argocd_namespace,
        "destination": {
            "server": environment.cluster_server,
            "namespace": environment.namespace,
        },
        "sync": {"prune": environment.prune, "selfHeal": environment.self_heal},
    }


_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _matches(path: str, pattern: str) -> bool:
    """Argo CD's include/exclude glob, ``{a,b}`` alternatives included."""
    alternatives = pattern[1:-1].split(",") if pattern.startswith("{") else [pattern]
    return any(fnmatch.fnmatchcase(path, item.strip()) for item in alternatives if item.strip())


def _directory(folder: Path, options: dict[str, Any], where: str) -> dict[str, str]:
    """A directory source as Argo CD reads it (user-guide/directory.md): the .yaml, .yml and
    .json files at its root (below it too with ``recurse``) that ``include`` matches, if
    given, and ``exclude`` does not."""
    if not folder.is_dir():
        raise InputError(f"{where}: {display_path(folder)} is missing", hint="restore it from git")
    include, exclude = str(options.get("include") or ""), str(options.get("exclude") or "")
    found = folder.rglob("*") if options.get("recurse") else folder.glob("*")
    manifests: dict[str, str] = {}
    for path in sorted(found):
        relative = str(path.relative_to(folder))
        wanted = (not include or _matches(relative, include)) and not (
            exclude and _matches(relative, exclude)
        )
        if path.is_file() and path.suffix in _MANIFEST_SUFFIXES and wanted:
            manifests[relative] = path.read_text()
    return manifests


def _digest_of(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=1)
def _applications_fingerprint() -> str:
    """The engine of a cached render: the Helm SDK's version and this module's code."""
    return _digest_of([version("helm-python-sdk"), Path(__file__).read_text()])


@lru_cache(maxsize=1)
def _renders_fingerprint() -> str:
    """The engine of a stored render: the Helm SDK and YAML library versions and this module's
    code (the Helm call, the directory reader and the document parser)."""
    return _digest_of([version("helm-python-sdk"), version("PyYAML"), Path(__file__).read_text()])


def _prune(folder: Path) -> None:
    """Keep ``folder`` within RENDERS_LIMIT files and RENDERS_BYTES, the most recent kept."""
    found: list[tuple[int, int, str]] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue  # the .gitignore, and another process's file being written
            with contextlib.suppress(OSError):
                stat = entry.stat()
                found.append((stat.st_mtime_ns, stat.st_size, entry.path))
    total = 0
    for count, (_, size, path) in enumerate(sorted(found, reverse=True), 1):
        total += size
        if count > RENDERS_LIMIT or total > RENDERS_BYTES:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _tree_signature(path: Path) -> tuple[str, int]:
    """A hash of the names and stats of the files ``tree_digest`` reads (as ``rglob`` finds
    them: symbolic links to directories not followed), and the newest of their change times
    (ns)."""
    found: list[tuple[str, os.stat_result]] = []
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue  # a broken link: not a file to rglob either
            if S_ISREG(stat.st_mode):
                found.append((os.path.relpath(full, path), stat))
    digest = hashlib.sha256()
    newest = 0
    for name, stat in sorted(found, key=lambda item: item[0]):
        digest.update(
            f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}"
            f"\0{stat.st_ino}\0{stat.st_dev}\0".encode()
        )
        newest = max(newest, stat.st_mtime_ns, stat.st_ctime_ns)
    return digest.hexdigest(), newest


@lru_cache(maxsize=1)
def _charts_fingerprint() -> str:
    """How a stored chart digest was computed: ``vendor.tree_digest``'s module."""
    return _digest_of([Path(__file__).with_name("vendor.py").read_text()])


class Renderer:
    """Loads each chart once and renders releases from it (~2-8 ms per release)."""

    def __init__(self, repo: Repo, *, stored: bool = True) -> None:
        """``stored=False`` (``verify --no-cache``): every render made and every chart hashed
        again, none read from ``.platform-cache/`` (what is made is still stored)."""
        self.repo = repo
        self.stored = stored
        self._charts: dict[Path, Any] = {}
        self._chart_digests: dict[Path, str] = {}
        self._applications: dict[str, list[dict[str, Any]]] = {}
        self._known_applications: dict[str, Any] | None = None
        self._known_charts: dict[str, Any] | None = None
        self._lock: Lock | None = None
        self._api_readers: dict[Path, bool] = {}
        self._pruned = False  # the stored renders' folder, once per renderer (a scan of it)

    def _chart(self, path: Path) -> Any:
        if path not in self._charts:
            import helm_python

            if not (path / "Chart.yaml").is_file():
                raise InputError(
                    f"{display_path(path)}: chart missing (no Chart.yaml)",
                    hint="restore it from git",
                )
            try:
                self._charts[path] = helm_python.Chart.load(path)
            except helm_python.HelmError as error:
                raise InputError(f"{display_path(path)}: cannot load chart: {error}") from error
        return self._charts[path]

    def _render(self, job: Job) -> dict[str, str]:
        if job.directory is not None:
            return _directory(job.chart, job.directory, job.where)
        return self._helm(job)

    def _helm(self, job: Job) -> dict[str, str]:
        """``helm template`` as Argo CD runs it: with the cluster's Kubernetes version and the
        API versions it serves (the pinned CRDs', see ``schemas.crd_api_versions``), the CRDs
        of ``crds/`` included, NOTES.txt left out."""
        import helm_python
        from helm_python import _native

        chart = self._chart(job.chart)
        options = self._options(job)
        try:
            # Chart.render takes no capabilities (helm-python 0.2.2); its native call does.
            rendered = _native.call_string(
                "helm_render", chart._raw(), json.dumps(job.values), json.dumps(options)
            )
        except helm_python.HelmValuesError as error:
            reason = " ".join(line.strip("- ") for line in str(error).splitlines()[1:] if line)
            raise InputError(f"{job.where}: values break the chart's schema: {reason}") from error
        except helm_python.HelmError as error:
            raise InputError(f"{job.where}: render failed: {error}") from error
        manifests: dict[str, str] = {
            path: body for path, body in json.loads(rendered).items() if not path.endswith(_NOTES)
        }
        for crd in chart.crds:
            manifests[crd["filename"]] = crd["data"]
        return dict(sorted(manifests.items()))

    def _reads_api_versions(self, chart: Path) -> bool:
        """Whether a template of the chart or of a subchart reads the API versions: the list
        (every pinned CRD, read from disk) changes nothing for the others."""
        if chart not in self._api_readers:
            self._api_readers[chart] = any(
                b".Capabilities.APIVersions" in path.read_bytes()
                for path in chart.rglob("*")
                if path.is_file() and "templates" in path.relative_to(chart).parts
            )
        return self._api_readers[chart]

    def render(self, job: Job) -> Rendered:
        """The target's manifests and documents, from ``.platform-cache/renders/`` when a
        render of the same inputs is stored there (see ``_render_key``)."""
        key = self._render_key(job)
        stored = self._stored_render(key) if key and self.stored else None
        if stored is None:
            manifests = self._render(job)
            documents = parse_documents(manifests, job.where)
            if key:
                self._store_render(key, manifests, documents)
        else:
            manifests, documents = stored
        return Rendered(
            environment=job.environment,
            name=job.name,
            manifests=manifests,
            documents=documents,
            release=job.release,
        )

    def _options(self, job: Job) -> dict[str, Any]:
        """What ``helm template`` is told besides the values (see ``_helm``)."""
        from platformctl.schemas import crd_api_versions

        return {
            "name": job.release_name,
            "namespace": job.namespace,
            "kube_version": f"v{job.environment.kubernetes_version}.0",
            "api_versions": crd_api_versions() if self._reads_api_versions(job.chart) else [],
        }

    def _render_key(self, job: Job) -> str | None:
        """Everything a render reads: the chart's (or the folder's) files, the exact values and
        options Helm is handed (or the directory options), and the engine. Rendering is
        deterministic for the same inputs (verify's input cache rests on the same fact), so a
        stored render is the one this run would make; re-rendering the whole environment for
        the sync twin then costs a JSON read per unchanged target instead of a render and a
        YAML parse (~4 s for a promotion). None: not stored (a missing chart's error is
        raised by the render itself; values JSON cannot hold exactly are never keyed)."""
        found = (
            job.chart.is_dir()
            if job.directory is not None
            else job.chart.joinpath("Chart.yaml").is_file()
        )
        if not found:
            return None
        try:
            if job.directory is not None:
                inputs = [json.dumps(job.directory)]
            else:
                inputs = [json.dumps(job.values), json.dumps(self._options(job))]
        except (TypeError, ValueError):
            return None
        return _digest_of([_renders_fingerprint(), self.chart_digest(job.chart), inputs])

    def _render_path(self, key: str) -> Path:
        return cache_dir(self.repo.root) / RENDERS_DIR / f"{key}.json"

    def _stored_render(self, key: str) -> tuple[dict[str, str], tuple[dict[str, Any], ...]] | None:
        path = self._render_path(key)
        entry = read_cache(path, _renders_fingerprint())
        manifests, documents = entry.get("manifests"), entry.get("documents")
        if not isinstance(manifests, dict) or not isinstance(documents, list):
            return None
        with contextlib.suppress(OSError):
            if writes_allowed():
                os.utime(path)  # recently used: pruned last
        return manifests, tuple(documents)

    def _store_render(
        self, key: str, manifests: dict[str, str], documents: tuple[dict[str, Any], ...]
    ) -> None:
        """Kept only when the documents survive JSON exactly (no dates, no non-string keys)."""
        entry = {"manifests": manifests, "documents": list(documents)}
        if not survives_json(entry):
            return
        path = self._render_path(key)
        write_cache(path, _renders_fingerprint(), entry)
        # a scan per store would cost a cold full gate seconds
        if not self._pruned and writes_allowed():
            self._pruned = True
            _prune(path.parent)

    def chart_digest(self, chart: Path) -> str:
        """A hash of every file of a chart: a render's output depends on nothing else of it.

        The vendored charts hold 20 MB, hashed on every command for the verify cache's keys;
        as git does for its index, a chart whose files all have the stat (size, times, inode)
        they had when it was last hashed keeps that digest (``.platform-cache/charts.json``).
        """
        if chart not in self._chart_digests:
            signature, newest = _tree_signature(chart)
            known = self._charts_cache()
            key = str(chart.resolve())  # one entry for a chart however it is reached
            entry = known.get(key)
            if self.stored and isinstance(entry, list) and entry[0] == signature:
                digest = str(entry[1])
            else:
                digest = tree_digest(chart)
                if newest < time.time_ns() - RACY_NS:
                    known[key] = [signature, digest]
                    write_cache(
                        cache_dir(self.repo.root) / CHARTS_FILE, _charts_fingerprint(), known
                    )
            self._chart_digests[chart] = digest
        return self._chart_digests[chart]

    def _charts_cache(self) -> dict[str, Any]:
        if self._known_charts is None:
            path = cache_dir(self.repo.root) / CHARTS_FILE
            self._known_charts = read_cache(path, _charts_fingerprint())
        return self._known_charts

    def release_job(self, release: Release) -> Job:
        return Job(
            environment=release.environment,
            name=release.service,
            chart=self.repo.service_chart,
            values=merge_values(release.values, platform_values(release.environment)),
            release_name=release.service,
            namespace=release.environment.namespace,
            where=f"{display_path(release.values_file)} (over {display_path(release.base_file)})",
            release=release,
        )

    def gitops_job(self, environment: Environment) -> Job:
        return Job(
            environment=environment,
            name=GITOPS_TARGET,
            chart=self.repo.gitops_chart,
            values=gitops_values(self.repo, environment),
            release_name=f"{environment.name}-gitops",
            namespace=environment.argocd_namespace,
            where=display_path(environment.settings_file),
        )

    def addons_job(
        self, environment: Environment, annotations: dict[str, str] | None = None
    ) -> Job:
        """The add-ons Application's render, as Argo CD makes it: ``charts/addons`` with the
        environment's add-ons file and the cluster facts its ApplicationSet fills in from the
        cluster secret (``annotations``; placeholders from the model when not given)."""
        path = self.repo.addons_file(environment.name)
        where = display_path(path)
        try:
            filled = fill(
                addons_values(environment),
                annotations or placeholder_annotations(self.repo, environment),
            )
        except UnknownAnnotation as error:
            raise InputError(f"{where}: the cluster secret has no annotation {error}") from None
        assert isinstance(filled, dict)
        values = read_mapping(path) if path.is_file() else {}
        return Job(
            environment=environment,
            name=ADDONS_TARGET,
            chart=self.repo.addons_chart,
            values=merge_values(values, filled),
            release_name=ADDONS_TARGET,
            namespace=environment.argocd_namespace,
            where=where,
        )

    def release(self, release: Release) -> Rendered:
        return self.render(self.release_job(release))

    def gitops(self, environment: Environment) -> Rendered:
        return self.render(self.gitops_job(environment))

    def addons(
        self, environment: Environment, annotations: dict[str, str] | None = None
    ) -> Rendered:
        return self.render(self.addons_job(environment, annotations))

    @property
    def lock(self) -> Lock:
        if self._lock is None:
            self._lock = Lock.load(self.repo.root)
        return self._lock

    def addon_chart_jobs(
        self, environment: Environment, annotations: dict[str, str] | None = None
    ) -> list[Job]:
        """One job per add-on Application of ``environment`` (key ``<env>/addons/<name>``):
        the vendored chart it points at, rendered with exactly its ``helm.releaseName``,
        destination namespace and ``helm.valuesObject`` (cluster facts filled in). An
        Application of anything else (an upstream repository) has none: PLAT007 and PLAT009
        judge those on the ``<env>/addons`` target."""
        addons_job = self.addons_job(environment, annotations)
        return [
            self._addon_chart_job(environment, document, addons_job.where)
            for document in self._vendored_applications(addons_job)
        ]

    def _vendored_applications(self, job: Job) -> list[dict[str, Any]]:
        """The Applications of vendored charts that ``job`` (the add-ons) renders.

        Rendering the add-ons costs the Helm SDK's start and a render; a promotion's policy
        gate needs only these documents (for the keys of the twin's cache). They are kept in
        ``.platform-cache/`` under everything the render depends on: the chart's files, the
        job's inputs, the Helm SDK and this module. Kept only when they survive JSON exactly,
        and never for a chart whose templates read the API versions (those come from the
        pinned CRDs on disk).
        """
        memo = _digest_of(
            [
                self.chart_digest(job.chart),
                job.values,
                job.release_name,
                job.namespace,
                job.environment.kubernetes_version,
            ]
        )
        if memo in self._applications:
            return self._applications[memo]
        known = self._applications_cache()
        cacheable = not self._reads_api_versions(job.chart)
        found = known.get(memo) if cacheable and self.stored else None
        if not isinstance(found, list):
            found = [
                document
                for document in self.render(job).documents
                if document.get("kind") == "Application"
                and Path(str(document["spec"]["source"].get("path", ""))).parent == VENDOR_DIR
            ]
            if cacheable and survives_json(found):
                known.pop(memo, None)
                known[memo] = found
                entries = dict(list(known.items())[-APPLICATIONS_LIMIT:])
                write_cache(self._applications_path, _applications_fingerprint(), entries)
        self._applications[memo] = found
        return found

    @property
    def _applications_path(self) -> Path:
        return cache_dir(self.repo.root) / APPLICATIONS_FILE

    def _applications_cache(self) -> dict[str, Any]:
        if self._known_applications is None:
            self._known_applications = read_cache(
                self._applications_path, _applications_fingerprint()
            )
        return self._known_applications

    def _addon_chart_job(
        self, environment: Environment, application: dict[str, Any], where: str
    ) -> Job:
        name = str(application["metadata"]["name"])
        where = f"{where} (addons.{name})"
        source = application["spec"]["source"]
        path = Path(str(source["path"]))
        # Argo CD takes a source with ``directory`` options as plain manifests.
        plain = "directory" in source
        locked = self.lock.get_manifests(path.name) if plain else self.lock.get(path.name)
        note = "platform.acme.io/manifests" if plain else "platform.acme.io/chart"
        pinned = application["metadata"].get("annotations", {}).get(note)
        if pinned != f"{locked.name}-{locked.version}":
            raise InputError(
                f"{where}: pins {pinned}, but {VENDOR_DIR}/{path.name} is {locked.version}",
                hint=f"vendor that version (platform vendor {path.name} --version ...) or pin "
                f"{locked.version}",
            )
        helm = source.get("helm") or {}
        return Job(
            environment=environment,
            name=f"{ADDONS_TARGET}/{name}",
            chart=self.repo.root / path,
            values=helm.get("valuesObject") or {},
            release_name=str(helm.get("releaseName") or name),
            namespace=str(application["spec"]["destination"]["namespace"]),
            where=where,
            directory=dict(source["directory"] or {}) if plain else None,
        )

    def unknown_values(self, job: Job) -> list[str]:
        """Keys of ``job.values`` the chart does not define (dotted paths): a misspelt key is
        silently ignored by Helm. A key counts as defined when the chart's defaults have it,
        or when its parent is free-form: empty in the defaults, or used whole by a template
        (``toYaml .Values.podAnnotations``, ``with .Values.extraEnv``). A directory of
        manifests takes no values."""
        if job.directory is not None:
            return []
        return sorted(self._unknown(job.chart, job.values, ()))

    def _unknown(
        self, chart_dir: Path, values: Any, at: tuple[str, ...], parent: tuple[Any, str] = ({}, "")
    ) -> list[str]:
        """``parent``: what the parent chart defines and templates for this subchart (its
        defaults under the subchart's key, its templates' references with the key cut off)."""
        chart = self._chart(chart_dir)
        sources = "\n".join(t["data"] for t in chart.templates) + parent[1]
        defaults = merge_values(chart.values, parent[0])
        subcharts = {p.name for p in (chart_dir / "charts").glob("*") if p.is_dir()}
        found: list[str] = []

        def used(path: tuple[str, ...]) -> bool:
            return bool(re.search(r"\.Values\." + re.escape(".".join(path)) + r"(?!\w)", sources))

        def walk(value: Any, known: Any, path: tuple[str, ...]) -> None:
            if not isinstance(value, dict) or not isinstance(known, dict) or not known:
                return
            if path and re.search(
                r"\.Values\." + re.escape(".".join(path)) + r"(?![\w.])", sources
            ):
                return  # used whole: any key is passed through
            for key, item in value.items():
                if not path and key in subcharts:
                    handed = (
                        defaults.get(key) or {},
                        sources.replace(f".Values.{key}.", ".Values."),
                    )
                    found.extend(
                        self._unknown(chart_dir / "charts" / key, item, (*at, key), handed)
                    )
                elif not path and key == "global":
                    continue
                elif key in known:
                    walk(item, known[key], (*path, key))
                elif not used((*path, key)):
                    found.append(".".join((*at, *path, key)))

        walk(values, defaults, ())
        return found
