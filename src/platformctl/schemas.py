"""Offline schema validation of rendered manifests.

Core kinds use kubernetes-validate's bundled strict schemas for the environment's Kubernetes
version; custom resources use the CRDs in ``crds/``, taken from the pinned versions that are
deployed (the vendored charts, Argo CD's chart as the stacks install it: see
``platformctl.vendor.refresh_crds``), so a field of a newer version is reported.
kubernetes-validate's own ``validate()`` reloads and recompiles the schema for every document
(~14 ms each); here each validator is compiled once per (version, apiVersion, kind) and reused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from platformctl.documents import describe, key_text
from platformctl.errors import EnvironmentProblem

if TYPE_CHECKING:  # imported when a schema is first compiled: verify often needs none
    from jsonschema import Draft202012Validator
    from referencing import Registry

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CRD_DIR = Path(str(resources.files("platformctl").joinpath("crds")))


@dataclass(frozen=True)
class SchemaFinding:
    """One document that does not match its schema."""

    kind: str
    name: str
    path: str
    message: str


def _kubernetes_schema_dir(version: str) -> Path:
    """The bundled strict schema folder for the newest version not newer than ``version``."""
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    wanted = tuple(int(part) for part in version.split(".")[:2])
    candidates = []
    for folder in root.iterdir():
        match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", folder.name)
        if match and (int(match[1]), int(match[2])) <= wanted:
            candidates.append(((int(match[1]), int(match[2])), folder))
    if not candidates:
        raise EnvironmentProblem(
            f"kubernetes-validate has no schemas for Kubernetes {version}",
            hint="upgrade kubernetes-validate (uv lock --upgrade-package kubernetes-validate)",
        )
    return max(candidates)[1]


@cache
def _definitions_registry(schema_dir: Path) -> Registry:
    from referencing import Registry, Resource

    definitions = json.loads((schema_dir / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


def _strict(schema: Any) -> Any:
    """CRD schemas allow unknown fields (the API server prunes them); a typo should fail here."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    if strict.get("nullable"):
        kind = strict.get("type")
        if isinstance(kind, str):
            strict["type"] = [kind, "null"]
    return strict


@cache
def _crd_index(folder: Path = CRD_DIR) -> dict[tuple[str, str], Path]:
    """(group, kind) -> CRD file, from the file names (``<group>_<Kind>.json`` as
    ``platform vendor`` writes them, or ``.yaml``) without parsing any."""
    index: dict[tuple[str, str], Path] = {}
    for path in sorted([*folder.glob("*_*.json"), *folder.glob("*_*.yaml")]):
        group, _, kind = path.stem.rpartition("_")
        index[(group, kind)] = path
    return index


def _read_crd(path: Path) -> Any:
    """orjson for the vendored JSON: a command that renders reads every CRD (its API versions)."""
    if path.suffix == ".json":
        return orjson.loads(path.read_bytes())
    return yaml.load(path.read_text(), Loader=_Loader)


@cache
def crd_api_versions() -> list[str]:
    """What a cluster with the pinned CRDs serves beyond the built-in APIs, as Argo CD passes
    it to ``helm template --api-versions``: ``group/version`` and ``group/version/Kind``."""
    served = set()
    for path in _crd_index().values():
        crd = _read_crd(path)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for entry in crd["spec"]["versions"]:
            if entry.get("served", True):
                served |= {f"{group}/{entry['name']}", f"{group}/{entry['name']}/{kind}"}
    return sorted(served)


@cache
def _crd_validator(path: Path, version: str) -> Draft202012Validator | None:
    crd = _read_crd(path)
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema = _strict(entry["schema"]["openAPIV3Schema"])
            # metadata is checked by the API server's own rules, not the CRD's schema.
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            from jsonschema import Draft202012Validator

            return Draft202012Validator(schema)
    return None


class SchemaValidator:
    """Validates documents for one Kubernetes version, compiling each schema once."""

    def __init__(self, kubernetes_version: str, crd_dir: Path = CRD_DIR) -> None:
        self.kubernetes_version = kubernetes_version
        self.crd_dir = crd_dir
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}

    def _core_validator(self, api_version: str, kind: str) -> Draft202012Validator | None:
        schema_dir = _kubernetes_schema_dir(self.kubernetes_version)
        api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        path = schema_dir / f"{kind.lower()}-{api}.json"
        if not path.is_file():
            return None
        schema = json.loads(path.read_text())
        from jsonschema import Draft202012Validator

        return Draft202012Validator(schema, registry=_definitions_registry(schema_dir))

    def validator(self, api_version: str, kind: str) -> Draft202012Validator | None:
        key = (api_version, kind)
        if key not in self._validators:
            group, _, version = api_version.rpartition("/")
            crd = _crd_index(self.crd_dir).get((group, kind)) if group else None
            self._validators[key] = (
                _crd_validator(crd, version) if crd else self._core_validator(api_version, kind)
            )
        return self._validators[key]

    def check(self, document: dict[str, Any]) -> list[SchemaFinding]:
        api_version = str(document.get("apiVersion", ""))
        kind = str(document.get("kind", ""))
        name = str((document.get("metadata") or {}).get("name", "?"))
        validator = self.validator(api_version, kind)
        if validator is None:
            return [
                SchemaFinding(
                    kind,
                    name,
                    "",
                    f"no schema for {api_version} {kind} in Kubernetes "
                    f"{self.kubernetes_version} or the vendored CRDs",
                )
            ]
        findings = []
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path)):
            key_path, reason = describe(error)
            findings.append(
                SchemaFinding(kind, name, key_text(key_path) if key_path else "", reason)
            )
        return findings
