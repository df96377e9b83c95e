"""Rendering charts in-process with the Helm v4 SDK, exactly as Argo CD renders them.

A service release is ``charts/service`` with the two values files of the model; the Argo CD
objects of an environment are ``charts/gitops`` with values taken from the model.
"""

from __future__ import annotations

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

    def _render(
        self, chart_path: Path, values: dict[str, Any], name: str, namespace: str, where: str
    ) -> dict[str, str]:
        import helm_python

        chart = self._chart(chart_path)
        try:
            manifests: dict[str, str] = chart.render(values, name=name, namespace=namespace)
        except helm_python.HelmValuesError as error:
            reason = " ".join(line.strip("- ") for line in str(error).splitlines()[1:] if line)
            raise InputError(f"{where}: values break the chart's schema: {reason}") from error
        except helm_python.HelmError as error:
            raise InputError(f"{where}: render failed: {error}") from error
        return dict(sorted(manifests.items()))

    def release(self, release: Release) -> Rendered:
        where = f"{display_path(release.values_file)} (over {display_path(release.base_file)})"
        manifests = self._render(
            self.repo.service_chart,
            merge_values(release.values, platform_values(release.environment)),
            release.service,
            release.environment.namespace,
            where,
        )
        return Rendered(
            environment=release.environment,
            name=release.service,
            manifests=manifests,
            documents=parse_documents(manifests, where),
            release=release,
        )

    def _argocd_target(
        self,
        environment: Environment,
        chart: Path,
        values: dict[str, Any],
        release_name: str,
        target: str,
        where: str,
    ) -> Rendered:
        """A target of an environment's own (not a service's), rendered into Argo CD's
        namespace."""
        manifests = self._render(chart, values, release_name, environment.argocd_namespace, where)
        return Rendered(
            environment=environment,
            name=target,
            manifests=manifests,
            documents=parse_documents(manifests, where),
        )

    def gitops(self, environment: Environment) -> Rendered:
        return self._argocd_target(
            environment,
            self.repo.gitops_chart,
            gitops_values(self.repo, environment),
            f"{environment.name}-gitops",
            GITOPS_TARGET,
            display_path(environment.settings_file),
        )

    def addons(
        self, environment: Environment, annotations: dict[str, str] | None = None
    ) -> Rendered:
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
        return self._argocd_target(
            environment,
            self.repo.addons_chart,
            merge_values(values, filled),
            ADDONS_TARGET,
            ADDONS_TARGET,
            where,
        )
