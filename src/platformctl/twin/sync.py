"""Sync convergence: what each object provides and requires, and whether Argo CD's order meets it.

A requirement is ``apply`` (the API server refuses the object without it: its CRD, its
namespace), ``health`` (the object applies, but is not Healthy until it is there: a pod's
Secret, a PVC's StorageClass, the controller that gives an Ingress its address) or ``ref`` (a
name that must exist, with no effect on the order: a ServiceMonitor's port). Argo CD waits for
every resource of a wave to be Healthy before the next wave, so a health requirement met only
by a later wave stalls the sync for good; an apply requirement met by another Application that
nothing orders first is met only if the retry policy keeps trying until it arrives.

Why an unlimited retry (``limit: -1``, the services') converges although nothing orders the
services' Applications after the add-ons': Argo CD re-runs a failed sync after a backoff capped
at ``maxDuration``, without end; the provider's Application and every Application above it sync
automatically, the root ones being made by the bootstrap, so the provider is applied without
anyone acting, and the first attempt after that succeeds, at most ``maxDuration`` later. The
twin reports the provider's own problems on the provider, and a provider in a chain with a
manual sync (nothing would ever make it exist) as PLAT012. A real order would need either an
app of apps whose root orders both ApplicationSets' Applications (the Pulumi bootstrap would
own a root Application instead of the ApplicationSets; a wave of ApplicationSets orders
nothing, the Applications they generate are not their resources) or Progressive Syncs, which
order only the Applications of one ApplicationSet and need the ApplicationSet controller's
``--enable-progressive-syncs``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from platformctl.twin.world import PHASES, App, Obj, World, annotations_of, labels_of

# What upstream controllers do for other objects, by the chart that installs them: the
# Ingress classes they serve, the kinds they reconcile. Facts about those projects.
CONTROLLERS: Mapping[str, frozenset[str]] = {
    "aws-load-balancer-controller": frozenset({"ingress/ingress.k8s.aws/alb", "service/nlb"}),
    "argo-rollouts": frozenset({"argoproj.io/Rollout", "argoproj.io/AnalysisRun"}),
    "external-secrets": frozenset(
        {"external-secrets.io/ExternalSecret", "external-secrets.io/SecretStore"}
    ),
    "cert-manager": frozenset({"cert-manager.io/Certificate"}),
    "kube-prometheus-stack": frozenset(
        {"monitoring.coreos.com/Prometheus", "monitoring.coreos.com/Alertmanager"}
    ),
    "metrics-server": frozenset({"metrics.k8s.io"}),
}
# Built-in API groups: their kinds need no CRD.
BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "apiextensions.k8s.io",
        "admissionregistration.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "node.k8s.io",
        "apiregistration.k8s.io",
        "certificates.k8s.io",
        "flowcontrol.apiserver.k8s.io",
    }
)
POD_TEMPLATE_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Rollout"}
)


@dataclass(frozen=True)
class Need:
    kind: str  # apply | health | ref
    key: str  # what is needed: obj:<Kind>/<ns>/<name>, crd:<group>/<Kind>, controller:<x>
    what: str  # for messages


def obj_key(kind: str, namespace: str, name: str) -> str:
    return f"obj:{kind}/{namespace}/{name}"


def pod_spec(obj: Obj) -> Mapping[str, Any] | None:
    spec: Mapping[str, Any] = obj.document.get("spec") or {}
    if obj.kind == "Pod":
        return spec
    if obj.kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    elif obj.kind not in POD_TEMPLATE_KINDS:
        return None
    found: Mapping[str, Any] = (spec.get("template") or {}).get("spec") or {}
    return found


def pod_labels(obj: Obj) -> Mapping[str, Any]:
    spec: Mapping[str, Any] = obj.document.get("spec") or {}
    if obj.kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    if obj.kind == "Pod":
        return labels_of(obj.document)
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


def containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for group in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(group) or []


def _pod_needs(obj: Obj, spec: Mapping[str, Any]) -> Iterator[Need]:
    ns = obj.namespace

    def named(kind: str, name: object, why: str, optional: object = False) -> Iterator[Need]:
        if name and not optional:
            yield Need("health", obj_key(kind, ns, str(name)), f"{kind} {name} ({why})")

    account = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if account and account != "default":
        yield from named("ServiceAccount", account, "its pods' service account")
    if spec.get("priorityClassName"):
        name = spec["priorityClassName"]
        if name not in ("system-cluster-critical", "system-node-critical"):
            yield Need("health", obj_key("PriorityClass", "", name), f"PriorityClass {name}")
    for secret in spec.get("imagePullSecrets") or []:
        yield from named("Secret", secret.get("name"), "image pull secret")
    for container in containers(spec):
        for source in container.get("envFrom") or []:
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = source.get(key) or {}
                yield from named(kind, ref.get("name"), "envFrom", ref.get("optional"))
        for variable in container.get("env") or []:
            value_from = variable.get("valueFrom") or {}
            for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                ref = value_from.get(key) or {}
                yield from named(
                    kind, ref.get("name"), f"env {variable.get('name')}", ref.get("optional")
                )
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            ref = volume["configMap"] or {}
            yield from named(
                "ConfigMap", ref.get("name"), f"volume {volume.get('name')}", ref.get("optional")
            )
        if "secret" in volume:
            ref = volume["secret"] or {}
            yield from named(
                "Secret", ref.get("secretName"), f"volume {volume.get('name')}", ref.get("optional")
            )
        if "persistentVolumeClaim" in volume:
            claim = (volume["persistentVolumeClaim"] or {}).get("claimName")
            yield from named("PersistentVolumeClaim", claim, f"volume {volume.get('name')}")
        for source in (volume.get("projected") or {}).get("sources") or []:
            for key, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
                ref = source.get(key) or {}
                yield from named(
                    kind, ref.get("name"), f"volume {volume.get('name')}", ref.get("optional")
                )


def _storage_classes(value: Any) -> set[str]:
    """Every ``storageClassName`` in an object (PVCs, claim templates, operators' specs);
    walked with a stack, as every object of an environment is."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if key == "storageClassName" and isinstance(inner, str) and inner:
                    found.add(inner)
                elif isinstance(inner, (dict, list)):
                    stack.append(inner)
        elif isinstance(item, list):
            stack.extend(inner for inner in item if isinstance(inner, (dict, list)))
    return found


def _storage_class_needs(obj: Obj, spec: Mapping[str, Any]) -> Iterator[Need]:
    # a CRD's spec is a schema, whose storageClassName is a field's definition, never a
    # claim, and the largest documents of an environment: not walked
    if (obj.group, obj.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        return
    for name in sorted(_storage_classes(spec)):
        yield Need("health", obj_key("StorageClass", "", name), f"StorageClass {name}")


def _rollout_needs(obj: Obj, spec: Mapping[str, Any]) -> Iterator[Need]:
    strategy = spec.get("strategy") or {}
    canary = strategy.get("canary") or {}
    blue_green = strategy.get("blueGreen") or {}
    analyses = [canary.get("analysis") or {}]
    analyses += [(step.get("analysis") or {}) for step in canary.get("steps") or []]
    analyses += [
        blue_green.get("prePromotionAnalysis") or {},
        blue_green.get("postPromotionAnalysis") or {},
    ]
    for analysis in analyses:
        for template in analysis.get("templates") or []:
            kind = "ClusterAnalysisTemplate" if template.get("clusterScope") else "AnalysisTemplate"
            ns = "" if template.get("clusterScope") else obj.namespace
            name = template.get("templateName")
            yield Need("health", obj_key(kind, ns, str(name)), f"{kind} {name}")
    for key in ("canaryService", "stableService"):
        if canary.get(key):
            yield Need(
                "health", obj_key("Service", obj.namespace, canary[key]), f"Service {canary[key]}"
            )
    for key in ("activeService", "previewService"):
        if blue_green.get(key):
            yield Need(
                "health",
                obj_key("Service", obj.namespace, blue_green[key]),
                f"Service {blue_green[key]}",
            )
    workload = spec.get("workloadRef") or {}
    if workload.get("name"):
        yield Need(
            "health",
            obj_key(str(workload.get("kind")), obj.namespace, workload["name"]),
            f"{workload.get('kind')} {workload['name']}",
        )
    yield Need("health", "controller:argoproj.io/Rollout", "the Argo Rollouts controller")


def needs(world: World, obj: Obj) -> Iterator[Need]:
    """Everything ``obj`` needs: to be applied, to become Healthy, or only to make sense."""
    doc = obj.document
    spec: Mapping[str, Any] = doc.get("spec") or {}
    app = world.apps.get(obj.app) if obj.app else None
    if obj.app is not None and obj.group not in BUILTIN_GROUPS:
        yield Need("apply", f"crd:{obj.group}/{obj.kind}", f"the {obj.kind} CRD ({obj.group})")
    created = app is not None and "CreateNamespace=true" in app.sync_options
    if obj.namespace and app is not None and obj.kind != "Namespace" and not created:
        yield Need("apply", obj_key("Namespace", "", obj.namespace), f"Namespace {obj.namespace}")
    template = pod_spec(obj)
    if template is not None:
        yield from _pod_needs(obj, template)
    yield from _storage_class_needs(obj, spec)
    if obj.kind == "Rollout":
        yield from _rollout_needs(obj, spec)
    elif obj.kind == "Ingress":
        klass = spec.get("ingressClassName") or annotations_of(doc).get(
            "kubernetes.io/ingress.class"
        )
        if klass:
            name = str(klass)
            yield Need("health", obj_key("IngressClass", "", str(name)), f"IngressClass {name}")
            for klass in world.find("IngressClass", "", str(name)):
                controller = (klass.document.get("spec") or {}).get("controller")
                yield Need(
                    "health",
                    f"controller:ingress/{controller}",
                    f"the controller of IngressClass {name} ({controller}) to give it an address",
                )
    elif obj.kind == "ExternalSecret":
        ref = spec.get("secretStoreRef") or {}
        kind = str(ref.get("kind") or "SecretStore")
        ns = "" if kind == "ClusterSecretStore" else obj.namespace
        yield Need("health", obj_key(kind, ns, str(ref.get("name"))), f"{kind} {ref.get('name')}")
        yield Need(
            "health",
            "controller:external-secrets.io/ExternalSecret",
            "the External Secrets controller",
        )
    elif obj.kind in ("SecretStore", "ClusterSecretStore"):
        yield Need(
            "health",
            "controller:external-secrets.io/SecretStore",
            "the External Secrets controller",
        )
        for provider in (spec.get("provider") or {}).values():
            jwt = ((provider or {}).get("auth") or {}).get("jwt") or {}
            account = (jwt.get("serviceAccountRef") or {}).get("name")
            if account:
                ns = (jwt.get("serviceAccountRef") or {}).get("namespace") or obj.namespace
                yield Need(
                    "health",
                    obj_key("ServiceAccount", ns, account),
                    f"ServiceAccount {account} (its AWS credentials)",
                )
    elif obj.kind == "Certificate":
        issuer = spec.get("issuerRef") or {}
        kind = str(issuer.get("kind") or "Issuer")
        ns = "" if kind == "ClusterIssuer" else obj.namespace
        yield Need(
            "health", obj_key(kind, ns, str(issuer.get("name"))), f"{kind} {issuer.get('name')}"
        )
        yield Need("health", "controller:cert-manager.io/Certificate", "cert-manager")
    elif obj.kind in ("Prometheus", "Alertmanager") and obj.group == "monitoring.coreos.com":
        yield Need(
            "health", f"controller:monitoring.coreos.com/{obj.kind}", "the Prometheus operator"
        )
    elif obj.kind == "HorizontalPodAutoscaler":
        if any(
            m.get("type") in ("Resource", "ContainerResource") for m in spec.get("metrics") or []
        ):
            yield Need(
                "health", "controller:metrics.k8s.io", "the resource metrics API (metrics-server)"
            )
    elif obj.kind == "Application" and obj.app is not None:
        project = spec.get("project")
        yield Need(
            "apply", obj_key("AppProject", obj.namespace, str(project)), f"AppProject {project}"
        )


def provides(obj: Obj) -> Iterator[str]:
    """What ``obj`` makes exist once it is Healthy."""
    yield obj_key(obj.kind, obj.namespace, obj.name)
    spec: Mapping[str, Any] = obj.document.get("spec") or {}
    if obj.kind == "CustomResourceDefinition":
        yield f"crd:{spec.get('group')}/{(spec.get('names') or {}).get('kind')}"
    elif obj.kind == "ExternalSecret":
        name = (spec.get("target") or {}).get("name") or obj.name
        yield obj_key("Secret", obj.namespace, str(name))
    elif obj.kind == "Certificate" and spec.get("secretName"):
        yield obj_key("Secret", obj.namespace, str(spec["secretName"]))
    elif obj.kind == "Namespace":
        yield obj_key("ServiceAccount", obj.name, "default")


@dataclass(frozen=True)
class Provider:
    """Who provides something: an object, or an Application as a whole (unrendered add-ons)."""

    what: str  # for messages
    app: str | None
    phase: int
    wave: int
    obj: Obj | None = None


INSTALLS = "platform.acme.io/installs-crds"


def _app_provides(app: App) -> Iterator[str]:
    """What an Application provides as a whole: its chart's controllers. Never CRDs: only a
    rendered CustomResourceDefinition makes a kind exist (a declared ``installs`` does not)."""
    for capability in CONTROLLERS.get(app.chart, frozenset()):
        yield f"controller:{capability}"


class Providers:
    """Index: what -> who provides it."""

    def __init__(self, world: World) -> None:
        self.index: dict[str, list[Provider]] = {}
        for obj in world.objects:
            for key in provides(obj):
                self.index.setdefault(key, []).append(
                    Provider(obj.ref, obj.app, obj.phase, obj.wave, obj)
                )
        for app in world.apps.values():
            for key in _app_provides(app):
                self.index.setdefault(key, []).append(
                    Provider(f"Application {app.name}", app.name, 1, 0)
                )

    def of(self, key: str) -> list[Provider]:
        return list(self.index.get(key, []))


def relation(world: World, provider: Provider, obj: Obj) -> str:
    """``before``, ``with`` (the same wave), ``after`` or ``unordered``: when the provider is
    there, relative to when ``obj`` is applied."""
    if provider.app is None:
        return "before"  # the bootstrap made it
    mine = [*world.lineage(obj.app), ("", obj.phase, obj.wave)]
    theirs = world.lineage(provider.app)
    if provider.obj is not None:
        theirs.append(("", provider.phase, provider.wave))
    if mine[0][0] != theirs[0][0]:
        return "unordered"  # different root Applications: nothing orders them
    health = world.bootstrap.application_health
    for a, b in zip(mine[1:], theirs[1:], strict=False):
        if a == b and a[0]:
            continue  # the same child Application: compare inside it
        mine_app, their_app = bool(a[0]), bool(b[0])
        # An Application's wave is done when its contents are Healthy only if Applications
        # have a health assessment; without one it is done as soon as it exists.
        if (b[1], b[2]) > (a[1], a[2]):
            return "with" if mine_app and not health else "after"
        if (b[1], b[2]) < (a[1], a[2]):
            return "before" if health or not their_app else "with"
        if not mine_app and not their_app and provider.obj is not None:
            return "before" if provider.obj.kind_index < obj.kind_index else "with"
        return "with"
    return "with"


def _wave(obj: Obj) -> str:
    phase = PHASES[obj.phase]
    return f"wave {obj.wave}" + ("" if phase == "Sync" else f" ({phase})")


def _where(world: World, provider: Provider) -> str:
    if provider.app is None:
        return f"{provider.what} (bootstrap)"
    app = world.apps[provider.app]
    if provider.obj is None:
        return f"{provider.what} (wave {app.wave} of {app.parent})" if app.parent else provider.what
    return f"{provider.what} in {_wave(provider.obj)} of Application {provider.app}"


_RANK = {"before": 0, "with": 1, "unordered": 2, "after": 3}


def convergence(world: World) -> Iterator[tuple[Obj, str, str]]:
    """(object, check, message) for every requirement the sync does not meet in time. A failed
    apply fails the Application's whole sync, so it is reported once per Application and need,
    on its first resource in sync order."""
    index = Providers(world)
    failed_apply: dict[tuple[str, str], list[Obj]] = {}
    messages: dict[tuple[str, str], str] = {}
    for obj in world.objects:
        if obj.app is None:
            continue
        app = world.apps[obj.app]
        for need in needs(world, obj):
            found = [p for p in index.of(need.key) if p.obj is not obj]
            if not found:
                if not _possibly_opaque(world, need):
                    yield (
                        obj,
                        "PLAT013",
                        (
                            f"{_wave(obj)} of {obj.app}: waits for {need.what}, which nothing in "
                            f"{world.environment.name} provides"
                        ),
                    )
                continue
            best = min(found, key=lambda p: _RANK[relation(world, p, obj)])
            order = relation(world, best, obj)
            if need.kind == "ref" or order == "before":
                continue
            if order == "with" and (need.kind == "health" or best.app == obj.app):
                continue
            if order == "after":
                yield (
                    obj,
                    "PLAT012",
                    (
                        f"stalls at {_wave(obj)} of {obj.app}: waits for {need.what}, which "
                        f"{_where(world, best)} provides only after it"
                    ),
                )
            elif need.kind == "apply" and app.retry.unlimited:
                manual = _manual(world, best)
                if manual is not None:
                    key = (app.name, need.what)
                    failed_apply.setdefault(key, []).append(obj)
                    messages[key] = (
                        f"retries without a limit until {need.what} exists, which "
                        f"{_where(world, best)} provides and nothing orders first, but "
                        f"Application {manual} syncs only when someone syncs it (no automated "
                        "sync policy): the retry never ends on its own"
                    )
            elif need.kind == "apply":
                key = (app.name, need.what)
                failed_apply.setdefault(key, []).append(obj)
                messages[key] = (
                    f"cannot be applied before {need.what}, which {_where(world, best)} "
                    f"provides and nothing orders first; {app.retry.describe()}, then the "
                    "sync stops"
                )
    for key, objs in failed_apply.items():
        first = min(objs, key=lambda o: (o.phase, o.wave, o.kind_index, o.name))
        more = f" (and {len(objs) - 1} more of its resources)" if len(objs) > 1 else ""
        yield first, "PLAT012", f"{_wave(first)} of {key[0]}: {messages[key]}{more}"


def declared_crds(world: World) -> Iterator[tuple[Obj, str, str]]:
    """Each CRD group a rendered add-on declares it installs (PLAT010 orders its users by that
    declaration) but whose chart renders no CustomResourceDefinition of: nothing provides it."""
    rendered: dict[str, set[str]] = {}
    for obj in world.by_kind("CustomResourceDefinition"):
        if obj.app is not None:
            group = (obj.document.get("spec") or {}).get("group")
            rendered.setdefault(obj.app, set()).add(str(group))
    for holder in world.by_kind("Application"):
        app = world.apps.get(holder.name)
        if app is None or not app.rendered or app.parent != holder.app:
            continue
        declared = str(annotations_of(holder.document).get(INSTALLS) or "").split(",")
        for group in sorted({g.strip() for g in declared if g.strip()}):
            if group not in rendered.get(app.name, set()):
                yield (
                    holder,
                    "PLAT013",
                    (
                        f"{_wave(holder)} of {holder.app}: declares it installs the CRDs of "
                        f"{group} ({INSTALLS}), but its chart renders no "
                        "CustomResourceDefinition of that group: nothing in "
                        f"{world.environment.name} provides them"
                    ),
                )


def _manual(world: World, provider: Provider) -> str | None:
    """The first Application from the root down to the provider's that does not sync
    automatically: what is in it is never applied unless someone syncs it."""
    for name, _, _ in world.lineage(provider.app):
        if name and not world.apps[name].automated:
            return name
    return None


def _possibly_opaque(world: World, need: Need) -> bool:
    """Could an Application whose contents are not rendered provide it? Then the twin cannot
    say that nothing does."""
    if need.key.startswith("obj:"):
        namespace = need.key[4:].split("/", 2)[1]
        return bool(world.opaque(namespace))
    return bool(world.opaque(""))
