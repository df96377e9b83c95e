"""References, network policies, hosts, drift, Pod Security and admission: one seeded violation
each, chosen from whatever releases the fixture repository has."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.policy.rules import RuleContext, workload_namespace_guarded
from platformctl.render import Renderer
from platformctl.twin.pss import evaluate
from tests.conftest import edit_yaml
from tests.twin.conftest import about, kind, releases_with, twin


def values_file(root: Path, key: str) -> Path:
    env, service = key.split("/")
    return root / "environments" / env / f"{service}.yaml"


def set_values(root: Path, key: str, **values: Any) -> None:
    def change(data: Any) -> None:
        for name, value in values.items():
            data[name] = value

    edit_yaml(values_file(root, key), change)


def replace_in(root: Path, template: str, old: str, new: str) -> None:
    path = root / "charts/service/templates" / template
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def first(root: Path, env: str, wanted: str) -> str:
    found = releases_with(root, env, kind(wanted))
    assert found, f"no release in {env} renders a {wanted}"
    return found[0]


def test_a_service_monitor_port_that_no_service_names(stacked: Path) -> None:
    key = first(stacked, "dev", "ServiceMonitor")
    replace_in(stacked, "servicemonitor.yaml", "- port: http", "- port: metrics")
    assert "scrapes port 'metrics', which no Service it selects names" in " ".join(
        about(twin(stacked, "dev"), "PLAT013", key)
    )


def test_an_ingress_backend_port_that_the_service_lacks(stacked: Path) -> None:
    key = first(stacked, "staging", "Ingress")
    replace_in(stacked, "ingress.yaml", "name: http", "name: web")
    service = key.split("/")[1]
    assert any(
        f"routes to port 'web' of Service {service}, which has no such port" in s
        for s in about(twin(stacked, "staging"), "PLAT013", key)
    )


def test_a_service_account_that_assumes_another_services_role(stacked: Path) -> None:
    repo = load_repo(stacked)
    environment = repo.environment("production")
    releases = repo.select(["production"])
    assert len(releases) >= 2
    mine, other = releases[0], releases[1]
    role = f"arn:aws:iam::123456789012:role/{environment.cluster_name}-{other.service}"
    set_values(stacked, mine.key, serviceAccount={"roleArn": role})
    assert (
        f"ServiceAccount/{mine.service}: assumes IAM role {environment.cluster_name}-"
        f"{other.service}, which trusts only {environment.namespace}/{other.service} (its own is "
        f"{environment.cluster_name}-{mine.service}): its pods get no AWS credentials"
    ) in about(twin(stacked, "production"), "PLAT013", mine.key)


def _egress_services(root: Path, env: str) -> tuple[str, str]:
    """A release that may send to another service, and that service's release."""
    repo = load_repo(root)
    renderer = Renderer(repo)
    for release in repo.select([env]):
        for document in renderer.release(release).documents:
            if document.get("kind") != "NetworkPolicy":
                continue
            for rule in document["spec"].get("egress") or []:
                for peer in rule.get("to") or []:
                    name = ((peer.get("podSelector") or {}).get("matchLabels") or {}).get(
                        "app.kubernetes.io/name"
                    )
                    if name and "namespaceSelector" not in peer:
                        return release.key, f"{env}/{name}"
    raise AssertionError(f"no release in {env} sends to another service")


def test_traffic_one_side_allows_the_other_must_admit(stacked: Path) -> None:
    sender, receiver = _egress_services(stacked, "dev")
    set_values(stacked, receiver, networkPolicy={"ingressFrom": {"services": []}})
    namespace = load_repo(stacked).environment("dev").namespace
    a, b = (f"{namespace}/{key.split('/')[1]}" for key in (sender, receiver))
    expected = f"lets {a} send to {b}, but no NetworkPolicy of {b} admits {a}"
    assert f"NetworkPolicy/{a.split('/')[1]}: {expected}" in about(twin(stacked, "dev"), "PLAT014")


