"""Everything one environment's cluster will hold, and which Argo CD Application applies it when.

The twin's input is the gate's rendered targets: the Argo CD objects (applied by the Pulumi
bootstrap), the add-ons target (the Application the add-ons ApplicationSet generates), one
target per service (an Application of the services' ApplicationSet) and, when rendered, one
target per add-on Application's own chart. Which target is which Application is derived the
way Argo CD derives it: each ApplicationSet's generators are evaluated against the model
(cluster secret, service files), its template is filled in, and the Application's source
(chart path, value files) names the target it renders.

Positions follow Argo CD's sync: phase (PreSync, Sync, PostSync), then sync wave, then kind
order, within an Application; an Application that is a resource of another (app of apps) sits
at its own wave in its parent's sync.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from platformctl.errors import InputError
from platformctl.model import Environment, Repo
from platformctl.render import Rendered
from platformctl.twin.bootstrap import Bootstrap
from platformctl.yamlio import parse_yaml, read_text

# gitops-engine's kind order within one wave (pkg/sync/sync_tasks.go, Helm's install order
# with IngressClass); any other kind (custom resources) comes after these.
KIND_ORDER = (
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
)
_KIND_INDEX = {kind: index for index, kind in enumerate(KIND_ORDER)}
PHASES = ("PreSync", "Sync", "PostSync")
# Argo CD runs Helm hooks as its own (docs: user-guide/helm.md); test hooks are not applied.
HELM_HOOKS = {
    "pre-install": "PreSync",
    "pre-upgrade": "PreSync",
    "post-install": "PostSync",
    "post-upgrade": "PostSync",
}
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "StorageClass",
        "IngressClass",
        "PriorityClass",
        "PersistentVolume",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CSIDriver",
        "RuntimeClass",
        "ClusterSecretStore",
        "ClusterExternalSecret",
        "ClusterIssuer",
        "ClusterAnalysisTemplate",
    }
)
WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
COMPARE_OPTIONS = "argocd.argoproj.io/compare-options"


def metadata(document: Mapping[str, Any]) -> Mapping[str, Any]:
    return document.get("metadata") or {}


def annotations_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    return metadata(document).get("annotations") or {}


def labels_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    return metadata(document).get("labels") or {}


def group_of(document: Mapping[str, Any]) -> str:
    return str(document.get("apiVersion", "")).rpartition("/")[0]


def options(value: object) -> frozenset[str]:
    """``A=true,B=false`` (an annotation) or a list of them (``syncOptions``)."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return frozenset(str(item).strip() for item in items if str(item).strip())


@dataclass(frozen=True)
class Retry:
    """An Application's ``syncPolicy.retry``: ``limit`` < 0 retries forever; no policy, never."""

    limit: int
    duration: float = 5.0
    factor: float = 2.0
    max_duration: float = 180.0

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    def give_up_after(self) -> float:
        """Seconds of backoff before the last attempt (Argo CD's exponential backoff)."""
        return sum(
            min(self.duration * self.factor**attempt, self.max_duration)
            for attempt in range(max(self.limit, 0))
        )

    def describe(self) -> str:
        """How long the Application keeps trying, as a clause of a finding."""
        if self.limit == 0:
            return "it has no retry policy"
        minutes, seconds = divmod(int(self.give_up_after()), 60)
        return f"its retry limit {self.limit}: gives up after {minutes}m{seconds:02d}s of backoff"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def seconds(text: object, default: float) -> float:
    """A Go duration (``30s``, ``3m``, ``1h30m``) or a number of seconds."""
    if text is None:
        return default
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION.findall(str(text))
    if not parts:
        return float(str(text)) if str(text).isdigit() else default
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in parts)


def retry_of(spec: Mapping[str, Any]) -> Retry:
    raw = (spec.get("syncPolicy") or {}).get("retry")
    if raw is None:
        return Retry(limit=0)
    backoff = raw.get("backoff") or {}
    return Retry(
        limit=int(raw.get("limit", 0)),
        duration=seconds(backoff.get("duration"), 5.0),
        factor=float(backoff.get("factor", 2)),
        max_duration=seconds(backoff.get("maxDuration"), 180.0),
    )


