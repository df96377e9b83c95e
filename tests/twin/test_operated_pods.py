"""Prometheus and Alertmanager pods are made by prometheus-operator from their custom resources:
Pod Security is evaluated on the pods it makes (its containers, patched by the resource's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.render import Renderer
from platformctl.twin.pss import evaluate, operated_pod
from platformctl.twin.world import Obj
from tests.conftest import PROJECT_ROOT
from tests.twin.conftest import about, twin

RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def prometheus(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "seeded", "namespace": namespace},
        "spec": spec,
    }


def obj(document: dict[str, Any]) -> Obj:
    meta = document["metadata"]
    return Obj(
        document,
        document["kind"],
        "monitoring.coreos.com",
        meta["namespace"],
        meta["name"],
        "a",
        "t",
    )


def test_a_prometheus_without_a_pod_context_in_a_restricted_namespace(stacked: Path) -> None:
    """The operator gives its containers no user and the pod the resource's (empty) context."""
    found = about(
        twin(stacked, "dev", **{"addons__kube-prometheus-stack": [prometheus("observability")]}),
        "PLAT017",
    )
    assert any(f.startswith("Prometheus/seeded: the pods prometheus-operator") for f in found)
    assert any("runAsNonRoot" in f for f in found), found
    assert any("seccompProfile_restricted" in f for f in found), found


def test_a_container_patch_that_loosens_the_operators_container(stacked: Path) -> None:
    seeded = prometheus(
        "observability",
        securityContext=RESTRICTED_POD,
        containers=[{"name": "prometheus", "securityContext": {"allowPrivilegeEscalation": True}}],
    )
    found = about(twin(stacked, "dev", **{"addons__kube-prometheus-stack": [seeded]}), "PLAT017")
    assert len(found) == 1, found
    assert "allowPrivilegeEscalation: container" in found[0]
    assert '"prometheus"' in found[0]


def test_the_operators_own_containers_pass_restricted() -> None:
    operated = operated_pod(obj(prometheus("x", securityContext=RESTRICTED_POD)))
    assert operated is not None
    pod, meta = operated
    assert {c["name"] for c in pod["containers"]} == {"prometheus", "config-reloader"}
    assert [c["name"] for c in pod["initContainers"]] == ["init-config-reloader"]
    assert list(evaluate(pod, meta, "restricted")) == []


@pytest.mark.parametrize("environment", ["dev", "production"])
def test_the_monitoring_stacks_operated_pods_are_restricted(environment: str) -> None:
    """What the values give Prometheus and Alertmanager, read back from the rendered resources:
    restricted-grade, though the monitoring namespace enforces only privileged (for
    node-exporter), so a loosened value is caught here and not only by a level it meets."""
    repo = load_repo(PROJECT_ROOT)
    renderer = Renderer(repo)
    (job,) = [
        j
        for j in renderer.addon_chart_jobs(repo.environment(environment))
        if j.name.endswith("/kube-prometheus-stack")
    ]
    operated = [
        d for d in renderer.render(job).documents if d["kind"] in {"Prometheus", "Alertmanager"}
    ]
    assert {d["kind"] for d in operated} == {"Prometheus", "Alertmanager"}
    for document in operated:
        found = operated_pod(obj(document))
        assert found is not None
        pod, meta = found
        assert list(evaluate(pod, meta, "restricted")) == [], document["kind"]
