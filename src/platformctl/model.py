"""The one model of the repository: stages, environments, services, their images and values.

Everything (CLI, verify, the Pulumi program, tests) reads the repository through ``load_repo``;
nothing else parses ``environments/``. Layout it reads:

    environments/pipeline.yaml            stage order (dev -> staging -> production)
    environments/base/<service>.yaml      chart values a service shares in every environment
    environments/<env>/environment.yaml   environment-wide settings (cluster, namespace, policy)
    environments/<env>/<service>.yaml     only what differs there, and the image on one line
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from platformctl.documents import (
    KnownValid,
    packaged_schema,
    packaged_schema_text,
    validator_for,
    without_required,
)
from platformctl.errors import InputError, unknown_name
from platformctl.gates.config import Gates, parse_gates
from platformctl.support import SUPPORT_FILE, Calendar, load_calendar
from platformctl.yamlio import display_path, located

if TYPE_CHECKING:
    from platformctl.stacks import StackSettings

ENVIRONMENTS_DIR = "environments"
PIPELINE_FILE = "pipeline.yaml"
ENVIRONMENT_FILE = "environment.yaml"
BASE_DIR = "base"
CHARTS_DIR = "charts"
SERVICE_CHART = f"{CHARTS_DIR}/service"
GITOPS_CHART = f"{CHARTS_DIR}/gitops"
ADDONS_CHART = f"{CHARTS_DIR}/addons"
# environments/addons/<env>.yaml: what differs from charts/addons/values.yaml in each environment
ADDONS_DIR = "addons"
EXCEPTIONS_FILE = "policy-exceptions.yaml"
RESERVED_NAMES = frozenset(
    {BASE_DIR, ADDONS_DIR, "argocd", "environment", "pipeline", "policy-exceptions"}
)

# A Helm release name: DNS label, at most 53 characters.
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
NAME_MAX = 53
DIGEST_PATTERN = re.compile(r"^sha256:[a-f0-9]{64}\Z")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def check_name(kind: str, name: str) -> str:
    """Refuse names that could escape ``environments/`` or a shell before any lookup."""
    if not NAME_PATTERN.match(name) or len(name) > NAME_MAX:
        raise InputError(
            f"'{name}' is not a valid {kind} name",
            hint="use lower-case letters, digits and '-', at most 53 characters",
        )
    return name


@dataclass(frozen=True)
class Image:
    """What runs: repository plus tag and/or digest. The digest, when set, is what is pulled."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if not self.repository:
            raise ValueError("image.repository is empty")
        if self.tag is not None and not TAG_PATTERN.match(self.tag):
            raise ValueError(f"image.tag '{self.tag}' is not a valid tag")
        if self.digest is not None and not DIGEST_PATTERN.match(self.digest):
            raise ValueError(f"image.digest '{self.digest}' is not sha256:<64 hex digits>")
        if self.tag is None and self.digest is None:
            raise ValueError("image needs a tag or a digest")

    @property
    def reference(self) -> str:
        """The pull reference the chart renders (repository@digest wins over repository:tag)."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"

    @property
    def short_digest(self) -> str | None:
        return self.digest[7:19] if self.digest else None

    @property
    def label(self) -> str:
        """Short, for messages: ``1.4.2@c2e5fa178246``."""
        return "@".join(part for part in (self.tag, self.short_digest) if part)


@dataclass(frozen=True)
class Policy:
    """Environment-wide rules that the verify gate enforces on top of checkov."""

    require_digest: bool = False
    min_replicas: int = 1
    require_pod_disruption_budget: bool = False
    allow_load_balancer: bool = False


@dataclass(frozen=True)
class Endpoint:
    """An HTTP API of an environment; the token, if any, is read from ``token_env``."""

    url: str
    token_env: str | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    path: Path
    cluster_name: str
    region: str
    cluster_server: str
    kubernetes_version: str
    namespace: str
    argocd_namespace: str
    prune: bool
    self_heal: bool
    policy: Policy
    # what a promotion into this environment requires (pipeline.yaml)
    gates: Gates = field(default_factory=Gates, compare=False)
    argocd: Endpoint | None = None
    prometheus: Endpoint | None = None
    # a Slack-compatible webhook: the URL itself, or the variable that holds a secret one
    webhook_url: str | None = None
    webhook_url_env: str | None = None
    # service -> why it may not be promoted into this environment (set by a rollback)
    holds: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False)
    # change-risk class -> who must review a pull request into this stage (pipeline.yaml)
    review: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @property
    def settings_file(self) -> Path:
        return self.path / ENVIRONMENT_FILE

    @property
    def prometheus_host(self) -> str | None:
        """The host the next stage's gates ask for this environment's Prometheus: charts/addons
        gives Prometheus an Ingress there, so the URL and the Ingress cannot disagree."""
        return urlsplit(self.prometheus.url).hostname if self.prometheus else None


@dataclass(frozen=True)
class Release:
    """One service in one environment: what Argo CD renders from the two values files."""

    service: str
    environment: Environment
    base_file: Path
    values_file: Path
    image: Image
    base_values: Mapping[str, Any] = field(repr=False)
    environment_values: Mapping[str, Any] = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.environment.name}/{self.service}"

    @cached_property
    def values(self) -> dict[str, Any]:
        """Base values with the environment's on top, as Helm merges two ``-f`` files."""
        return merge_values(self.base_values, self.environment_values)