@dataclass
class App:
    """One Argo CD Application: who makes it, where it sits in its parent's sync, what it holds."""

    name: str
    target: str  # the target its findings are reported on
    spec: Mapping[str, Any]
    parent: str | None = None  # the Application it is a resource of (app of apps)
    phase: int = 1
    wave: int = 0
    rendered: bool = False  # its contents are known (its chart was rendered)
    made_by: str = ""  # the ApplicationSet, or the Application, that creates it
    annotations: Mapping[str, Any] = field(default_factory=dict)  # the Application's own
    finalizers: tuple[str, ...] = ()  # the Application's own (resources-finalizer: cascade)

    @property
    def namespace(self) -> str:
        return str((self.spec.get("destination") or {}).get("namespace") or "")

    @property
    def retry(self) -> Retry:
        return retry_of(self.spec)

    @property
    def automated(self) -> bool:
        """Whether Argo CD syncs it by itself (``syncPolicy.automated``, not ``enabled: false``)."""
        automated = (self.spec.get("syncPolicy") or {}).get("automated")
        return isinstance(automated, Mapping) and automated.get("enabled") is not False

    @property
    def prunes(self) -> bool:
        """Whether its automated sync deletes what leaves its source."""
        automated = (self.spec.get("syncPolicy") or {}).get("automated")
        return self.automated and isinstance(automated, Mapping) and automated.get("prune") is True

    @property
    def sync_options(self) -> frozenset[str]:
        return options((self.spec.get("syncPolicy") or {}).get("syncOptions") or [])

    @property
    def chart(self) -> str:
        """The chart it deploys: a Helm repository chart's name, or the last folder of its path
        that is not a version (``charts/vendor/<name>[/<version>]``)."""
        source = self.spec.get("source") or {}
        if source.get("chart"):
            return str(source["chart"])
        parts = PurePosixPath(str(source.get("path") or "")).parts
        names = [part for part in parts if not re.match(r"^v?[0-9]", part)]
        return names[-1] if names else ""