def _names(root: Path, *keys: str) -> list[str]:
    namespace = load_repo(root).environment(keys[0].split("/")[0]).namespace
    return [f"{namespace}/{key.split('/')[1]}" for key in keys]


def test_egress_on_a_port_the_receiver_neither_admits_nor_listens_on(stacked: Path) -> None:
    """Network policies match pod ports: egress opened to the Service's port (80) while the pods
    listen on 8000 and admit only that drops every packet, though both policies name the peer."""
    sender, receiver = _egress_services(stacked, "dev")
    replace_in(
        stacked,
        "networkpolicy.yaml",
        "              app.kubernetes.io/name: {{ . }}\n        {{- end }}\n    {{- end }}\n"
        "    {{- range .Values.networkPolicy.egressTo.cidrs }}",
        "              app.kubernetes.io/name: {{ . }}\n        {{- end }}\n      ports:\n"
        "        - port: 80\n          protocol: TCP\n    {{- end }}\n"
        "    {{- range .Values.networkPolicy.egressTo.cidrs }}",
    )
    a, b = _names(stacked, sender, receiver)
    found = about(twin(stacked, "dev"), "PLAT014", sender)
    policy = f"NetworkPolicy/{a.split('/')[1]}"
    assert (
        f"{policy}: lets {a} send to {b} on TCP 80, but the NetworkPolicies of {b} admit {a} "
        "only on TCP 8000"
    ) in found, found
    assert (
        f"{policy}: egress to {b} allows TCP 80, which nothing there listens on (its pods "
        "listen on TCP 8000)"
    ) in found, found


def test_ingress_on_a_port_the_pods_do_not_listen_on_or_do_not_name(stacked: Path) -> None:
    sender, receiver = _egress_services(stacked, "dev")
    replace_in(
        stacked,
        "networkpolicy.yaml",
        "              app.kubernetes.io/name: {{ . }}\n        {{- end }}\n      ports:\n"
        "        - port: {{ $port }}",
        "              app.kubernetes.io/name: {{ . }}\n        {{- end }}\n      ports:\n"
        "        - port: 9090\n          protocol: TCP\n        - port: metrics",
    )
    _, b = _names(stacked, sender, receiver)
    found = about(twin(stacked, "dev"), "PLAT014", receiver)
    policy = f"NetworkPolicy/{b.split('/')[1]}"
    assert (
        f"{policy}: ingress of {b} allows TCP 9090, which nothing there listens on (its pods "
        "listen on TCP 8000)"
    ) in found, found
    assert f"{policy}: ingress of {b} allows port 'metrics', which no container there names" in (
        found
    ), found


def test_dns_egress_on_a_port_coredns_does_not_serve(stacked: Path) -> None:
    """CoreDNS (the EKS add-on the bootstrap provides) serves 53 over UDP and TCP."""
    key = first(stacked, "staging", "NetworkPolicy")
    replace_in(stacked, "networkpolicy.yaml", "- port: 53\n          protocol: UDP", "- port: 5353")
    policy = f"NetworkPolicy/{key.split('/')[1]}"
    assert (
        f"{policy}: egress to kube-system/coredns allows TCP 5353, which nothing there listens "
        "on (its pods listen on TCP 53, TCP 9153, UDP 53)"
    ) in about(twin(stacked, "staging"), "PLAT014", key)
    # every port of a protocol, or a range that holds a served port, names no port of its own
    replace_in(stacked, "networkpolicy.yaml", "- port: 5353", "- port: 50\n          endPort: 60")
    replace_in(
        stacked, "networkpolicy.yaml", "- port: 53\n          protocol: TCP", "- protocol: TCP"
    )
    assert not about(twin(stacked, "staging"), "PLAT014", key)


def test_a_peer_that_selects_no_pods(stacked: Path) -> None:
    sender, _ = _egress_services(stacked, "staging")
    set_values(stacked, sender, networkPolicy={"egressTo": {"services": ["no-such-service"]}})
    assert (
        "egress peer podSelector(app.kubernetes.io/name=no-such-service) selects no pods"
        in about(twin(stacked, "staging"), "PLAT014", sender)[0]
    )


