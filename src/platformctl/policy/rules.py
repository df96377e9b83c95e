"""Project rules that checkov lacks or cannot scope per environment.

Each rule is a plain function of one rendered target and the gate's context, so tests (and
later the Pulumi policy pack) can call it directly. They are cheap and never cached: a changed
rule applies on the next run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from platformctl.gates.config import DEFAULT_OBJECTIVES, Objective
from platformctl.model import Repo
from platformctl.policy.findings import Finding
from platformctl.render import ADDONS_TARGET, Rendered

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Rollout", "ReplicaSet"})
RESOURCE_KEYS = ("cpu", "memory")


@dataclass(frozen=True)
class RuleContext:
    """Facts a rule may need beyond its own target, gathered once per run."""

    # environment -> (group, kind) pairs its AppProject allows
    allowed_kinds: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    # environment -> AppProject name -> the repositories it allows
    source_repos: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    # environment -> the objectives the slo gate asking it holds it to, by name
    objectives: dict[str, Mapping[str, Objective]] = field(default_factory=dict)
    # environment -> whether its stack enables network policy enforcement (None: no stack file)
    network_policy: dict[str, bool | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    check: Callable[[Rendered, RuleContext], Iterator[tuple[str, str]]]

    def run(self, rendered: Rendered, context: RuleContext) -> list[Finding]:
        return [
            Finding(rendered.key, self.id, resource, message, "project")
            for resource, message in self.check(rendered, context)
        ]


def resource_id(document: dict[str, Any]) -> str:
    return f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def _pod_spec(document: dict[str, Any]) -> dict[str, Any] | None:
    if document.get("kind") not in WORKLOAD_KINDS:
        return None
    spec: dict[str, Any] = ((document.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec


def _containers(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = _pod_spec(document)
    if spec is None:
        return
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            yield group, container


def _image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def digest_pinned(rendered: Rendered, _: RuleContext) -> Iterator[tuple[str, str]]:
    if not rendered.environment.policy.require_digest:
        return
    for document in rendered.documents:
        for _group, container in _containers(document):
            image = str(container.get("image", ""))
            if "@sha256:" not in image:
                yield (
                    resource_id(document),
                    f"container '{container.get('name')}' image '{image}' is not pinned by "
                    f"digest ({rendered.environment.name} requires it)",
                )


def no_latest(rendered: Rendered, _: RuleContext) -> Iterator[tuple[str, str]]:
    for document in rendered.documents:
        for _group, container in _containers(document):
            image = str(container.get("image", ""))
            tag = _image_tag(image)
            if tag == "latest" or (tag is None and "@" not in image):
                yield (
                    resource_id(document),
                    f"container '{container.get('name')}' image '{image}' uses a moving tag",
                )


def _replicas(rendered: Rendered, workload: dict[str, Any]) -> int:
    """Replicas of a workload: its HPA's minimum when one scales it, else spec.replicas."""
    name = (workload.get("metadata") or {}).get("name")
    for document in rendered.documents:
        target = (document.get("spec") or {}).get("scaleTargetRef") or {}
        if document.get("kind") == "HorizontalPodAutoscaler" and target.get("name") == name:
            return int(document["spec"].get("minReplicas", 1))
    return int((workload.get("spec") or {}).get("replicas", 1))


def _selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def availability(rendered: Rendered, _: RuleContext) -> Iterator[tuple[str, str]]:
    policy = rendered.environment.policy
    budgets = [d for d in rendered.documents if d.get("kind") == "PodDisruptionBudget"]
    for document in rendered.documents:
        if document.get("kind") not in WORKLOAD_KINDS - {"DaemonSet"}:
            continue
        replicas = _replicas(rendered, document)
        if replicas < policy.min_replicas:
            yield (
                resource_id(document),
                f"{replicas} replica(s); {rendered.environment.name} requires at least "
                f"{policy.min_replicas}",
            )
        if policy.require_pod_disruption_budget:
            labels = (
                ((document.get("spec") or {}).get("template") or {}).get("metadata") or {}
            ).get("labels") or {}
            if not any(
                _selects((b.get("spec") or {}).get("selector") or {}, labels) for b in budgets
            ):
                yield (
                    resource_id(document),
                    f"no PodDisruptionBudget selects its pods ({rendered.environment.name} "
                    "requires one)",
                )


def requests_limits_probes(rendered: Rendered, _: RuleContext) -> Iterator[tuple[str, str]]:
    for document in rendered.documents:
        for group, container in _containers(document):
            resources = container.get("resources") or {}
            missing = [
                f"{side}.{key}"
                for side in ("requests", "limits")
                for key in RESOURCE_KEYS
                if key not in (resources.get(side) or {})
            ]
            if group == "containers":
                missing += [
                    probe for probe in ("livenessProbe", "readinessProbe") if probe not in container
                ]
            if missing:
                yield (
                    resource_id(document),
                    f"container '{container.get('name')}' lacks {', '.join(missing)}",
                )


