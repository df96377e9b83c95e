"""The CRDs the environment installs, at the versions it deploys: the rendered add-on charts'
own CRDs when they are rendered, else the pinned copies the schema check uses (``crds/``)."""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from platformctl.schemas import CRD_DIR, _crd_index, _read_crd

Key = tuple[str, str]
Crds = Mapping[Key, Mapping[str, Any]]
_HEAD = 4096
CRD_KIND = "CustomResourceDefinition"
# `scope: Cluster` in YAML, `"scope": "Cluster"` in JSON
_SCOPE = re.compile(r'^\s+"?scope"?:\s*"?(\w+)', re.MULTILINE)


def _key(crd: Mapping[str, Any]) -> Key:
    spec = crd.get("spec") or {}
    return str(spec.get("group")), str((spec.get("names") or {}).get("kind"))


class Pinned(Mapping[Key, Mapping[str, Any]]):
    """The pinned CRDs by (group, kind), each file parsed only when asked for: together they
    are megabytes of YAML, and an environment needs a few of them."""

    def __init__(self, folder: Path = CRD_DIR) -> None:
        # (group, kind) from the file names (``<group>_<Kind>.json``, as ``platform vendor``
        # writes them, or ``.yaml``), the scope from the head: no schema is parsed here.
        self._paths: dict[Key, Path] = dict(_crd_index(folder))
        self.scopes: dict[Key, str] = {}
        for key, path in self._paths.items():
            with path.open(encoding="utf-8") as handle:
                head = handle.read(_HEAD)
            scope = _SCOPE.search(head)
            self.scopes[key] = scope[1] if scope else "Namespaced"
        self._parsed: dict[Key, Mapping[str, Any]] = {}

    def __getitem__(self, key: Key) -> Mapping[str, Any]:
        if key not in self._parsed:
            document = _read_crd(self._paths[key])
            if not isinstance(document, dict) or document.get("kind") != CRD_KIND:
                raise KeyError(key)
            self._parsed[key] = document
        return self._parsed[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


@cache
def pinned() -> Pinned:
    return Pinned()


def _scope(crd: Mapping[str, Any]) -> str:
    return str((crd.get("spec") or {}).get("scope") or "Namespaced")


def index(
    rendered: Iterable[Mapping[str, Any]], base: Crds | None = None
) -> tuple[Crds, dict[Key, str]]:
    """Pinned CRDs (or ``base``), overridden by the ones the environment's charts install, and
    the scope of each kind they define."""
    installed = {
        _key(document): document for document in rendered if document.get("kind") == CRD_KIND
    }
    lower: Crds = pinned() if base is None else base
    scopes = (
        dict(pinned().scopes) if base is None else {key: _scope(crd) for key, crd in base.items()}
    )
    scopes.update({key: _scope(crd) for key, crd in installed.items()})
    # ChainMap reads the pinned CRDs through __getitem__: only the ones asked for are parsed.
    return ChainMap(installed, lower), scopes  # type: ignore[arg-type]


def schema(crd: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    """The version's schema, if the CRD serves it: an unserved version is neither accepted nor
    defaulted by the API server (external-secrets 2.x still lists v1beta1, unserved)."""
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version and entry.get("served", True):
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