def test_an_ip_block_outside_the_vpc(stacked: Path) -> None:
    key = first(stacked, "production", "NetworkPolicy")
    set_values(stacked, key, networkPolicy={"ingressFrom": {"cidrs": ["10.0.0.0/16"]}})
    assert any(
        "ipBlock 10.0.0.0/16 is outside the VPC (10.30.0.0/16, Pulumi.production.yaml)" in s
        for s in about(twin(stacked, "production"), "PLAT014", key)
    )


def test_ingress_hosts_outside_the_environments_domain(stacked: Path) -> None:
    key = first(stacked, "production", "Ingress")
    set_values(stacked, key, ingress={"host": "api.example.com"})
    assert any(
        "host api.example.com is covered by neither the certificate "
        "(*.production.platform.acme-corp.example) nor external-dns's domain filter" in s
        for s in about(twin(stacked, "production"), "PLAT015", key)
    )
    set_values(stacked, key, ingress={"host": "a.b.production.platform.acme-corp.example"})
    assert about(twin(stacked, "production"), "PLAT015", key) == [
        f"Ingress/{key.split('/')[1]}: host a.b.production.platform.acme-corp.example is not "
        "covered by the certificate (*.production.platform.acme-corp.example) "
        "(Pulumi.production.yaml platform:domain)"
    ]


def test_crd_defaults_inside_an_atomic_list_never_settle(stacked: Path) -> None:
    """The pinned ServiceMonitor CRD (prometheus-operator, monitoring.coreos.com/v1) defaults a
    relabeling's action inside the atomic endpoints list. (The pinned external-secrets 2.x
    ExternalSecret v1 defaults nothing there; its v1beta1, which did, is no longer served.)"""
    key = first(stacked, "dev", "ServiceMonitor")
    replace_in(
        stacked,
        "servicemonitor.yaml",
        "      interval: {{ .Values.serviceMonitor.interval }}\n",
        "      interval: {{ .Values.serviceMonitor.interval }}\n"
        "      metricRelabelings:\n"
        "        - sourceLabels: [__name__]\n"
        "          targetLabel: metric\n",
    )
    service = key.split("/")[1]
    assert about(twin(stacked, "dev"), "PLAT016", key) == [
        f"ServiceMonitor/{service}: spec.endpoints[0].metricRelabelings[0].action is defaulted "
        f"to 'replace' inside an atomic list: under ServerSideApply Application {service}-dev "
        "stays OutOfSync for good (write the default, or use the compare option "
        "ServerSideDiff=true)"
    ]
    # An unserved version (external-secrets 2.x keeps v1beta1 listed, unserved) defaults nothing.
    replace_in(
        stacked, "externalsecret.yaml", "external-secrets.io/v1\n", "external-secrets.io/v1beta1\n"
    )
    for field in ("conversionStrategy: Default", "decodingStrategy: None", "metadataPolicy: None"):
        replace_in(stacked, "externalsecret.yaml", f"        {field}\n", "")
    secret = first(stacked, "dev", "ExternalSecret")
    assert not any(
        "inside an atomic list" in s and s.startswith("ExternalSecret/")
        for s in about(twin(stacked, "dev"), "PLAT016", secret)
    )


