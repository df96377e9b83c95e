"""The add-ons of an environment: one Application per enabled add-on, the namespaces and the
workload namespace's guard rails, the cluster facts read from the cluster secret."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from platformctl.bridge import UnknownAnnotation, fill, placeholder_annotations
from platformctl.errors import InputError
from platformctl.model import load_repo
from platformctl.render import Renderer
from platformctl.vendor import Lock
from tests.conftest import PROJECT_ROOT, edit_yaml


def rendered(root: Path, environment: str = "dev") -> dict[str, Any]:
    repo = load_repo(root)
    documents = Renderer(repo).addons(repo.environment(environment)).documents
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def test_every_addon_deploys_its_vendored_chart_from_this_repository() -> None:
    repo = load_repo(PROJECT_ROOT)
    documents = rendered(PROJECT_ROOT, "staging")
    values = yaml.safe_load((PROJECT_ROOT / "charts/addons/values.yaml").read_text())
    applications = [d for key, d in documents.items() if key.startswith("Application/")]
    assert {a["metadata"]["name"] for a in applications} == {
        name for name, addon in values["addons"].items() if addon["enabled"]
    }
    lock = Lock.load(PROJECT_ROOT)
    for application in applications:
        spec = application["spec"]
        assert spec["project"] == "staging-platform"
        source = spec["source"]
        assert (source["repoURL"], source["targetRevision"]) == (repo.repository_url, repo.revision)
        name = PurePosixPath(source["path"]).name
        # a directory of vendored manifests (External Secrets' CRDs), or a vendored chart
        plain = "directory" in source
        vendored = lock.get_manifests(name) if plain else lock.get(name)
        assert source["path"] == f"charts/vendor/{vendored.name}"
        note = "platform.acme.io/manifests" if plain else "platform.acme.io/chart"
        assert application["metadata"]["annotations"][note] == (
            f"{vendored.name}-{vendored.version}"
        )
        assert plain != ("helm" in source)
        assert "ServerSideApply=true" in spec["syncPolicy"]["syncOptions"]
        assert int(application["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) >= -1


def test_crd_installers_come_before_their_users() -> None:
    documents = rendered(PROJECT_ROOT)
    for name in ("cert-manager", "external-secrets-crds", "prometheus-operator-crds"):
        annotations = documents[f"Application/{name}"]["metadata"]["annotations"]
        assert int(annotations["argocd.argoproj.io/sync-wave"]) <= 0
        assert annotations["platform.acme.io/installs-crds"]
    external_secrets = documents["Application/external-secrets"]
    assert external_secrets["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0"
    assert external_secrets["spec"]["source"]["helm"]["valuesObject"]["installCRDs"] is False


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_each_addon_declares_exactly_the_crd_groups_it_renders(environment: str) -> None:
    """PLAT010 orders an add-on's users by what it declares it installs; only the CRDs it
    renders exist (a declaration that renders nothing let External Secrets' CRDs go missing)."""
    repo = load_repo(PROJECT_ROOT)
    renderer = Renderer(repo)
    declared = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["platform.acme.io/installs-crds"]
        for d in renderer.addons(repo.environment(environment)).documents
        if d["kind"] == "Application"
    }
    for job in renderer.addon_chart_jobs(repo.environment(environment)):
        groups = {
            d["spec"]["group"]
            for d in renderer.render(job).documents
            if d["kind"] == "CustomResourceDefinition"
        }
        name = job.name.removeprefix("addons/")
        assert set(filter(None, declared[name].split(","))) == groups, name


def test_namespaces_carry_the_pod_security_level_they_need() -> None:
    documents = rendered(PROJECT_ROOT)
    labels = {
        key.removeprefix("Namespace/"): d["metadata"]["labels"]
        for key, d in documents.items()
        if key.startswith("Namespace/")
    }
    assert labels["apps"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["apps"]["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["monitoring"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["logging"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["observability"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "kube-system" not in labels


def test_the_workload_namespace_is_default_deny_with_quota_and_limits() -> None:
    documents = rendered(PROJECT_ROOT, "production")
    deny = documents["NetworkPolicy/default-deny"]
    assert deny["metadata"]["namespace"] == "apps"
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    quota = documents["ResourceQuota/workloads"]["spec"]["hard"]
    assert quota["services.loadbalancers"] == "0"
    assert quota["requests.cpu"] == "32"  # production's file
    limits = documents["LimitRange/workloads"]["spec"]["limits"][0]
    assert limits["type"] == "Container"
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}


def test_environment_files_hold_only_differences() -> None:
    def values(environment: str, addon: str) -> Any:
        documents = rendered(PROJECT_ROOT, environment)
        return documents[f"Application/{addon}"]["spec"]["source"]["helm"]["valuesObject"]

    assert values("dev", "external-dns")["policy"] == "sync"
    assert values("production", "external-dns")["policy"] == "upsert-only"
    prometheus = values("production", "kube-prometheus-stack")["prometheus"]["prometheusSpec"]
    assert prometheus["retention"] == "30d"
    # the chart's defaults survive next to the environment's difference
    assert prometheus["ruleSelectorNilUsesHelmValues"] is False


def test_cluster_facts_fill_the_addon_values() -> None:
    documents = rendered(PROJECT_ROOT)
    dns = documents["Application/external-dns"]["spec"]["source"]["helm"]["valuesObject"]
    assert dns["domainFilters"] == ["dev.platform.acme-corp.example"]
    assert dns["txtOwnerId"] == "platform-dev"
    grafana = documents["Application/kube-prometheus-stack"]["spec"]["source"]["helm"][
        "valuesObject"
    ]["grafana"]
    assert grafana["ingress"]["hosts"] == ["grafana.dev.platform.acme-corp.example"]
    assert (
        grafana["admin"]["existingSecret"]
        == documents["ExternalSecret/grafana-admin"]["spec"]["target"]["name"]
    )


@pytest.mark.parametrize(
    ("addon", "namespace"),
    [("fluent-bit", "logging"), ("opentelemetry-collector", "observability")],
)
def test_disabling_an_addon_removes_its_application_and_namespace(
    repo: Path, addon: str, namespace: str
) -> None:
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: data["addons"].setdefault(addon, {}).update(enabled=False),
    )
    documents = rendered(repo)
    assert f"Application/{addon}" not in documents
    assert f"Namespace/{namespace}" not in documents
    assert "Application/cert-manager" in documents


