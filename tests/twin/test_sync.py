"""Sync convergence: waves, hooks, kind order, Application health, generators, retries.

Add-on charts are given as synthetic ``addons/<app>`` targets (what verify renders once the
add-ons are vendored), so each test states exactly the order it exercises.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.twin.crds import Pinned, pinned
from tests.twin.conftest import about, kind, releases_with, twin, world_of

ENV = "dev"


def meta(name: str, namespace: str | None = None, **notes: object) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name}
    if namespace:
        found["namespace"] = namespace
    if notes:
        found["annotations"] = {k.replace("_", "."): str(v) for k, v in notes.items()}
    return found


def wave(number: int) -> dict[str, str]:
    return {"argocd.argoproj.io/sync-wave": str(number)}


def application(name: str, number: int, chart: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd", "annotations": wave(number)},
        "spec": {
            "project": f"{ENV}-platform",
            "source": {
                "repoURL": "https://example.com/charts",
                "chart": chart,
                "targetRevision": "1.0.0",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": {"syncOptions": ["ServerSideApply=true"], **extra},
        },
    }


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "annotations": wave(-1)},
    }


def crd(group: str, kind_name: str, number: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind_name.lower()}s.{group}", "annotations": wave(number)},
        "spec": {
            "group": group,
            "names": {"kind": kind_name},
            "scope": "Namespaced",
            "versions": [],
        },
    }


def deployment(name: str, namespace_name: str, **pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace_name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, **pod}]},
            }
        },
    }


def store_crds() -> list[dict[str, Any]]:
    return [crd("external-secrets.io", "ExternalSecret"), crd("external-secrets.io", "SecretStore")]


def stack_addons() -> dict[str, list[dict[str, Any]]]:
    """The issue's example: a monitoring stack in wave 0 whose Grafana needs an admin Secret made
    by an ExternalSecret in wave 1, an Ingress served by a controller in wave 1, and a volume of
    a StorageClass nothing defines."""
    return {
        "addons": [
            namespace("monitoring"),
            namespace("external-secrets"),
            application("eso", 0, "external-secrets", "external-secrets"),
            application("stack", 0, "kube-prometheus-stack", "monitoring"),
            application("lb", 1, "aws-load-balancer-controller", "kube-system"),
            {
                "apiVersion": "external-secrets.io/v1",
                "kind": "SecretStore",
                "metadata": {"name": "aws", "namespace": "monitoring", "annotations": wave(1)},
                "spec": {"provider": {"aws": {"service": "SecretsManager"}}},
            },
            {
                "apiVersion": "external-secrets.io/v1",
                "kind": "ExternalSecret",
                "metadata": {"name": "admin", "namespace": "monitoring", "annotations": wave(1)},
                "spec": {
                    "secretStoreRef": {"kind": "SecretStore", "name": "aws"},
                    "target": {"name": "admin"},
                },
            },
        ],
        "addons__eso": store_crds(),
        "addons__stack": [
            deployment("grafana", "monitoring", envFrom=[{"secretRef": {"name": "admin"}}]),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta("grafana", "monitoring"),
                "spec": {"ports": [{"name": "http", "port": 80}]},
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": meta("grafana", "monitoring"),
                "spec": {
                    "ingressClassName": "alb",
                    "rules": [
                        {
                            "http": {
                                "paths": [
                                    {
                                        "backend": {
                                            "service": {"name": "grafana", "port": {"name": "http"}}
                                        }
                                    }
                                ]
                            }
                        }
                    ],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": meta("data", "monitoring"),
                "spec": {"storageClassName": "gp3"},
            },
        ],
        "addons__lb": [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": "alb"},
                "spec": {"controller": "ingress.k8s.aws/alb"},
            },
            deployment("aws-load-balancer-controller", "kube-system"),
        ],
    }


def test_this_repository_converges_in_every_environment(stacked: Path) -> None:
    """With every add-on's vendored chart rendered, as verify renders them. PLAT020 is not
    about converging: its findings here are only the CRDs the load balancer controller's and
    external-dns's charts ship in crds/, excepted in environments/policy-exceptions.yaml."""
    for env in load_repo(stacked).environment_names:
        found = twin(stacked, env, charts=True)
        assert [f for f in found if f.check != "PLAT020"] == [], env
        assert {f.target.rsplit("/", 1)[-1] for f in found if f.check == "PLAT020"} <= {
            "aws-load-balancer-controller",
            "external-dns",
        }, env