@dataclass(frozen=True)
class Repo:
    root: Path
    repository_url: str
    revision: str
    environments: tuple[Environment, ...]
    services: tuple[str, ...]
    releases: Mapping[tuple[str, str], Release]
    # (service, environment) -> a values file of a later stage with no image line yet: the
    # service is not deployed there until a promotion writes the line (``platform new service``)
    pending: Mapping[tuple[str, str], Path] = field(default_factory=dict)
    # service -> which registry tags ``platform discover`` publishes (pipeline.yaml ``discover``)
    discover: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def environments_dir(self) -> Path:
        return self.root / ENVIRONMENTS_DIR

    @property
    def service_chart(self) -> Path:
        return self.root / SERVICE_CHART

    @property
    def gitops_chart(self) -> Path:
        return self.root / GITOPS_CHART

    @property
    def addons_chart(self) -> Path:
        return self.root / ADDONS_CHART

    def addons_file(self, environment: str) -> Path:
        return self.environments_dir / ADDONS_DIR / f"{environment}.yaml"

    @property
    def exceptions_file(self) -> Path:
        return self.environments_dir / EXCEPTIONS_FILE

    @property
    def support(self) -> Calendar:
        """The support calendar (``environments/support.yaml``): what AWS and upstream still
        support, and until when."""
        return load_calendar(self.environments_dir / SUPPORT_FILE)

    def stack(self, name: str) -> StackSettings:
        """The settings of ``Pulumi.<name>.yaml``, checked as ``pulumi up`` checks them."""
        from platformctl.stacks import read_stack

        return read_stack(self, name)

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(env.name for env in self.environments)

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        check_name("environment", name)
        raise unknown_name("environment", name, self.environment_names)

    def service(self, name: str) -> str:
        check_name("service", name)
        if name not in self.services:
            raise unknown_name("service", name, self.services)
        return name

    def previous(self, environment: str) -> Environment | None:
        """The stage before ``environment`` in the pipeline (None for the first)."""
        index = self.environment_names.index(self.environment(environment).name)
        return self.environments[index - 1] if index else None

    def release(self, service: str, environment: str) -> Release:
        env = self.environment(environment)
        self.service(service)
        try:
            return self.releases[(service, env.name)]
        except KeyError:
            if (service, env.name) in self.pending:
                raise InputError(
                    f"service '{service}' has no image in '{env.name}' yet",
                    hint=f"promote it: platform promote {service} --to {env.name}",
                ) from None
            raise InputError(
                f"service '{service}' is not deployed in '{env.name}'",
                hint=f"add {display_path(env.path / (service + '.yaml'))}",
            ) from None

    def with_release_files(
        self, paths: Iterable[Path], texts: Mapping[Path, str] | None = None
    ) -> Repo:
        """This model with some environments' values files read again (validated as
        ``load_repo`` reads them): a promotion re-reads the files it edited, not the fleet.
        With ``texts``, the files are read as they are about to be committed."""
        loader = _Loader(self.root)
        releases = dict(self.releases)
        pending = dict(self.pending)
        for path in paths:
            release = next((r for r in self.releases.values() if r.values_file == path), None)
            if release is not None:
                service, env = release.service, release.environment
                base = dict(release.base_values)
            else:
                key = next((key for key, file in self.pending.items() if file == path), None)
                if key is None:
                    raise ValueError(f"{path} is not the values file of a release")
                service, env = key[0], self.environment(key[1])
                base = loader.values_file(loader.base_file(service))
                del pending[key]
            releases[(service, env.name)] = loader.release(
                service, env, path, base, (texts or {}).get(path)
            )
        loader.known_valid.save()
        return replace(self, releases=releases, pending=pending)

    def select(
        self, environments: Iterable[str] = (), services: Iterable[str] = ()
    ) -> list[Release]:
        """Releases in pipeline order, filtered by names (validated, with hints)."""
        env_names = [self.environment(name).name for name in environments]
        service_names = [self.service(name) for name in services]
        return [
            release
            for env in self.environments
            if not env_names or env.name in env_names
            for service in self.services
            if not service_names or service in service_names
            if (release := self.releases.get((service, env.name))) is not None
        ]