def test_disabling_the_monitoring_stack_drops_grafanas_secret(repo: Path) -> None:
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: data["addons"]["kube-prometheus-stack"].update(enabled=False),
    )
    documents = rendered(repo)
    assert "ExternalSecret/grafana-admin" not in documents
    assert "SecretStore/grafana" not in documents


def test_bad_addon_values_name_the_file(repo: Path) -> None:
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: data["addons"]["external-dns"].update(wave="late"),
    )
    with pytest.raises(InputError, match=r"environments/addons/dev\.yaml: values break"):
        rendered(repo)


def test_the_addons_applicationset_reads_only_annotations_the_cluster_secret_has() -> None:
    repo = load_repo(PROJECT_ROOT)
    environment = repo.environment("dev")
    appset = next(
        d
        for d in Renderer(repo).gitops(environment).documents
        if d["metadata"]["name"] == "dev-addons"
    )
    values = appset["spec"]["template"]["spec"]["source"]["helm"]["valuesObject"]
    annotations = placeholder_annotations(repo, environment)
    fill(values, annotations)  # every reference resolves
    with pytest.raises(UnknownAnnotation, match="aws_vpc_id"):
        fill(values, {k: v for k, v in annotations.items() if k != "aws_vpc_id"})
    with pytest.raises(UnknownAnnotation, match="index"):
        fill({"x": "{{ index .metadata.labels 'a' }}"}, annotations)


def test_a_missing_cluster_fact_names_the_annotation() -> None:
    repo = load_repo(PROJECT_ROOT)
    environment = repo.environment("dev")
    annotations = placeholder_annotations(repo, environment)
    del annotations["platform_hosted_zone_id"]
    with pytest.raises(
        InputError, match="the cluster secret has no annotation platform_hosted_zone_id"
    ):
        Renderer(repo).addons(environment, annotations)


def test_without_an_environment_file_the_chart_defaults_apply(repo: Path) -> None:
    (repo / "environments/addons/dev.yaml").unlink()
    documents = rendered(repo)
    dns = documents["Application/external-dns"]["spec"]["source"]["helm"]["valuesObject"]
    assert dns["policy"] == "upsert-only"
    assert documents["ResourceQuota/workloads"]["spec"]["hard"]["requests.cpu"] == "8"


def test_each_addon_application_renders_its_vendored_chart_as_argo_cd_would() -> None:
    repo = load_repo(PROJECT_ROOT)
    renderer = Renderer(repo)
    environment = repo.environment("production")
    applications = {
        d["metadata"]["name"]: d
        for d in renderer.addons(environment).documents
        if d["kind"] == "Application"
    }
    jobs = renderer.addon_chart_jobs(environment)
    assert {job.key for job in jobs} == {f"production/addons/{name}" for name in applications}
    for job in jobs:
        application = applications[job.name.removeprefix("addons/")]
        source = application["spec"]["source"]
        assert job.chart == PROJECT_ROOT / source["path"]
        assert job.namespace == application["spec"]["destination"]["namespace"]
        if "directory" in source:
            assert (job.directory, job.values) == (source["directory"], {})
            continue
        assert job.directory is None
        assert job.values == source["helm"]["valuesObject"]
        assert job.release_name == source["helm"]["releaseName"]