def test_an_addon_provides_only_the_crds_its_chart_renders(stacked: Path) -> None:
    """Declaring CRD groups (``installs``) creates none: External Secrets packaged without its
    CRD templates left every ExternalSecret unappliable while the declaration said otherwise."""
    addons = stack_addons()
    eso = addons["addons"][2]
    eso["metadata"]["annotations"]["platform.acme.io/installs-crds"] = "external-secrets.io"
    addons["addons__eso"] = [deployment("external-secrets", "external-secrets")]
    findings = twin(stacked, ENV, **addons)
    missing = about(findings, "PLAT013", f"{ENV}/addons")
    assert (
        f"Application/eso: wave 0 of {ENV}-addons: declares it installs the CRDs of "
        "external-secrets.io (platform.acme.io/installs-crds), but its chart renders no "
        f"CustomResourceDefinition of that group: nothing in {ENV} provides them"
    ) in missing, missing
    for kind_name, name in (("ExternalSecret", "admin"), ("SecretStore", "aws")):
        assert (
            f"{kind_name}/{name}: wave 1 of {ENV}-addons: waits for the {kind_name} CRD "
            f"(external-secrets.io), which nothing in {ENV} provides"
        ) in missing, missing
    addons["addons__eso"] += store_crds()
    assert not about(twin(stacked, ENV, **addons), "PLAT013", f"{ENV}/addons")


def vendored(document: dict[str, Any]) -> dict[str, Any]:
    """An add-on Application deploying its chart from this repository, as a vendored copy."""
    chart = document["spec"]["source"].pop("chart")
    document["spec"]["source"].update(
        repoURL="https://github.com/acme-corp/platform.git", path=f"charts/vendor/{chart}/1.0.0"
    )
    return document


@pytest.mark.parametrize("source", ["helm repository", "vendored"])
def test_a_wave_that_waits_for_a_later_wave_stalls_and_what_nothing_provides_is_named(
    stacked: Path, source: str
) -> None:
    addons = stack_addons()
    if source == "vendored":
        addons["addons"] = [
            vendored(d) if d["kind"] == "Application" else d for d in addons["addons"]
        ]
    findings = twin(stacked, ENV, **addons)
    stalls = about(findings, "PLAT012", f"{ENV}/addons/stack")
    assert any(
        s.startswith("Deployment/grafana: stalls at wave 0 of stack: waits for Secret admin")
        and f"ExternalSecret/monitoring/admin in wave 1 of Application {ENV}-addons provides "
        "only after it"
        in s
        for s in stalls
    ), stalls
    assert any(
        s.startswith("Ingress/grafana: stalls at wave 0 of stack: waits for the controller of ")
        and "IngressClass alb" in s
        and f"Application lb (wave 1 of {ENV}-addons)" in s
        for s in stalls
    ), stalls
    missing = about(findings, "PLAT013", f"{ENV}/addons/stack")
    assert (
        "PersistentVolumeClaim/data: wave 0 of stack: waits for StorageClass gp3, which nothing "
        f"in {ENV} provides" in missing
    )