@dataclass(frozen=True)
class Obj:
    """One object of the environment and where it is applied."""

    document: Mapping[str, Any] = field(repr=False, compare=False, hash=False)
    kind: str
    group: str
    namespace: str  # '' for cluster-scoped objects
    name: str
    app: str | None  # None: created by the bootstrap (Pulumi, EKS) before any sync
    target: str
    phase: int = 1
    wave: int = 0

    @property
    def ref(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"

    @property
    def resource(self) -> str:
        """As findings name resources elsewhere in the gate: ``Kind/name``."""
        return f"{self.kind}/{self.name}"

    @property
    def kind_index(self) -> int:
        return _KIND_INDEX.get(self.kind, len(KIND_ORDER))


def position(document: Mapping[str, Any]) -> tuple[int, int] | None:
    """(phase, wave) of a resource in its Application's sync; None when Argo CD skips it."""
    notes = annotations_of(document)
    hook = notes.get(HOOK)
    helm_hook = notes.get("helm.sh/hook")
    wave = notes.get(WAVE, notes.get("helm.sh/hook-weight", 0) if helm_hook else 0)
    if hook is None and helm_hook is not None:
        phases = {HELM_HOOKS.get(item.strip()) for item in str(helm_hook).split(",")}
        phases.discard(None)
        if not phases:
            return None
        hook = sorted(phases, key=lambda p: PHASES.index(str(p)))[0]
    phase = str(hook).split(",")[0].strip() if hook else "Sync"
    if phase not in PHASES:
        return None  # SyncFail, PostDelete, Skip: not part of a sync that succeeds
    try:
        return PHASES.index(phase), int(str(wave).strip() or 0)
    except ValueError:
        return PHASES.index(phase), 0


@dataclass(frozen=True)
class Target:
    """A rendered target and the chart it was rendered from (relative to the repository)."""

    rendered: Rendered
    chart: str


@dataclass
class World:
    """The environment as the twin sees it."""

    environment: Environment
    bootstrap: Bootstrap
    apps: dict[str, App] = field(default_factory=dict)
    objects: list[Obj] = field(default_factory=list)
    # problems found while working out the Applications (an unknown generator, a file that
    # makes an Application no target renders): (target, resource, message)
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    # the CRDs at the deployed versions: (group, kind) -> CRD
    crds: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    scopes: dict[tuple[str, str], str] = field(default_factory=dict)

    def by_kind(self, *kinds: str) -> Iterator[Obj]:
        return (obj for obj in self.objects if obj.kind in kinds)

    def find(self, kind: str, namespace: str, name: str) -> list[Obj]:
        return [
            obj
            for obj in self.objects
            if obj.kind == kind and obj.name == name and obj.namespace == namespace
        ]

    def opaque(self, namespace: str) -> list[App]:
        """Applications whose contents are not rendered that could hold an object there."""
        return [
            app
            for app in self.apps.values()
            if not app.rendered and (not namespace or app.namespace == namespace)
        ]

    def lineage(self, app: str | None) -> list[tuple[str, int, int]]:
        """The chain of (Application, phase, wave) from the root Application down to ``app``."""
        chain: list[tuple[str, int, int]] = []
        while app is not None:
            node = self.apps[app]
            chain.append((node.name, node.phase, node.wave))
            app = node.parent
        return chain[::-1]

    def add(self, document: Mapping[str, Any], app: App | None, target: str) -> None:
        where = position(document)
        if where is None:
            return
        kind = str(document.get("kind", ""))
        group = group_of(document)
        scoped = self.scopes.get((group, kind))
        cluster_scoped = kind in CLUSTER_SCOPED if scoped is None else scoped == "Cluster"
        namespace = (
            ""
            if cluster_scoped
            else str(metadata(document).get("namespace") or (app.namespace if app else "default"))
        )
        self.objects.append(
            Obj(
                document=document,
                kind=kind,
                group=group,
                namespace=namespace,
                name=str(metadata(document).get("name", "")),
                app=app.name if app else None,
                target=target,
                phase=where[0],
                wave=where[1],
            )
        )


# --- ApplicationSet generators and templates, as far as this repository uses them ----------

_EXPRESSION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_TRIM = re.compile(r'^trimSuffix\s+"([^"]*)"\s+(\.[\w.]+)$')


class Unmodelled(ValueError):
    """A template expression or generator the twin does not evaluate."""


class GeneratorFailure(ValueError):
    """What fails Argo CD's generator itself (a file it cannot parse): the ApplicationSet then
    creates, updates and deletes no Application."""


def _lookup(params: Mapping[str, Any], dotted: str) -> str:
    value: Any = params
    for part in dotted.lstrip(".").split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise Unmodelled(f"{dotted} is not a parameter of its generator")
        value = value[part]
    return str(value)


def fill_template(value: Any, params: Mapping[str, Any]) -> Any:
    """An ApplicationSet Go template filled in: plain parameters and ``trimSuffix``."""
    if isinstance(value, Mapping):
        return {key: fill_template(item, params) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_template(item, params) for item in value]
    if not isinstance(value, str) or "{{" not in value:
        return value

    def evaluate(match: re.Match[str]) -> str:
        expression = match[1]
        trim = _TRIM.match(expression)
        if trim:
            return _lookup(params, trim[2]).removesuffix(trim[1])
        if re.fullmatch(r"\.[\w.]+", expression):
            return _lookup(params, expression)
        raise Unmodelled(f"template expression '{{{{ {expression} }}}}'")

    return _EXPRESSION.sub(evaluate, value)


def path_params(path: str) -> dict[str, Any]:
    """The ``path`` parameters of the git files generator (goTemplate) for one file. Its
    ``segments`` are a Go ``[]string``, kept as a tuple: ``flatten`` prints it whole, as Go does."""
    pure = PurePosixPath(path)
    return {
        "path": {
            "path": str(pure.parent),
            "basename": pure.parent.name,
            "filename": pure.name,
            "basenameNormalized": re.sub(r"[^a-z0-9-]", "-", pure.parent.name.lower()),
            "filenameNormalized": re.sub(r"[^a-z0-9-.]", "-", pure.name.lower()),
            "segments": tuple(pure.parent.parts),
        }
    }


def _go_float(number: float) -> str:
    """A JSON number as Go's ``%v`` prints a float64: shortest digits, exponent form from 1e+06
    or below 1e-04 (``strconv``'s %g with the shortest precision)."""
    if not math.isfinite(number):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(number)]
    sign = "-" if str(number).startswith("-") else ""
    _, digit_tuple, exponent = Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)  # where the decimal point goes among the digits
    if not -4 <= point - 1 < 6:
        mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if point < 1 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_text(value: Any) -> str:
    """A parameter as Argo CD's post selector compares it: ``fmt.Sprintf("%v")`` of what
    sigs.k8s.io/yaml decoded (numbers are float64, a Go ``[]string`` prints as ``[a b]``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _go_float(float(value))
    if isinstance(value, tuple):
        return f"[{' '.join(map(go_text, value))}]"
    return str(value)


def flatten(params: Mapping[Any, Any], prefix: str = "") -> dict[str, str]:
    """Parameters as the post selector sees them (Argo CD's flattenParameters, since argo-cd
    PR #13584): nested mappings and lists become dotted keys (``image.repository``,
    ``ports.0``); an empty one has no key."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key if isinstance(key, str) else go_text(key)}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat.update(flatten(dict(enumerate(value)), f"{name}."))
        else:
            flat[name] = go_text(value)
    return flat