def no_load_balancer(rendered: Rendered, _: RuleContext) -> Iterator[tuple[str, str]]:
    if rendered.environment.policy.allow_load_balancer:
        return
    for document in rendered.documents:
        spec = document.get("spec") or {}
        if document.get("kind") == "Service" and spec.get("type") == "LoadBalancer":
            yield (
                resource_id(document),
                f"Service of type LoadBalancer is not allowed in "
                f"{rendered.environment.name}; use the ingress",
            )


def kind_allowed(rendered: Rendered, context: RuleContext) -> Iterator[tuple[str, str]]:
    allowed = context.allowed_kinds.get(rendered.environment.name)
    if allowed is None or rendered.release is None:
        return
    for document in rendered.documents:
        group = str(document.get("apiVersion", "")).rpartition("/")[0]
        if (group, str(document.get("kind"))) not in allowed:
            yield (
                resource_id(document),
                f"kind {document.get('kind')} ({group or 'core'}) is not allowed by the "
                f"'{rendered.environment.name}' AppProject: Argo CD would refuse to sync it",
            )


_PINNED = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$")
_CONDITION = re.compile(r"result\[0\]\s*(?P<sign>[<>])\s*(?P<threshold>[0-9.eE+-]+)\s*$")


def _applications(rendered: Rendered) -> Iterator[dict[str, Any]]:
    for document in rendered.documents:
        if document.get("kind") == "Application":
            yield document


def chart_pinned(rendered: Rendered, _: RuleContext) -> Iterator[tuple[str, str]]:
    for application in _applications(rendered):
        source = (application.get("spec") or {}).get("source") or {}
        revision = str(source.get("targetRevision", ""))
        if source.get("chart") and not _PINNED.match(revision):
            yield (
                resource_id(application),
                f"chart {source['chart']} at '{revision}' is not a pinned version "
                "(use an exact version such as 1.2.3)",
            )


def analysis_objectives(rendered: Rendered, context: RuleContext) -> Iterator[tuple[str, str]]:
    objectives = context.objectives.get(rendered.environment.name, {})
    for document in rendered.documents:
        if document.get("kind") != "AnalysisTemplate":
            continue
        for metric in (document.get("spec") or {}).get("metrics") or []:
            objective = objectives.get(str(metric.get("name")))
            if objective is None:
                continue
            match = _CONDITION.search(str(metric.get("successCondition", "")))
            if match is None or (match["sign"] == "<") != objective.below:
                yield (
                    resource_id(document),
                    f"metric '{metric.get('name')}' does not check result[0] "
                    f"{'<' if objective.below else '>'} a threshold",
                )
                continue
            threshold = float(match["threshold"])
            looser = (
                threshold > objective.threshold
                if objective.below
                else threshold < objective.threshold
            )
            if looser:
                yield (
                    resource_id(document),
                    f"metric '{metric.get('name')}' passes at {threshold:g}, looser than the slo "
                    f"gate's {objective.threshold:g}: a rollout could pass what promotion refuses",
                )


def addon_sources_allowed(rendered: Rendered, context: RuleContext) -> Iterator[tuple[str, str]]:
    projects = context.source_repos.get(rendered.environment.name)
    if projects is None:
        return
    for application in _applications(rendered):
        spec = application.get("spec") or {}
        project = str(spec.get("project"))
        repository = str((spec.get("source") or {}).get("repoURL"))
        if project not in projects:
            yield resource_id(application), f"project '{project}' does not exist in charts/gitops"
        elif repository not in projects[project]:
            yield (
                resource_id(application),
                f"{repository} is not among the AppProject '{project}' sourceRepos: Argo CD "
                "would refuse it (add it to charts/gitops addonRepositories)",
            )


def _annotation_list(document: dict[str, Any], key: str) -> list[str]:
    value = ((document.get("metadata") or {}).get("annotations") or {}).get(key) or ""
    return [item for item in str(value).split(",") if item]


def sync_waves(rendered: Rendered, _: RuleContext) -> Iterator[tuple[str, str]]:
    if rendered.name != ADDONS_TARGET:
        return
    applications = list(_applications(rendered))
    # No annotation is wave 0, as Argo CD has it.
    waves = {
        resource_id(a): int(next(iter(_annotation_list(a, "argocd.argoproj.io/sync-wave")), 0))
        for a in applications
    }
    installers: dict[str, list[str]] = {}
    for application in applications:
        for group in _annotation_list(application, "platform.acme.io/installs-crds"):
            installers.setdefault(group, []).append(resource_id(application))
    for application in applications:
        for group in _annotation_list(application, "platform.acme.io/uses-crds"):
            before = [
                i for i in installers.get(group, []) if waves[i] < waves[resource_id(application)]
            ]
            if not before:
                source = ", ".join(installers.get(group, [])) or "no enabled add-on"
                yield (
                    resource_id(application),
                    f"uses {group}, installed by {source}, not in an earlier sync wave",
                )