def test_without_application_health_a_later_wave_no_longer_waits_for_an_earlier_one(
    stacked: Path,
) -> None:
    """Argo CD >= 1.8 gives Applications no health of their own unless configured: the waves of
    an app of apps then order only when each Application is created, not when it is ready."""
    addons = stack_addons()
    addons["addons"].append(application("user", 1, "user-chart", "monitoring", retry={"limit": 2}))
    addons["addons__stack"].append(crd("example.com", "Widget"))
    addons["addons__user"] = [
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": meta("w", "monitoring"),
            "spec": {},
        }
    ]
    healthy = twin(stacked, ENV, **addons)
    assert not about(healthy, "PLAT012", f"{ENV}/addons/user")
    unhealthy = twin(
        stacked, ENV, bootstrap=lambda b: dataclasses.replace(b, application_health=False), **addons
    )
    retries = about(unhealthy, "PLAT012", f"{ENV}/addons/user")
    assert retries == [
        "Widget/w: wave 0 of user: cannot be applied before the Widget CRD (example.com), which "
        "CustomResourceDefinition/widgets.example.com in wave 0 of Application stack provides and "
        "nothing orders first; its retry limit 2: gives up after 0m15s of backoff, then the sync "
        "stops"
    ]
    # Grafana's secret now arrives: wave 1 is applied without waiting for stack to be Healthy.
    assert not [s for s in about(unhealthy, "PLAT012") if "Secret admin" in s]


def test_a_presync_hook_runs_before_what_the_sync_phase_creates(stacked: Path) -> None:
    addons = stack_addons()
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "migrate",
            "namespace": "monitoring",
            "annotations": {"argocd.argoproj.io/hook": "PreSync"},
        },
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "m", "envFrom": [{"configMapRef": {"name": "settings"}}]}
                    ]
                }
            }
        },
    }
    helm_job = copy.deepcopy(job)
    helm_job["metadata"] = {
        "name": "seed",
        "namespace": "monitoring",
        "annotations": {"helm.sh/hook": "pre-install"},
    }
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("settings", "monitoring")}
    addons["addons__stack"] += [job, helm_job, settings]
    stalls = about(twin(stacked, ENV, **addons), "PLAT012", f"{ENV}/addons/stack")
    for name in ("migrate", "seed"):
        assert (
            f"Job/{name}: stalls at wave 0 (PreSync) of stack: waits for ConfigMap settings "
            "(envFrom), which ConfigMap/monitoring/settings in wave 0 of Application stack "
            "provides only after it"
        ) in stalls


def test_kind_order_applies_a_crd_before_its_resources_in_the_same_wave(stacked: Path) -> None:
    addons = stack_addons()
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": meta("w", "monitoring"),
        "spec": {},
    }
    addons["addons__stack"] += [crd("example.com", "Widget"), widget]
    assert not [s for s in about(twin(stacked, ENV, **addons), "PLAT012") if "Widget" in s]
    addons["addons__stack"][-2] = crd("example.com", "Widget", number=1)
    assert (
        "Widget/w: stalls at wave 0 of stack: waits for the Widget CRD (example.com), which "
        "CustomResourceDefinition/widgets.example.com in wave 1 of Application stack provides "
        "only after it"
    ) in about(twin(stacked, ENV, **addons), "PLAT012")


def _seed_retry(root: Path, limit: int) -> None:
    template = root / "charts/gitops/templates/applicationset.yaml"
    text = template.read_text()
    assert "limit: -1" in text
    template.write_text(text.replace("limit: -1", f"limit: {limit}"))


def test_services_that_need_the_addons_crds_give_up_with_a_finite_retry(stacked: Path) -> None:
    """Nothing orders the services' Applications after the add-ons: a finite retry stops before
    the add-ons' CRDs exist (production's Rollouts need argo-rollouts' CRDs)."""
    needing = releases_with(
        stacked,
        "production",
        lambda d: "/" in str(d.get("apiVersion")) and "." in str(d.get("apiVersion")).split("/")[0],
    )
    assert needing
    _seed_retry(stacked, 5)
    findings = twin(stacked, "production", charts=True)
    for key in needing:
        retries = about(findings, "PLAT012", key)
        assert retries, key
        assert all("retry limit 5: gives up after 5m10s of backoff" in r for r in retries), key
    rollouts = releases_with(stacked, "production", kind("Rollout"))
    for key in rollouts:
        assert any(
            r.startswith("Rollout/")
            and "the Rollout CRD (argoproj.io), which CustomResourceDefinition/"
            "rollouts.argoproj.io in wave 0 of Application argo-rollouts provides"
            in r
            for r in about(findings, "PLAT012", key)
        ), key


