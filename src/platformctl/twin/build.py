"""From rendered targets to the World: bootstrap objects, generated Applications, their contents."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from platformctl.model import Environment, Repo
from platformctl.render import ADDONS_TARGET, GITOPS_TARGET
from platformctl.twin import crds as crd_index
from platformctl.twin.bootstrap import ARGOCD_KINDS, EKS_POD_PORTS, Bootstrap, bootstrap_of
from platformctl.twin.controllers import made_by_controllers
from platformctl.twin.world import (
    App,
    GeneratorFailure,
    Target,
    Unmodelled,
    World,
    annotations_of,
    fill_template,
    generate,
    metadata,
    position,
)

# An app of apps nests at most this deep (Argo CD has no limit; a loop would be a bug here).
MAX_DEPTH = 4


def _bootstrap_documents(environment: Environment, bootstrap: Bootstrap) -> list[dict[str, Any]]:
    """What exists before the first sync, as objects: namespaces, EKS's storage class and DNS
    pods, Argo CD's CRDs and the cluster secret."""
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/metadata.name": name, **labels},
            },
        }
        for name, labels in bootstrap.namespaces.items()
    ]
    documents += [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "kubernetes.io/aws-ebs",
        }
        for name in bootstrap.storage_classes
    ]
    documents += [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": _containers(name)},
                }
            },
        }
        for namespace, name, labels in bootstrap.pods
    ]
    documents += [
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{kind.lower()}s.argoproj.io"},
            "spec": {"group": "argoproj.io", "names": {"kind": kind}, "scope": "Namespaced"},
        }
        for kind in ARGOCD_KINDS
    ]
    # The API server's own Service, which every cluster has (kube-apiserver keeps it).
    documents.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 443}]},
        }
    )
    documents.append(dict(bootstrap.cluster_secret))
    return documents


def _containers(pod: str) -> list[dict[str, Any]]:
    """The container of an EKS add-on's pods, with the ports it declares (none if unknown)."""
    ports = [
        {"name": name, "containerPort": port, "protocol": protocol}
        for name, port, protocol in EKS_POD_PORTS.get(pod, ())
    ]
    return [{"name": pod, "ports": ports}] if ports else []


def _resolve(chart: str, value_file: str) -> str:
    """A value file as Argo CD resolves it: relative to the chart's folder."""
    parts: list[str] = []
    for part in (PurePosixPath(chart) / value_file).parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


class _Renderers:
    """Which target renders an Application's source, indexed once: every Application an
    ApplicationSet generates asks, and a fleet has one per service."""

    def __init__(self, repo: Repo, targets: Mapping[str, Target]) -> None:
        # (chart, values file) -> the first such target, with its position among the targets
        self.releases: dict[tuple[str, str], tuple[int, Target]] = {}
        self.plain: dict[str, list[Target]] = {}
        for order, target in enumerate(targets.values()):
            release = target.rendered.release
            if release is None:
                self.plain.setdefault(target.chart, []).append(target)
            else:
                key = (target.chart, str(release.values_file.relative_to(repo.root)))
                self.releases.setdefault(key, (order, target))

    def of(self, spec: Mapping[str, Any]) -> Target | None:
        """Same chart, and for charts rendered once per values file (the services), the first
        target whose values file the source names."""
        source = spec.get("source") or {}
        chart = str(source.get("path") or "")
        files = {
            _resolve(chart, str(f)) for f in (source.get("helm") or {}).get("valueFiles") or []
        }
        named = [self.releases[(chart, f)] for f in files if (chart, f) in self.releases]
        if named:
            return min(named, key=lambda found: found[0])[1]
        plain = self.plain.get(chart, [])
        return plain[0] if len(plain) == 1 else None


