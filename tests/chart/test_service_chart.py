"""The generic service chart: each secure default, each toggle, each schema rejection."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import yaml

from tests.conftest import PROJECT_ROOT

CHART = helm_python.Chart.load(PROJECT_ROOT / "charts/service")
DIGEST = "sha256:" + "0f" * 32
# The release the tests render: a name of their own, none of the sample services'.
NAME = "alpha"
IMAGE = {"repository": f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{NAME}", "tag": "1.2.3"}


PLATFORM = {"environment": "dev", "cluster": "platform-dev", "region": "eu-west-1"}
# Every toggle on.
EVERYTHING: dict[str, Any] = {
    "autoscaling": {"enabled": True},
    "podDisruptionBudget": {"enabled": True},
    "ingress": {"enabled": True, "host": "h.example.com"},
    "serviceMonitor": {"enabled": True},
    "alerts": {"enabled": True},
    "dashboard": {"enabled": True},
    "secrets": {"enabled": True},
    "serviceAccount": {"roleArn": "arn:aws:iam::123456789012:role/platform-dev-svc"},
}


def render(values: dict[str, Any] | None = None, name: str = NAME) -> list[Any]:
    merged = {"image": IMAGE, "platform": PLATFORM, **(values or {})}
    manifests = CHART.render(merged, name=name, namespace="apps")
    return [doc for body in manifests.values() for doc in yaml.safe_load_all(body) if doc]


def kinds(docs: list[Any]) -> list[str]:
    return sorted(doc["kind"] for doc in docs)


def one(docs: list[Any], kind: str) -> Any:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[Any]) -> Any:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_defaults_render_the_minimal_set() -> None:
    assert kinds(render()) == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]


def test_every_object_is_namespaced_and_labelled() -> None:
    for doc in render():
        metadata = doc["metadata"]
        assert metadata["namespace"] == "apps"
        labels = metadata["labels"]
        assert labels["app.kubernetes.io/name"] == NAME
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "1.2.3"
        assert labels["helm.sh/chart"] == "service-0.1.0"


def test_pod_security_defaults() -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(docs)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_requests_limits_and_probes_by_default() -> None:
    main = container(render())
    assert set(main["resources"]) == {"requests", "limits"}
    for side in ("requests", "limits"):
        assert set(main["resources"][side]) == {"cpu", "memory"}
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "startupProbe" not in main
    assert "startupProbe" in container(render({"probes": {"startup": {"enabled": True}}}))


def test_digest_overrides_tag() -> None:
    image = container(render({"image": {**IMAGE, "digest": DIGEST}}))["image"]
    assert image == f"{IMAGE['repository']}@{DIGEST}"
    assert container(render())["image"] == f"{IMAGE['repository']}:1.2.3"


def test_service_account_is_ready_for_irsa() -> None:
    role = f"arn:aws:iam::123456789012:role/platform-dev-{NAME}"
    account = one(render({"serviceAccount": {"roleArn": role}}), "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    assert account["automountServiceAccountToken"] is False
    assert "annotations" not in one(render(), "ServiceAccount")["metadata"]


def test_existing_service_account_needs_a_name() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False}})
    docs = render({"serviceAccount": {"create": False, "name": "shared"}})
    assert "ServiceAccount" not in kinds(docs)
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "shared"


def test_autoscaling_replaces_replicas_with_an_hpa() -> None:
    docs = render({"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9}})
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    assert hpa["spec"]["scaleTargetRef"]["name"] == NAME
    assert "replicas" not in one(docs, "Deployment")["spec"]
    assert one(render({"replicaCount": 4}), "Deployment")["spec"]["replicas"] == 4


def test_pod_disruption_budget_selects_the_pods() -> None:
    docs = render({"podDisruptionBudget": {"enabled": True, "minAvailable": 2}})
    pdb = one(docs, "PodDisruptionBudget")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_network_policy_denies_all_but_listed_peers() -> None:
    policy = one(
        render(
            {
                "networkPolicy": {
                    "ingressFrom": {"services": ["beta"], "cidrs": ["10.0.0.0/16"]},
                    "egressTo": {"cidrs": [{"cidr": "10.0.0.0/16", "ports": [5432]}]},
                }
            }
        ),
        "NetworkPolicy",
    )
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    peers = [p for rule in spec["ingress"] for p in rule["from"]]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "beta"}}} in peers
    assert {"ipBlock": {"cidr": "10.0.0.0/16"}} in peers
    egress_ports = [p["port"] for rule in spec["egress"] for p in rule.get("ports", [])]
    assert 53 in egress_ports  # DNS always
    assert 5432 in egress_ports
    bare = one(render(), "NetworkPolicy")["spec"]
    assert bare["ingress"] == []
    assert "NetworkPolicy" not in kinds(render({"networkPolicy": {"enabled": False}}))


def test_ingress_is_optional_and_needs_a_host() -> None:
    assert "Ingress" not in kinds(render())
    with pytest.raises(helm_python.HelmRenderError, match=r"ingress\.host is required"):
        render({"ingress": {"enabled": True}})
    ingress = one(render({"ingress": {"enabled": True, "host": "api.example.com"}}), "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "api.example.com"
    assert ingress["spec"]["ingressClassName"] == "alb"


def test_service_monitor_is_optional() -> None:
    assert "ServiceMonitor" not in kinds(render())
    monitor = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_env_goes_to_the_config_map_and_rolls_the_pods() -> None:
    first = render({"env": {"LOG_LEVEL": "info", "WORKERS": 4}})
    assert one(first, "ConfigMap")["data"] == {"LOG_LEVEL": "info", "WORKERS": "4"}
    second = render({"env": {"LOG_LEVEL": "debug"}})

    def checksum(docs: list[Any]) -> str:
        template = one(docs, "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    assert checksum(first) != checksum(second)


def test_names_are_truncated_to_63() -> None:
    name = "a" * 53
    for doc in render({"fullnameOverride": "b" * 80}, name=name):
        assert len(doc["metadata"]["name"]) <= 63
        assert all(len(str(v)) <= 63 for v in doc["metadata"]["labels"].values())


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"image": {**IMAGE, "digest": "sha256:short"}}, "digest"),
        ({"service": {"type": "ExternalName"}}, "type"),
        ({"resources": {"limits": {"gpu": 1}}}, "gpu"),
        ({"networkPolicy": {"egressTo": {"cidrs": [{"cidr": "10.0.0.0/16"}]}}}, "ports"),
    ],
)
def test_schema_rejects_unknown_keys_and_wrong_types(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=reason):
        render(values)


@pytest.mark.parametrize("strategy", ["rolling", "canary", "blueGreen"])
def test_one_resource_kind_per_template(strategy: str) -> None:
    values = {"image": IMAGE, "platform": PLATFORM, **EVERYTHING}
    values["delivery"] = {"strategy": strategy}
    manifests = CHART.render(values, name="svc", namespace="apps")
    for template, body in manifests.items():
        template_kinds = {doc["kind"] for doc in yaml.safe_load_all(body) if doc}
        assert len(template_kinds) <= 1, template