def test_an_unlimited_retry_converges_only_if_the_provider_syncs_by_itself(stacked: Path) -> None:
    """The services' retry without a limit ends once the add-ons' CRDs exist, because the
    add-ons Application syncs automatically; synced by hand, nothing ever makes them."""
    template = stacked / "charts/gitops/templates/addons-applicationset.yaml"
    text = template.read_text()
    automated = (
        "        automated:\n          prune: {{ .Values.sync.prune }}\n"
        "          selfHeal: {{ .Values.sync.selfHeal }}\n"
    )
    assert automated in text
    template.write_text(text.replace(automated, ""))
    findings = twin(stacked, "production", charts=True)
    for key in releases_with(stacked, "production", kind("Rollout")):
        assert any(
            r.startswith("Rollout/")
            and "retries without a limit until the Rollout CRD (argoproj.io) exists, which "
            "CustomResourceDefinition/rollouts.argoproj.io in wave 0 of Application argo-rollouts "
            "provides and nothing orders first, but Application production-addons syncs only "
            "when someone syncs it"
            in r
            for r in about(findings, "PLAT012", key)
        ), key


ARGO_CD_3_0 = Path(__file__).resolve().parents[1] / "fixtures" / "crds-argo-cd-v3.0.6"
APPSET = ("argoproj.io", "ApplicationSet")


def _git_file_fields(crd: Mapping[str, Any]) -> set[str]:
    fields: set[str] = set()
    for version in crd["spec"]["versions"]:
        node = version["schema"]["openAPIV3Schema"]
        for step in ("spec", "generators", "git", "files"):
            node = node["properties"][step]
            node = node.get("items", node)
        fields |= set(node["properties"])
    return fields


def _argo_cd_3_0() -> dict[tuple[str, str], Any]:
    """The pinned CRDs, with Argo CD v3.0.6's own ApplicationSet CRD (the vendored upstream
    fixture): its git files entry has no ``exclude`` (that came in 3.1)."""
    crds = dict(pinned())
    older = Pinned(ARGO_CD_3_0)[APPSET]
    assert "exclude" not in _git_file_fields(older)
    crds[APPSET] = older
    return crds


def _seed_exclude(root: Path) -> None:
    template = root / "charts/gitops/templates/applicationset.yaml"
    text = template.read_text()
    start = text.index("      # A post selector sees")
    end = text.index("  # Applications stay when the generator")
    template.write_text(
        text[:start].replace(
            "          - path: environments/{{ $env }}/*.yaml\n",
            "          - path: environments/{{ $env }}/*.yaml\n"
            "          - path: environments/{{ $env }}/environment.yaml\n"
            "            exclude: true\n",
        )
        + text[end:]
    )


def test_each_service_file_makes_one_application_and_the_settings_file_none(stacked: Path) -> None:
    repo = load_repo(stacked)
    for env in repo.environment_names:
        world = world_of(stacked, env)
        generated = [a for a in world.apps.values() if a.parent is None and "services" in a.made_by]
        assert sorted(a.target for a in generated) == sorted(r.key for r in repo.select([env]))
        assert not world.notes
    assert twin(stacked, ENV, pinned=_argo_cd_3_0()) == []


def test_exclude_does_nothing_where_the_deployed_crd_lacks_it(stacked: Path) -> None:
    _seed_exclude(stacked)
    assert "exclude" in _git_file_fields(pinned()[APPSET])  # the pin is Argo CD 3.1 or later
    assert twin(stacked, ENV) == []  # a CRD with exclude (Argo CD 3.1+) honours it
    findings = twin(stacked, ENV, pinned=_argo_cd_3_0())
    assert about(findings, "PLAT019", f"{ENV}/argocd") == [
        f"ApplicationSet/{ENV}-services: generates Application 'environment-{ENV}' from "
        f"environments/{ENV}/environment.yaml, which no target renders: Argo CD would deploy it "
        "anyway (exclude the file, or render it)"
    ]