def build(
    repo: Repo,
    environment: Environment,
    targets: Mapping[str, Target],
    bootstrap: Bootstrap | None = None,
    pinned: crd_index.Crds | None = None,
) -> World:
    """The environment's World from its rendered targets (keyed as the gate keys them), the
    bootstrap (from the model unless given) and the pinned CRDs (``crds/`` unless given)."""
    bootstrap = bootstrap or bootstrap_of(repo, environment)
    world = World(environment, bootstrap)
    every = [d for t in targets.values() for d in t.rendered.documents]
    crds, world.scopes = crd_index.index(every, pinned)
    world.crds = crds
    gitops_key = f"{environment.name}/{GITOPS_TARGET}"
    for document in _bootstrap_documents(environment, bootstrap):
        world.add(document, None, gitops_key)
    gitops = targets.get(gitops_key)
    if gitops is None:
        return world
    for document in gitops.rendered.documents:
        world.add(document, None, gitops_key)
    fields = crd_index.git_file_fields(crds)
    renderers = _Renderers(repo, targets)
    used: set[str] = set()
    complete = True  # every ApplicationSet's Applications are known
    for appset in gitops.rendered.documents:
        if appset.get("kind") != "ApplicationSet":
            continue
        resource = f"ApplicationSet/{metadata(appset).get('name')}"
        template = (appset.get("spec") or {}).get("template") or {}
        try:
            generated = [
                (fill_template(template, params), made_from)
                for params, made_from in generate(repo, environment, bootstrap, appset, fields)
            ]
        except Unmodelled as error:
            world.notes.append((gitops_key, resource, f"the twin cannot model {error}"))
            complete = False
            continue
        except GeneratorFailure as error:
            world.notes.append(
                (
                    gitops_key,
                    resource,
                    f"cannot generate from {error}: Argo CD's generator fails, so the "
                    "ApplicationSet creates, updates and deletes no Application until the file "
                    "parses",
                )
            )
            complete = False
            continue
        for document, made_from in generated:
            name = str(metadata(document).get("name"))
            spec = document.get("spec") or {}
            target = renderers.of(spec)
            if target is None or target.rendered.key in used:
                world.notes.append(
                    (
                        gitops_key,
                        resource,
                        f"generates Application '{name}' from {made_from}, which no target "
                        "renders: Argo CD would deploy it anyway (exclude the file, or render it)",
                    )
                )
                continue
            used.add(target.rendered.key)
            app = App(
                name,
                target.rendered.key,
                spec,
                rendered=True,
                made_by=resource,
                annotations=annotations_of(document),
                finalizers=tuple(str(f) for f in metadata(document).get("finalizers") or []),
            )
            world.apps[name] = app
            _contents(world, app, target, targets, 1)
    if complete:
        world.notes += _undeployed(repo, targets, used)
    return world


def _undeployed(
    repo: Repo, targets: Mapping[str, Target], used: set[str]
) -> list[tuple[str, str, str]]:
    """Each release the gate rendered that no generated Application deploys (a files entry or
    selector leaves its values file out): what the gate checked would never reach the cluster."""
    return [
        (
            key,
            str(release.values_file.relative_to(repo.root)),
            "no ApplicationSet generates an Application from it: Argo CD would not deploy what "
            "the gate checked (a files entry or a selector leaves it out)",
        )
        for key, target in targets.items()
        if (release := target.rendered.release) is not None and key not in used
    ]


def _contents(
    world: World, app: App, target: Target, targets: Mapping[str, Target], depth: int
) -> None:
    for document in target.rendered.documents:
        world.add(document, app, target.rendered.key)
        for made in made_by_controllers(document):
            world.add(made, app, target.rendered.key)
        if document.get("kind") != "Application" or depth >= MAX_DEPTH:
            continue
        where = position(document)
        if where is None:
            continue
        name = str(metadata(document).get("name"))
        own = targets.get(f"{world.environment.name}/{ADDONS_TARGET}/{name}")
        child = App(
            name,
            own.rendered.key if own else target.rendered.key,
            document.get("spec") or {},
            parent=app.name,
            phase=where[0],
            wave=where[1],
            rendered=own is not None,
            made_by=f"Application/{app.name}",
            annotations=annotations_of(document),
            finalizers=tuple(str(f) for f in metadata(document).get("finalizers") or []),
        )
        world.apps[name] = child
        if own is not None:
            _contents(world, child, own, targets, depth + 1)