def test_a_directory_of_manifests_renders_the_files_argo_cd_reads(repo: Path) -> None:
    """Only .yaml, .yml and .json files, at the root unless ``recurse`` (Argo CD's directory
    source); the vendored bundle's CRDs are the add-on's documents."""
    folder = repo / "charts/vendor/external-secrets-crds"
    (folder / "nested").mkdir()
    (folder / "nested" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n"
    )
    renderer = Renderer(load_repo(repo))
    (job,) = (
        j
        for j in renderer.addon_chart_jobs(load_repo(repo).environment("dev"))
        if j.name == "addons/external-secrets-crds"
    )
    documents = renderer.render(job).documents
    assert {d["kind"] for d in documents} == {"CustomResourceDefinition"}
    assert len(documents) == 25  # LICENSE, nested/ and anything not YAML or JSON are not read
    recursive = dataclasses.replace(job, directory={"recurse": True})
    assert "extra" in {d["metadata"]["name"] for d in renderer.render(recursive).documents}


def test_an_addon_chart_renders_with_the_cluster_facts_of_its_environment() -> None:
    repo = load_repo(PROJECT_ROOT)
    renderer = Renderer(repo)
    job = next(
        j
        for j in renderer.addon_chart_jobs(repo.environment("dev"))
        if j.name == "addons/external-dns"
    )
    documents = renderer.render(job).documents
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--domain-filter=dev.platform.acme-corp.example" in args
    assert "--zone-id-filter=Z0000000000000000000" in args
    assert deployment["metadata"]["namespace"] == "external-dns"


def test_a_pin_that_is_not_the_vendored_version_is_refused(repo: Path) -> None:
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: (
            data["addons"]
            .setdefault("metrics-server", {})
            .update(chart={"name": "metrics-server", "version": "3.13.2"})
        ),
    )
    loaded = load_repo(repo)
    with pytest.raises(
        InputError,
        match=r"pins metrics-server-3\.13\.2, but charts/vendor/metrics-server is 3\.13\.1",
    ):
        Renderer(loaded).addon_chart_jobs(loaded.environment("dev"))


def test_values_that_break_an_upstream_charts_schema_name_the_addon(repo: Path) -> None:
    # cert-manager ships a values.schema.json: replicaCount must be a number
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: (
            data["addons"].setdefault("cert-manager", {}).update(values={"replicaCount": "two"})
        ),
    )
    loaded = load_repo(repo)
    renderer = Renderer(loaded)
    job = next(
        j
        for j in renderer.addon_chart_jobs(loaded.environment("dev"))
        if j.name == "addons/cert-manager"
    )
    with pytest.raises(
        InputError, match=r"\(addons\.cert-manager\): values break the chart's schema"
    ):
        renderer.render(job)


def test_the_monitoring_stack_syncs_after_what_it_waits_for() -> None:
    """Its Ingress needs the load balancer controller, its admin login the External Secrets
    operator and Grafana's service account, its volumes the gp3 StorageClass."""
    documents = rendered(PROJECT_ROOT)

    def wave(key: str) -> int:
        return int(documents[key]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

    stack = wave("Application/kube-prometheus-stack")
    assert wave("Application/aws-load-balancer-controller") < stack
    assert wave("Application/external-secrets") < wave("SecretStore/grafana") < stack
    assert wave("ServiceAccount/kube-prometheus-stack-grafana") <= wave("SecretStore/grafana")
    values = documents["Application/kube-prometheus-stack"]["spec"]["source"]["helm"][
        "valuesObject"
    ]
    claim = values["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]
    storage_class = documents[f"StorageClass/{claim['spec']['storageClassName']}"]
    assert wave(f"StorageClass/{storage_class['metadata']['name']}") < stack
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert values["grafana"]["serviceAccount"] == {
        "create": False,
        "name": documents["SecretStore/grafana"]["spec"]["provider"]["aws"]["auth"]["jwt"][
            "serviceAccountRef"
        ]["name"],
    }


def test_prometheus_answers_at_the_url_the_next_stages_gates_ask() -> None:
    """Finding 7: the slo gate asks an environment's Prometheus at endpoints.prometheus.url;
    an internal ALB Ingress answers at exactly that host, and none where no URL is declared."""
    repo = load_repo(PROJECT_ROOT)
    renderer = Renderer(repo)
    declared = 0
    for environment in repo.environments:
        (job,) = [
            j
            for j in renderer.addon_chart_jobs(environment)
            if j.name == "addons/kube-prometheus-stack"
        ]
        ingresses = [
            d
            for d in renderer.render(job).documents
            if d["kind"] == "Ingress" and d["metadata"]["name"].endswith("-prometheus")
        ]
        if environment.prometheus is None:
            assert ingresses == []
            continue
        declared += 1
        (ingress,) = ingresses
        host = urlsplit(environment.prometheus.url).hostname
        assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
        assert ingress["spec"]["ingressClassName"] == "alb"
        annotations = ingress["metadata"]["annotations"]
        assert annotations["alb.ingress.kubernetes.io/scheme"] == "internal"
        assert annotations["external-dns.alpha.kubernetes.io/hostname"] == host
        assert "alb.ingress.kubernetes.io/certificate-arn" not in annotations  # found by host
    assert declared  # some environment's gates ask a Prometheus
