"""Rendering charts in-process with the Helm v4 SDK, exactly as Argo CD renders them.

A service release is ``charts/service`` with the two values files of the model; the Argo CD
objects of an environment are ``charts/gitops`` with values taken from the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from platformctl.bridge import (
    UnknownAnnotation,
    addon_cluster_values,
    fill,
    placeholder_annotations,
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
from platformctl.yamlio import display_path, read_mapping

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
GITOPS_TARGET = "argocd"
ADDONS_TARGET = "addons"


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
        return f"{self.environment.name}/{self.name}"

    @property
    def text(self) -> str:
        """One multi-document YAML stream, as ``helm template`` prints it."""
        return "".join(
            f"---\n# Source: {path}\n{body.strip()}\n"
            for path, body in self.manifests.items()
            if body.strip()
        )


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

    @property
    def key(self) -> str:
        return f"{self.environment.name}/{self.name}"


def parse_documents(manifests: dict[str, str], where: str) -> tuple[dict[str, Any], ...]:
    documents: list[dict[str, Any]] = []
    for path, body in manifests.items():
        try:
            for document in yaml.load_all(body, Loader=_Loader):
                if isinstance(document, dict) and document:
                    documents.append(document)
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
    the cluster facts as references to the cluster secret, and the model's workload namespace."""
    return {**addon_cluster_values(), "workloads": {"namespace": environment.namespace}}


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


class Renderer:
    """Loads each chart once and renders releases from it (~2-8 ms per release)."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._charts: dict[Path, Any] = {}
        self._chart_digests: dict[Path, str] = {}

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
        import helm_python

        chart = self._chart(job.chart)
        try:
            manifests: dict[str, str] = chart.render(
                job.values, name=job.release_name, namespace=job.namespace
            )
        except helm_python.HelmValuesError as error:
            reason = " ".join(line.strip("- ") for line in str(error).splitlines()[1:] if line)
            raise InputError(f"{job.where}: values break the chart's schema: {reason}") from error
        except helm_python.HelmError as error:
            raise InputError(f"{job.where}: render failed: {error}") from error
        return dict(sorted(manifests.items()))

    def render(self, job: Job) -> Rendered:
        manifests = self._render(job)
        return Rendered(
            environment=job.environment,
            name=job.name,
            manifests=manifests,
            documents=parse_documents(manifests, job.where),
            release=job.release,
        )

    def chart_digest(self, chart: Path) -> str:
        """A hash of every file of a chart: a render's output depends on nothing else of it."""
        if chart not in self._chart_digests:
            digest = hashlib.sha256()
            for path in sorted(p for p in chart.rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(chart)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
            self._chart_digests[chart] = digest.hexdigest()
        return self._chart_digests[chart]

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
