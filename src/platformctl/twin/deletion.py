"""What deleting or pruning an Application deletes, as Argo CD's documented sync options decide
(argo-cd docs/user-guide/sync-options.md, app_deletion.md): a CustomResourceDefinition deleted
takes every custom resource of its kind in the cluster with it.

- Deleting an Application with ``resources-finalizer.argocd.argoproj.io`` (or its
  ``/background`` variant) cascades to its resources, except those with ``Delete=false`` (on the
  resource, or in the Application's ``syncOptions``) or ``helm.sh/resource-policy: keep``, which
  Argo CD treats as ``Delete=false`` since 2.8. Disabling an add-on is such a deletion: the
  add-ons Application prunes the add-on's Application.
- An automated sync with ``prune: true`` deletes a resource that leaves the source, except with
  ``Prune=false`` (the resource's option overrides the Application's). Checked for Applications
  that hold only CRDs (what a CRD Application is for): in a controller's chart a CRD leaves the
  source only with a chart bump that drops it, and pruning the rest is what keeps it right.
"""

from __future__ import annotations

from collections.abc import Iterator

from platformctl.twin.world import Obj, World, annotations_of, options

FINALIZER = "resources-finalizer.argocd.argoproj.io"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
HELM_KEEP = "helm.sh/resource-policy"


def _cascades(finalizers: tuple[str, ...]) -> bool:
    return any(f == FINALIZER or f.startswith(f"{FINALIZER}/") for f in finalizers)


def crd_deletions(world: World) -> Iterator[tuple[Obj, str, str]]:
    """PLAT020: CRDs an Application's deletion or prune would delete."""
    for app in world.apps.values():
        held = [o for o in world.objects if o.app == app.name]
        crds = [o for o in held if o.kind == "CustomResourceDefinition"]
        if not crds:
            continue
        for crd in crds:
            notes = annotations_of(crd.document)
            own = options(notes.get(SYNC_OPTIONS))
            kept = (
                "Delete=false" in own
                or "Delete=false" in app.sync_options
                or str(notes.get(HELM_KEEP, "")).strip() == "keep"
            )
            if _cascades(app.finalizers) and not kept:
                yield (
                    crd,
                    "PLAT020",
                    f"deleting Application {app.name} (its {FINALIZER}; disabling it does) "
                    f"deletes this CRD and every {crd.name} in the cluster: no Delete=false "
                    "on it or the Application, no helm.sh/resource-policy: keep",
                )
            only_crds = len(crds) == len(held)
            pruned = (
                app.prunes
                and "Prune=false" not in own
                and ("Prune=false" not in app.sync_options or "Prune=true" in own)
            )
            if only_crds and pruned:
                yield (
                    crd,
                    "PLAT020",
                    f"Application {app.name} holds only CRDs and prunes automatically: a CRD "
                    f"that leaves its source is deleted with every {crd.name} in the cluster "
                    "(set Prune=false on the Application or the CRD)",
                )
