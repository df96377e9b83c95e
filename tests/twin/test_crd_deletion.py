"""PLAT020: an Application whose deletion (resources finalizer) or automated prune deletes
CustomResourceDefinitions, and with them every custom resource of their kinds, as Argo CD's
documented sync options decide (Prune=false, Delete=false, helm.sh/resource-policy: keep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import edit_yaml
from tests.twin.conftest import about, twin


def crd(name: str, group: str, **annotations: str) -> dict[str, Any]:
    plural = name.split(".", 1)[0]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "group": group,
            "names": {"kind": plural.title()[:-1], "plural": plural},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }


ES_CRD = crd("externalsecrets.external-secrets.io", "external-secrets.io")


def test_the_crd_only_addons_neither_prune_nor_cascade(stacked: Path) -> None:
    """External Secrets' CRDs as their add-on deploys them: kept on either path."""
    found = about(twin(stacked, "dev", **{"addons__external-secrets-crds": [ES_CRD]}), "PLAT020")
    assert not found, found


def test_a_crd_only_addon_with_the_finalizer_and_prune_is_reported(stacked: Path) -> None:
    """The template as it was: resources finalizer and prune: true on the CRDs' Application."""

    def change(data: Any) -> None:
        data["addons"]["external-secrets-crds"]["crdsOnly"] = False

    edit_yaml(stacked / "charts/addons/values.yaml", change)
    found = about(twin(stacked, "dev", **{"addons__external-secrets-crds": [ES_CRD]}), "PLAT020")
    assert any("deleting Application external-secrets-crds" in f for f in found), found
    assert any("holds only CRDs and prunes automatically" in f for f in found), found
    assert all(f.startswith("CustomResourceDefinition/externalsecrets.") for f in found)


def test_a_controller_charts_crds_need_keep_or_delete_false(stacked: Path) -> None:
    """A chart that mixes its controller and CRDs: its prune is not reported (the rest must
    prune), its cascade is unless the CRD says keep (Argo CD reads it as Delete=false)."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "cert-manager", "namespace": "cert-manager"},
        "spec": {"selector": {}, "template": {"spec": {"containers": []}}},
    }
    bare = crd("certificates.cert-manager.io", "cert-manager.io")
    kept = crd("issuers.cert-manager.io", "cert-manager.io", **{"helm.sh/resource-policy": "keep"})
    option = crd(
        "orders.acme.cert-manager.io",
        "acme.cert-manager.io",
        **{"argocd.argoproj.io/sync-options": "Prune=false, Delete=false"},
    )
    found = about(
        twin(stacked, "dev", **{"addons__cert-manager": [deployment, bare, kept, option]}),
        "PLAT020",
    )
    assert len(found) == 1, found
    assert found[0].startswith("CustomResourceDefinition/certificates.cert-manager.io: deleting")
