"""An add-on's declared Pod Security level against what its namespace enforces, where no
Namespace of the environment labels it (kube-system is EKS's: it enforces nothing there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import edit_yaml
from tests.twin.conftest import about, twin


def test_the_addons_declarations_match_what_their_namespaces_enforce(stacked: Path) -> None:
    found = [f for f in about(twin(stacked, "dev"), "PLAT017") if f.startswith("Application/")]
    assert not found, found


def test_restricted_declared_in_kube_system_is_reported(stacked: Path) -> None:
    """The values as they were: restricted claimed for the load balancer controller."""

    def change(data: Any) -> None:
        data["addons"]["aws-load-balancer-controller"]["podSecurity"] = "restricted"

    edit_yaml(stacked / "charts/addons/values.yaml", change)
    found = [f for f in about(twin(stacked, "dev"), "PLAT017") if f.startswith("Application/")]
    assert len(found) == 1, found
    assert found[0].startswith("Application/aws-load-balancer-controller: declares Pod Security")
    assert "namespace kube-system, which no Namespace of this environment labels" in found[0]
    assert 'it enforces "privileged"' in found[0]


def test_a_managed_namespace_shared_with_a_privileged_addon_is_not_reported(
    stacked: Path,
) -> None:
    """prometheus-operator-crds needs restricted in monitoring, which this chart labels
    privileged for node-exporter: a looser level it chose, not a false claim."""
    found = about(twin(stacked, "dev"), "PLAT017")
    assert not [f for f in found if f.startswith("Application/prometheus-operator-crds")]