def merge_values(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of values files: maps merge key by key, anything else is replaced."""
    merged = dict(lower)
    for key, value in upper.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_values(below, value)
        else:
            merged[key] = value
    return merged


def find_root(start: Path) -> Path:
    """The repository containing ``start``: the nearest folder with environments/pipeline.yaml."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ENVIRONMENTS_DIR / PIPELINE_FILE).is_file():
            return folder
    raise InputError(
        f"no platform repository at or above {start}",
        hint=f"run inside a clone or pass --repo PATH (needs {ENVIRONMENTS_DIR}/{PIPELINE_FILE})",
    )


class _Loader:
    """Reads and validates the files of one repository, once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.environments_dir = root / ENVIRONMENTS_DIR
        self.known_valid = KnownValid(root)
        self._values_schema: str | None = None

    def values_schema(self) -> str:
        if self._values_schema is None:
            schema_path = self.root / SERVICE_CHART / "values.schema.json"
            try:
                self._values_schema = schema_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise InputError(
                    f"{display_path(schema_path)}: missing (the service chart is needed)",
                    hint="restore charts/service from git",
                ) from None
        return self._values_schema

    @cached_property
    def values_validator(self) -> Any:
        return validator_for(without_required(json.loads(self.values_schema())))

    def values_file(self, path: Path, text: str | None = None) -> dict[str, Any]:
        return self.known_valid.read(
            path, self.values_schema(), lambda: self.values_validator, text
        )

    def packaged(self, path: Path, name: str, text: str | None = None) -> dict[str, Any]:
        """A file (or the ``text`` it is about to hold) checked against a packaged schema."""
        return self.known_valid.read(
            path, packaged_schema_text(name), lambda: validator_for(packaged_schema(name)), text
        )

    def load(self) -> Repo:
        repo = self._load()
        self.known_valid.save()
        return repo

    def _load(self) -> Repo:
        pipeline_path = self.environments_dir / PIPELINE_FILE
        pipeline = self.packaged(pipeline_path, "pipeline")
        stage_names = [stage["name"] for stage in pipeline["stages"]]
        for index, name in enumerate(stage_names):
            if name in RESERVED_NAMES:
                where = located(pipeline_path, ["stages", index, "name"])
                raise InputError(f"{where}: '{name}' is a reserved name, not a stage")
            if stage_names.index(name) != index:
                where = located(pipeline_path, ["stages", index, "name"])
                raise InputError(f"{where}: stage '{name}' is listed twice")

        services = self.services()
        environments = tuple(
            self.environment(
                name,
                parse_gates(stage.get("gates"), pipeline_path, ["stages", index, "gates"]),
                review={k: tuple(v) for k, v in (stage.get("review") or {}).items()},
            )
            for index, (name, stage) in enumerate(zip(stage_names, pipeline["stages"], strict=True))
        )
        self.check_gate_endpoints(environments, pipeline_path)
        self.refuse_stray_folders(stage_names)
        releases: dict[tuple[str, str], Release] = {}
        pending: dict[tuple[str, str], Path] = {}
        base_values = {name: self.values_file(self.base_file(name)) for name in services}
        for env in environments:
            for path in sorted(env.path.glob("*.yaml")):
                if path.name == ENVIRONMENT_FILE:
                    continue
                service = path.stem
                if service not in base_values:
                    raise InputError(
                        f"{display_path(path)}: service '{service}' has no "
                        f"{display_path(self.base_file(service))}",
                        hint="add the base file or rename this file",
                    )
                values = self.values_file(path)
                if "image" not in values and env is not environments[0]:
                    pending[(service, env.name)] = path
                    continue
                releases[(service, env.name)] = self.release(
                    service, env, path, base_values[service], values=values
                )
        repository = pipeline["repository"]
        discover = pipeline.get("discover") or {}
        for service in discover:
            if service not in base_values:
                where = located(pipeline_path, ["discover", service])
                raise InputError(f"{where}: discover: '{service}' is not a service")
        return Repo(
            root=self.root,
            repository_url=repository["url"],
            revision=repository.get("revision", "main"),
            environments=environments,
            services=tuple(services),
            releases=releases,
            pending=pending,
            discover=discover,
        )

    def base_file(self, service: str) -> Path:
        return self.environments_dir / BASE_DIR / f"{service}.yaml"

    def services(self) -> list[str]:
        base = self.environments_dir / BASE_DIR
        if not base.is_dir():
            raise InputError(f"{display_path(base)}: missing (one file per service)")
        names = []
        for path in sorted(base.iterdir()):
            if path.suffix == ".yml":
                raise InputError(f"{display_path(path)}: rename to {path.stem}.yaml")
            if path.suffix != ".yaml":
                continue
            name = path.stem
            if not NAME_PATTERN.match(name) or len(name) > NAME_MAX or name in RESERVED_NAMES:
                raise InputError(
                    f"{display_path(path)}: '{name}' is not a valid service name",
                    hint="use lower-case letters, digits and '-', at most 53 characters",
                )
            names.append(name)
        return sorted(names)  # by name: a file-name sort puts "x-next.yaml" before "x.yaml"

    def refuse_stray_folders(self, stage_names: list[str]) -> None:
        for path in sorted(self.environments_dir.iterdir()):
            if path.is_dir() and path.name not in (*stage_names, BASE_DIR, ADDONS_DIR):
                raise InputError(
                    f"{display_path(path)}: folder is not a stage of "
                    f"{ENVIRONMENTS_DIR}/{PIPELINE_FILE}",
                    hint="add the stage to the pipeline or remove the folder",
                )

    def check_gate_endpoints(
        self, environments: tuple[Environment, ...], pipeline_path: Path
    ) -> None:
        """The Argo CD and SLO gates ask the stage before, the budget gate the stage itself: it
        must say where to ask."""
        for index, (source, target) in enumerate(itertools.pairwise(environments), start=1):
            for gate, endpoint in (("argocd", source.argocd), ("slo", source.prometheus)):
                if gate in target.gates.declared and endpoint is None:
                    kind = "argocd" if gate == "argocd" else "prometheus"
                    raise InputError(
                        f"{located(pipeline_path, ['stages', index, 'gates', gate])}: the {gate} "
                        f"gate of {target.name} asks {source.name}, which has no endpoints.{kind}",
                        hint=f"add endpoints.{kind}.url to {display_path(source.settings_file)}",
                    )
        for index, target in enumerate(environments):
            if target.gates.budget is not None and target.prometheus is None:
                raise InputError(
                    f"{located(pipeline_path, ['stages', index, 'gates', 'budget'])}: the budget "
                    f"gate of {target.name} asks its own Prometheus, which it does not declare",
                    hint=f"add endpoints.prometheus.url to {display_path(target.settings_file)}",
                )

    def environment(
        self, name: str, gates: Gates, review: Mapping[str, tuple[str, ...]] | None = None
    ) -> Environment:
        path = self.environments_dir / name
        settings_path = path / ENVIRONMENT_FILE
        if not settings_path.is_file():
            raise InputError(
                f"{display_path(settings_path)}: missing for stage '{name}'",
                hint="every stage of the pipeline needs a folder with environment.yaml",
            )
        settings = self.packaged(settings_path, "environment")
        for stray in sorted(path.glob("*.yml")):
            raise InputError(f"{display_path(stray)}: rename to {stray.stem}.yaml")
        cluster = settings["cluster"]
        argocd = settings.get("argocd", {})
        policy = settings.get("policy", {})
        endpoints = settings.get("endpoints", {})
        webhook = settings.get("notifications", {}).get("webhook", {})
        return Environment(
            name=name,
            path=path,
            cluster_name=cluster["name"],
            region=cluster["region"],
            cluster_server=cluster.get("server", "https://kubernetes.default.svc"),
            kubernetes_version=cluster["kubernetesVersion"],
            namespace=settings["namespace"],
            argocd_namespace=argocd.get("namespace", "argocd"),
            prune=argocd.get("prune", True),
            self_heal=argocd.get("selfHeal", True),
            policy=Policy(
                require_digest=policy.get("requireDigest", False),
                min_replicas=policy.get("minReplicas", 1),
                require_pod_disruption_budget=policy.get("requirePodDisruptionBudget", False),
                allow_load_balancer=policy.get("allowLoadBalancer", False),
            ),
            gates=gates,
            argocd=_endpoint(endpoints.get("argocd")),
            prometheus=_endpoint(endpoints.get("prometheus")),
            webhook_url=webhook.get("url"),
            webhook_url_env=webhook.get("urlEnv"),
            holds=settings.get("holds") or {},
            review=review or {},
        )

    def release(
        self,
        service: str,
        env: Environment,
        path: Path,
        base_values: dict[str, Any],
        text: str | None = None,
        *,
        values: dict[str, Any] | None = None,
    ) -> Release:
        values = self.values_file(path, text) if values is None else values
        base_path = self.base_file(service)
        if "image" in base_values and set(base_values["image"]) - {"pullPolicy"}:
            raise InputError(
                f"{located(base_path, ['image'])}: image: set the image per environment",
                hint=f"move it to {display_path(path)} so a promotion is a one-line diff",
            )
        raw = values.get("image")
        if not isinstance(raw, dict):
            raise InputError(
                f"{display_path(path)}: image: missing",
                hint="add a line 'image: {repository: ..., tag: ..., digest: ...}'",
            )
        try:
            image = Image(
                repository=raw.get("repository", ""),
                tag=raw.get("tag") or None,
                digest=raw.get("digest") or None,
            )
        except ValueError as error:
            raise InputError(f"{located(path, ['image'])}: {error}") from None
        return Release(
            service=service,
            environment=env,
            base_file=base_path,
            values_file=path,
            image=image,
            base_values=base_values,
            environment_values=values,
        )


def _endpoint(raw: Mapping[str, str] | None) -> Endpoint | None:
    return Endpoint(raw["url"].rstrip("/"), raw.get("tokenEnv")) if raw else None


def check_settings_text(root: Path, path: Path, text: str) -> None:
    """Refuse an ``environment.yaml`` text that ``load_repo`` would refuse (before a commit)."""
    loader = _Loader(root)
    loader.packaged(path, "environment", text)
    loader.known_valid.save()


def load_repo(root: Path) -> Repo:
    """Load and validate the repository at ``root`` (see ``find_root``)."""
    return _Loader(root).load()