def selects(selector: Mapping[str, Any] | None, values: Mapping[str, Any]) -> bool:
    """A Kubernetes label selector (``matchLabels`` and ``matchExpressions``)."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if values.get(key) != str(value) and values.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key")
        operator = expression.get("operator")
        wanted = [str(v) for v in expression.get("values") or []]
        present = key in values
        actual = str(values.get(key))
        if operator == "In" and not (present and actual in wanted):
            return False
        if operator == "NotIn" and present and actual in wanted:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


_WILDCARD = re.compile(r"[*?\[]")


def _glob(pattern: str, path: str, new_globbing: bool) -> bool:
    """Whether a git files entry's pattern matches a file: by default as ``git ls-files``'s
    pathspec does (``*`` crosses folders too); with new globbing as doublestar does (``*``
    within a folder, ``**`` any number of folders)."""
    if not new_globbing:
        return fnmatch.fnmatchcase(path, pattern)
    return _doublestar(PurePosixPath(pattern).parts, PurePosixPath(path).parts)


def _doublestar(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_doublestar(pattern[1:], path[skip:]) for skip in range(len(path) + 1))
    return (
        bool(path)
        and fnmatch.fnmatchcase(path[0], pattern[0])
        and _doublestar(pattern[1:], path[1:])
    )


def tree_files(root: Path, pattern: str) -> list[str]:
    """The files of the repository a pattern could match, relative to its root: those below
    the pattern's leading folders without wildcards (every match starts with them)."""
    literal: list[str] = []
    for part in PurePosixPath(pattern).parts[:-1]:
        if _WILDCARD.search(part):
            break
        literal.append(part)
    found: list[str] = []
    for folder, folders, names in os.walk(root.joinpath(*literal)):
        folders[:] = [name for name in folders if name != ".git"]
        found += [Path(folder, name).relative_to(root).as_posix() for name in names]
    return sorted(found)


_KINDS = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def file_params(path: str, content: Any) -> list[dict[str, Any]]:
    """The parameter sets the git files generator (goTemplate) makes of one file: its content
    (a mapping, nothing for an empty file, or each element of a list of mappings) with ``path``
    set over any key of that name. Anything else fails the generator."""
    if content is None or isinstance(content, Mapping):
        found = [content or {}]
    elif isinstance(content, list) and all(o is None or isinstance(o, Mapping) for o in content):
        found = [item or {} for item in content]
    else:
        what = (
            "a list of something other than mappings"
            if isinstance(content, list)
            else _KINDS.get(type(content), f"a {type(content).__name__}")
        )
        raise GeneratorFailure(f"{path}: it holds {what}, not a mapping or a list of mappings")
    return [{**item, **path_params(path)} for item in found]


def _content(repo: Repo, known: Mapping[str, Any], path: str) -> Any:
    """A file's parsed content: the model's for its release files (what is about to be
    committed when a promotion verifies its edits), else as the file holds it."""
    if path in known:
        return known[path]
    try:
        return parse_yaml(read_text(repo.root / path), Path(path))  # messages name it as here
    except InputError as error:
        raise GeneratorFailure(error.message) from None


def generate(
    repo: Repo,
    environment: Environment,
    bootstrap: Bootstrap,
    appset: Mapping[str, Any],
    file_fields: frozenset[str],
) -> Iterator[tuple[dict[str, Any], str]]:
    """The parameter sets an ApplicationSet's generators make, each with what made it.

    A git files generator reads every file of the tree that its entries match, not only the
    model's: a file without an image line or a stray copy is an Application too unless a
    selector leaves it out. ``file_fields`` are the fields the deployed ApplicationSet CRD
    knows on a git files entry: the API server prunes any other (``exclude`` before Argo CD
    3.1), so it does nothing.
    """
    spec = appset.get("spec") or {}
    known = {
        str(r.values_file.relative_to(repo.root)): r.environment_values
        for r in repo.select([environment.name])
    }
    for generator in spec.get("generators") or []:
        selector = generator.get("selector")
        if "clusters" in generator:
            cluster = bootstrap.cluster_secret
            if selects((generator["clusters"] or {}).get("selector"), labels_of(cluster)):
                params = {
                    "name": metadata(cluster).get("name"),
                    "server": bootstrap.server,
                    "metadata": {
                        "labels": dict(labels_of(cluster)),
                        "annotations": dict(annotations_of(cluster)),
                    },
                }
                if selects(selector, flatten(params)):
                    yield params, f"cluster secret {metadata(cluster).get('name')}"
        elif "git" in generator:
            entries = generator["git"].get("files") or []
            if not entries:
                raise Unmodelled("git generator without files (directories)")
            patterns = [str(entry.get("path")) for entry in entries]
            excludes = [
                pattern
                for pattern, entry in zip(patterns, entries, strict=True)
                if "exclude" in file_fields and entry.get("exclude")
            ]
            new = bootstrap.new_git_file_globbing
            included = {
                path
                for pattern in patterns
                if pattern not in excludes
                for path in tree_files(repo.root, pattern)
                if _glob(pattern, path, new)
            }
            excluded = {path for path in included for p in excludes if _glob(p, path, new)}
            for path in sorted(included - excluded):
                for params in file_params(path, _content(repo, known, path)):
                    if selects(selector, flatten(params)):
                        yield params, path
        else:
            raise Unmodelled(f"generator {sorted(generator)}")