def test_a_network_policy_port_without_protocol_never_settles(stacked: Path) -> None:
    key = first(stacked, "dev", "NetworkPolicy")
    path = stacked / "charts/service/templates/networkpolicy.yaml"
    text = path.read_text()
    path.write_text(text.replace("\n          protocol: TCP", ""))
    drift = about(twin(stacked, "dev"), "PLAT016", key)
    assert drift
    assert all("].protocol is defaulted to 'TCP' inside an atomic list" in s for s in drift)
    # Server-side diff compares with what the API server would store: it settles.
    template = stacked / "charts/gitops/templates/applicationset.yaml"
    text = template.read_text()
    template.write_text(
        text.replace(
            "      finalizers:\n        - resources-finalizer.argocd.argoproj.io\n    spec:\n"
            "      project: {{ $env }}\n",
            "      annotations:\n        argocd.argoproj.io/compare-options: ServerSideDiff=true\n"
            "      finalizers:\n        - resources-finalizer.argocd.argoproj.io\n    spec:\n"
            "      project: {{ $env }}\n",
        )
    )
    assert "ServerSideDiff=true" in template.read_text()
    assert not about(twin(stacked, "dev"), "PLAT016", key)


def test_pods_the_namespaces_pod_security_level_refuses(stacked: Path) -> None:
    key = first(stacked, "dev", "Deployment")
    path = stacked / "charts/service/templates/_pod.tpl"
    path.write_text(
        path.read_text().replace(
            "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"
        )
    )
    found = about(twin(stacked, "dev"), "PLAT017", key)
    assert found
    assert 'PodSecurity "restricted:latest"' in found[0]
    assert "allowPrivilegeEscalation: container" in found[0]


@pytest.mark.parametrize(
    ("pod", "level", "check"),
    [
        ({"hostNetwork": True, "containers": [{"name": "c"}]}, "baseline", "hostNamespaces"),
        (
            {"containers": [{"name": "c", "securityContext": {"privileged": True}}]},
            "baseline",
            "privileged",
        ),
        (
            {"volumes": [{"name": "v", "hostPath": {"path": "/"}}], "containers": []},
            "baseline",
            "hostPathVolumes",
        ),
        (
            {
                "containers": [
                    {"name": "c", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
                ]
            },
            "baseline",
            "capabilities_baseline",
        ),
        ({"containers": [{"name": "c", "ports": [{"hostPort": 80}]}]}, "baseline", "hostPorts"),
        ({"containers": [{"name": "c"}]}, "restricted", "runAsNonRoot"),
        ({"containers": [{"name": "c"}]}, "restricted", "seccompProfile_restricted"),
        ({"containers": [{"name": "c"}]}, "restricted", "capabilities_restricted"),
        (
            {"volumes": [{"name": "v", "nfs": {}}], "containers": []},
            "restricted",
            "restrictedVolumes",
        ),
    ],
)
def test_pod_security_checks_by_their_kubernetes_names(
    pod: Mapping[str, Any], level: str, check: str
) -> None:
    assert check in [found for found, _ in evaluate(pod, {}, level)]
    assert check not in [found for found, _ in evaluate(pod, {}, "privileged")]


def test_what_the_api_server_refuses(stacked: Path) -> None:
    key = first(stacked, "production", "HorizontalPodAutoscaler")
    set_values(
        stacked,
        key,
        resources={
            "requests": {"cpu": "2", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        autoscaling={"enabled": True, "minReplicas": 4, "maxReplicas": 3},
        podDisruptionBudget={"enabled": True, "minAvailable": 4},
    )
    found = " | ".join(about(twin(stacked, "production"), "PLAT018", key))
    assert "requests.cpu is above limits.cpu: the API server refuses it" in found
    assert "minReplicas 4 is above maxReplicas 3: the API server refuses it" in found
    assert "allows no voluntary disruption" in found
    assert "at its minimum of 4 replica(s): every node drain blocks" in found


def test_plat011_needs_the_stack_to_enforce_network_policies(stacked: Path) -> None:
    repo = load_repo(stacked)
    addons = Renderer(repo).addons(repo.environment("dev"))

    def found(enforced: bool | None) -> list[tuple[str, str]]:
        context = RuleContext(network_policy={"dev": enforced})
        return [
            f for f in workload_namespace_guarded(addons, context) if f[0] == "EksAddon/vpc-cni"
        ]

    assert found(False)
    assert "not enforced" in found(False)[0][1]
    assert found(True) == []
    assert found(None) == []  # no stack file: nothing to check it against
