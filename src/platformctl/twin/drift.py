"""Perpetual OutOfSync: fields the API server defaults that Argo CD's diff never accepts.

With ``ServerSideApply=true`` and without server-side diff, Argo CD predicts the live object
by merging the desired one into it with the structured-merge rules of its schema: a map keeps
live fields the desired object leaves out, but an atomic list (a CRD's default list type) is
replaced whole, so a default the API server writes inside one is a difference on every
comparison. Defaults come from the CRDs at the deployed versions and, for built-in kinds,
the few defaults inside atomic lists that charts commonly omit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from platformctl.twin import crds as crd_index
from platformctl.twin.world import (
    COMPARE_OPTIONS,
    SYNC_OPTIONS,
    Obj,
    World,
    annotations_of,
    options,
)

_PORTS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "ports": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"protocol": {"type": "string", "default": "TCP"}},
                },
            }
        },
    },
}
# networking.k8s.io/v1 NetworkPolicySpec: ingress and egress are atomic lists; a port's
# protocol defaults to TCP.
BUILTIN_DEFAULTS: Mapping[tuple[str, str], Mapping[str, Any]] = {
    ("networking.k8s.io", "NetworkPolicy"): {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"ingress": _PORTS, "egress": _PORTS}}
        },
    },
}


def defaults_in_atomic_lists(
    schema: Mapping[str, Any], value: Any, path: str = "", atomic: bool = False
) -> Iterator[tuple[str, Any]]:
    """(path, default) for each default the API server would add inside an atomic list."""
    if isinstance(value, Mapping):
        for key, sub in (schema.get("properties") or {}).items():
            where = f"{path}.{key}" if path else key
            if key in value:
                yield from defaults_in_atomic_lists(sub, value[key], where, atomic)
            elif "default" in sub and atomic:
                yield where, sub["default"]
    elif isinstance(value, list):
        items = schema.get("items") or {}
        inside = atomic or schema.get("x-kubernetes-list-type", "atomic") == "atomic"
        for index, item in enumerate(value):
            yield from defaults_in_atomic_lists(items, item, f"{path}[{index}]", inside)


def _ignored(app_spec: Mapping[str, Any], obj: Obj, path: str) -> bool:
    pointer = "/" + path.replace(".", "/").replace("[", "/").replace("]", "")
    for entry in app_spec.get("ignoreDifferences") or []:
        if entry.get("kind") != obj.kind or entry.get("group", "") != obj.group:
            continue
        if entry.get("name") not in (None, obj.name):
            continue
        if any(pointer.startswith(str(p)) for p in entry.get("jsonPointers") or []):
            return True
        leaf = path.rsplit(".", 1)[-1]
        if any(leaf in str(e) for e in entry.get("jqPathExpressions") or []):
            return True
    return False


def perpetual_diffs(world: World) -> Iterator[tuple[Obj, str, str]]:
    crds = world.crds
    for obj in world.objects:
        if obj.app is None:
            continue
        app = world.apps[obj.app]
        sync = app.sync_options | options(annotations_of(obj.document).get(SYNC_OPTIONS))
        compare = options(annotations_of(obj.document).get(COMPARE_OPTIONS))
        compare |= options(app.annotations.get(COMPARE_OPTIONS))
        if "ServerSideApply=true" not in sync or "ServerSideDiff=true" in compare:
            continue
        schema = BUILTIN_DEFAULTS.get((obj.group, obj.kind))
        crd = crds.get((obj.group, obj.kind))
        if crd is not None:
            version = str(obj.document.get("apiVersion", "")).rpartition("/")[2]
            schema = crd_index.schema(crd, version)
        if schema is None:
            continue
        for path, default in defaults_in_atomic_lists(schema, obj.document):
            if _ignored(app.spec, obj, path):
                continue
            yield (
                obj,
                "PLAT016",
                (
                    f"{path} is defaulted to {default!r} inside an atomic list: under "
                    f"ServerSideApply Application {app.name} stays OutOfSync for good (write the "
                    "default, or use the compare option ServerSideDiff=true)"
                ),
            )