def workload_namespace_guarded(
    rendered: Rendered, context: RuleContext
) -> Iterator[tuple[str, str]]:
    if rendered.name != ADDONS_TARGET:
        return
    namespace = rendered.environment.namespace
    if context.network_policy.get(rendered.environment.name) is False:
        yield (
            "EksAddon/vpc-cni",
            f"the NetworkPolicies of {namespace} are not enforced: the VPC CNI add-on of the "
            f"environment's stack does not enable network policy (set platform:cluster: "
            "networkPolicy: true in its stack file)",
        )
    found = {resource_id(d): d for d in rendered.documents}
    labels = ((found.get(f"Namespace/{namespace}") or {}).get("metadata") or {}).get("labels") or {}
    if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
        yield f"Namespace/{namespace}", "does not enforce the 'restricted' Pod Security Standard"
    in_namespace = [
        d for d in rendered.documents if (d.get("metadata") or {}).get("namespace") == namespace
    ]
    if not any(
        d.get("kind") == "NetworkPolicy"
        and (d.get("spec") or {}).get("podSelector") == {}
        and set((d.get("spec") or {}).get("policyTypes") or []) == {"Ingress", "Egress"}
        and not (d.get("spec") or {}).get("ingress")
        and not (d.get("spec") or {}).get("egress")
        for d in in_namespace
    ):
        yield f"Namespace/{namespace}", "has no default-deny NetworkPolicy (all pods, both ways)"
    for kind in ("ResourceQuota", "LimitRange"):
        if not any(d.get("kind") == kind for d in in_namespace):
            yield f"Namespace/{namespace}", f"has no {kind}"


RULES: tuple[Rule, ...] = (
    Rule("PLAT001", "Images are pinned by digest where the environment requires it", digest_pinned),
    Rule("PLAT002", "No image uses 'latest' or no tag at all", no_latest),
    Rule("PLAT003", "Enough replicas, and a PodDisruptionBudget where required", availability),
    Rule("PLAT004", "Every container has requests, limits and probes", requests_limits_probes),
    Rule(
        "PLAT005",
        "No Service of type LoadBalancer unless the environment allows it",
        no_load_balancer,
    ),
    Rule("PLAT006", "Every kind is allowed by the environment's AppProject", kind_allowed),
    Rule("PLAT007", "Add-on charts are pinned to an exact version", chart_pinned),
    Rule(
        "PLAT008",
        "A rollout's analysis is no looser than the slo gate asking the environment",
        analysis_objectives,
    ),
    Rule(
        "PLAT009", "Add-ons come from repositories their AppProject allows", addon_sources_allowed
    ),
    Rule("PLAT010", "Add-ons sync after the add-ons whose CRDs they use", sync_waves),
    Rule(
        "PLAT011",
        "The workload namespace is restricted, default-deny (enforced: the stack enables network "
        "policy), with a quota and limit range",
        workload_namespace_guarded,
    ),
)


def allowed_kinds(gitops: Rendered) -> frozenset[tuple[str, str]]:
    """The namespace-scoped kinds the services' AppProject (named after the environment)
    allows."""
    for document in gitops.documents:
        metadata = document.get("metadata") or {}
        if document.get("kind") == "AppProject" and metadata.get("name") == gitops.environment.name:
            entries = (document.get("spec") or {}).get("namespaceResourceWhitelist") or []
            return frozenset((str(e.get("group", "")), str(e.get("kind"))) for e in entries)
    return frozenset()


def source_repos(gitops: Rendered) -> dict[str, frozenset[str]]:
    return {
        str((d.get("metadata") or {}).get("name")): frozenset(
            str(repo) for repo in (d.get("spec") or {}).get("sourceRepos") or []
        )
        for d in gitops.documents
        if d.get("kind") == "AppProject"
    }


def gate_objectives(repo: Repo) -> dict[str, Mapping[str, Objective]]:
    """Per environment, the objectives of the slo gate of the stage after it (which measures
    it); the seeds' defaults where no gate asks."""
    objectives: dict[str, Mapping[str, Objective]] = {}
    for index, environment in enumerate(repo.environments):
        following = repo.environments[index + 1] if index + 1 < len(repo.environments) else None
        slo = following.gates.slo if following else None
        chosen = slo.objectives if slo else DEFAULT_OBJECTIVES
        objectives[environment.name] = {objective.name: objective for objective in chosen}
    return objectives


def run_rules(rendered: Rendered, context: RuleContext) -> list[Finding]:
    return [finding for rule in RULES for finding in rule.run(rendered, context)]
