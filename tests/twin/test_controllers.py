"""Objects controllers make at run time: the twin counts them as provided, and only when the
rendered manifests ask the controller for them (so each test also removes the ask)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tests.twin.conftest import about, twin
from tests.twin.test_sync import application, deployment, meta, namespace

ENV = "dev"


def certgen_job(phase_annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "admission-create",
            "namespace": "monitoring",
            "annotations": phase_annotations,
        },
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "create",
                            "args": [
                                "create",
                                "--host=operator,operator.monitoring.svc",
                                "--namespace=monitoring",
                                "--secret-name=admission",
                            ],
                        }
                    ]
                }
            }
        },
    }


def operator_addons(*extra: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    operator = deployment(
        "operator",
        "monitoring",
        volumeMounts=[{"name": "tls", "mountPath": "/cert"}],
    )
    operator["spec"]["template"]["spec"]["volumes"] = [
        {"name": "tls", "secret": {"secretName": "admission"}}
    ]
    return {
        "addons": [
            namespace("monitoring"),
            application("stack", 0, "kube-prometheus-stack", "monitoring"),
        ],
        "addons__stack": [operator, *extra],
    }


def admission_findings(findings: list[Any]) -> list[str]:
    return [
        s
        for s in about(findings, "PLAT012", f"{ENV}/addons/stack")
        + about(findings, "PLAT013", f"{ENV}/addons/stack")
        if "Secret admission" in s
    ]


def test_a_presync_certgen_job_provides_the_secret_a_deployment_mounts(stacked: Path) -> None:
    assert admission_findings(twin(stacked, ENV, **operator_addons())), "nothing provides it"
    presync = certgen_job({"helm.sh/hook": "pre-install,pre-upgrade"})
    assert admission_findings(twin(stacked, ENV, **operator_addons(presync))) == []


def test_a_certgen_job_in_the_sync_phase_comes_too_late_for_an_earlier_kind(stacked: Path) -> None:
    """Jobs come after Deployments in one wave's kind order: the Secret is not there in time."""
    late = certgen_job({"argocd.argoproj.io/sync-wave": "1"})
    stalls = admission_findings(twin(stacked, ENV, **operator_addons(late)))
    assert stalls
    assert all("provides only after it" in s for s in stalls), stalls


def test_a_job_that_is_not_asked_to_create_provides_nothing(stacked: Path) -> None:
    patch = certgen_job({"helm.sh/hook": "pre-install"})
    container = patch["spec"]["template"]["spec"]["containers"][0]
    container["args"] = ["patch", *container["args"][1:]]
    assert admission_findings(twin(stacked, ENV, **operator_addons(patch)))


def kubelet_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta("kubelet", "monitoring"),
        "spec": {
            "selector": {
                "matchLabels": {"app.kubernetes.io/name": "kubelet", "k8s-app": "kubelet"}
            },
            "namespaceSelector": {"matchNames": ["kube-system"]},
            "endpoints": [{"port": "https-metrics"}, {"port": "cadvisor"}],
        },
    }


def apiserver_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta("apiserver", "monitoring"),
        "spec": {
            "selector": {"matchLabels": {"component": "apiserver", "provider": "kubernetes"}},
            "namespaceSelector": {"matchNames": ["default"]},
            "endpoints": [{"port": "https"}],
        },
    }


def monitor_findings(findings: list[Any], name: str) -> list[str]:
    return [
        s
        for s in about(findings, "PLAT013")
        if s.startswith(f"ServiceMonitor/{name}:") and ("selects no Service" in s or "port" in s)
    ]


def test_the_operators_kubelet_service_is_what_the_kubelet_monitor_scrapes(stacked: Path) -> None:
    addons = operator_addons(kubelet_monitor())
    assert monitor_findings(twin(stacked, ENV, **addons), "kubelet"), "no kubelet Service asked for"
    asked = copy.deepcopy(addons)
    operator = asked["addons__stack"][0]["spec"]["template"]["spec"]["containers"][0]
    operator["args"] = ["--kubelet-service=kube-system/stack-kubelet", "--kubelet-endpoints=true"]
    assert monitor_findings(twin(stacked, ENV, **asked), "kubelet") == []


def test_the_api_servers_own_service_exists_in_every_cluster(stacked: Path) -> None:
    assert (
        monitor_findings(twin(stacked, ENV, **operator_addons(apiserver_monitor())), "apiserver")
        == []
    )
    wrong = apiserver_monitor()
    wrong["spec"]["endpoints"] = [{"port": "http"}]
    assert monitor_findings(twin(stacked, ENV, **operator_addons(wrong)), "apiserver")
