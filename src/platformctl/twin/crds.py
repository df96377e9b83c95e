"""The CRDs the environment installs, at the versions it deploys: the rendered add-on charts'
own CRDs when they are rendered, else the pinned copies the schema check uses (``crds/``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import yaml

from platformctl.schemas import CRD_DIR

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Crds = dict[tuple[str, str], Mapping[str, Any]]


@cache
def pinned() -> Crds:
    index: Crds = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                spec = document.get("spec") or {}
                index[(str(spec.get("group")), str((spec.get("names") or {}).get("kind")))] = (
                    document
                )
    return index


def index(rendered: Iterable[Mapping[str, Any]], base: Crds | None = None) -> Crds:
    """Pinned CRDs (or ``base``), overridden by the ones the environment's charts install."""
    found = dict(pinned() if base is None else base)
    for document in rendered:
        if document.get("kind") == "CustomResourceDefinition":
            spec = document.get("spec") or {}
            found[(str(spec.get("group")), str((spec.get("names") or {}).get("kind")))] = document
    return found


def schema(crd: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version:
            found: Mapping[str, Any] | None = (entry.get("schema") or {}).get("openAPIV3Schema")
            return found
    return None


def git_file_fields(crds: Crds) -> frozenset[str]:
    """The fields a git files generator entry has in the deployed ApplicationSet CRD."""
    crd = crds.get(("argoproj.io", "ApplicationSet"))
    if crd is None:
        return frozenset({"path"})
    fields: set[str] = set()
    for entry in (crd.get("spec") or {}).get("versions") or []:
        node: Any = (entry.get("schema") or {}).get("openAPIV3Schema") or {}
        for step in ("spec", "generators", "git", "files"):
            node = (node.get("properties") or {}).get(step) or {}
            node = node.get("items", node)
        fields.update((node.get("properties") or {}).keys())
    return frozenset(fields)
