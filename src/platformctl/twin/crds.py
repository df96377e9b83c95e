"""The CRDs the environment installs, at the versions it deploys: the rendered add-on charts'
own CRDs when they are rendered, else the pinned copies the schema check uses (``crds/``)."""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from platformctl.schemas import CRD_DIR

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Key = tuple[str, str]
Crds = Mapping[Key, Mapping[str, Any]]
_HEAD = 4096
CRD_KIND = "CustomResourceDefinition"


def _key(crd: Mapping[str, Any]) -> Key:
    spec = crd.get("spec") or {}
    return str(spec.get("group")), str((spec.get("names") or {}).get("kind"))


class Pinned(Mapping[Key, Mapping[str, Any]]):
    """The pinned CRDs by (group, kind), each file parsed only when asked for: together they
    are megabytes of YAML, and an environment needs a few of them."""

    def __init__(self) -> None:
        self._paths: dict[Key, Path] = {}
        self.scopes: dict[Key, str] = {}  # read with the names, without parsing the schemas
        for path in sorted(CRD_DIR.rglob("*.yaml")):
            with path.open(encoding="utf-8") as handle:
                head = handle.read(_HEAD)
            group = re.search(r"^\s+group:\s*(\S+)", head, re.MULTILINE)
            kind = re.search(r"^\s+kind:\s*(\S+)", head, re.MULTILINE)
            scope = re.search(r"^\s+scope:\s*(\S+)", head, re.MULTILINE)
            if group and kind:
                self._paths[(group[1], kind[1])] = path
                self.scopes[(group[1], kind[1])] = scope[1] if scope else "Namespaced"
        self._parsed: dict[Key, Mapping[str, Any]] = {}

    def __getitem__(self, key: Key) -> Mapping[str, Any]:
        if key not in self._parsed:
            path = self._paths[key]
            for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader):
                if (
                    isinstance(document, dict)
                    and document.get("kind") == "CustomResourceDefinition"
                ):
                    self._parsed[_key(document)] = document
            if key not in self._parsed:
                raise KeyError(key)
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
