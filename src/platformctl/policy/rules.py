"""Project rules that checkov lacks or cannot scope per environment.

Each rule is a plain function of one rendered target and the gate's context, so tests (and
later the Pulumi policy pack) can call it directly. They are cheap and never cached: a changed
rule applies on the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from platformctl.policy.findings import Finding
from platformctl.render import Rendered

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Rollout", "ReplicaSet"})
RESOURCE_KEYS = ("cpu", "memory")


@dataclass(frozen=True)
class RuleContext:
    """Facts a rule may need beyond its own target, gathered once per run."""

    # environment -> (group, kind) pairs its AppProject allows
    allowed_kinds: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)


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
)


def allowed_kinds(gitops: Rendered) -> frozenset[tuple[str, str]]:
    """The namespace-scoped kinds the AppProject among the Argo CD objects allows."""
    for document in gitops.documents:
        if document.get("kind") == "AppProject":
            entries = (document.get("spec") or {}).get("namespaceResourceWhitelist") or []
            return frozenset((str(e.get("group", "")), str(e.get("kind"))) for e in entries)
    return frozenset()


def run_rules(rendered: Rendered, context: RuleContext) -> list[Finding]:
    return [finding for rule in RULES for finding in rule.run(rendered, context)]
