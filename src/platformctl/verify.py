"""The verify gate: render every target, validate schemas, run checkov and the project rules.

Schema and checkov verdicts are cached per target under ``.platform-cache/`` by a hash of the
rendered documents with image fields normalized. The normalization keeps each image's *shape*
(repository; whether it has a tag, whether that tag is ``latest``; whether it has a digest),
which is everything checkov's image checks read (CKV_K8S_15 reads digest presence and the tag's
shape; the dashboard and tiller checks read the repository; CKV_K8S_14 and CKV_K8S_43 are
replaced by project rules). So a promotion, which changes only tag and digest, hits the cache
and does not pay checkov's start-up; the project rules, which do read the actual image, run
every time. Anything else that changes the rendered output (a value, a template) or the
engines (checkov's version, the schemas, this code) changes the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from platformctl.model import Repo
from platformctl.policy.checkov_engine import REPLACED_CHECKS, checkov_version, run_checkov
from platformctl.policy.exceptions import (
    Excepted,
    PolicyException,
    apply_exceptions,
    load_exceptions,
)
from platformctl.policy.findings import Finding
from platformctl.policy.rules import (
    RuleContext,
    allowed_kinds,
    gate_objectives,
    run_rules,
    source_repos,
)
from platformctl.render import GITOPS_TARGET, Rendered, Renderer
from platformctl.schemas import CRD_DIR, SchemaValidator

CACHE_DIR = ".platform-cache"
CACHE_FILE = "verify.json"
Progress = Callable[[str, int, int], None]
_IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@(?P<digest>.+))?$")
_ENGINE_SOURCES = (
    "schemas.py",
    "verify.py",
    "policy/checkov_engine.py",
    "render.py",
    "bridge.py",
)


def image_shape(image: str) -> str:
    """An image reference with tag and digest values blanked but their presence kept."""
    match = _IMAGE.match(image)
    if match is None:
        return image
    tag = match["tag"]
    shape = match["name"]
    if tag is not None:
        shape += ":latest" if tag == "latest" else ":<tag>"
    if match["digest"] is not None:
        shape += "@<digest>"
    return shape


def _normalized(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _normalized(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(item, key) for item in value]
    if key == "image" and isinstance(value, str):
        return image_shape(value)
    if key == "app.kubernetes.io/version":
        return "<version>"
    return value


def engine_fingerprint() -> str:
    """Changes whenever a cached verdict could change for the same manifests."""
    digest = hashlib.sha256()
    digest.update(checkov_version().encode())
    digest.update(version("kubernetes-validate").encode())
    digest.update(json.dumps(sorted(REPLACED_CHECKS)).encode())
    package = Path(__file__).parent
    for name in _ENGINE_SOURCES:
        digest.update((package / name).read_bytes())
    for crd in sorted(CRD_DIR.glob("*.yaml")):
        digest.update(crd.name.encode())
        digest.update(str(crd.stat().st_size).encode())
    return digest.hexdigest()


def cache_key(rendered: Rendered, fingerprint: str) -> str:
    payload = json.dumps(
        [
            fingerprint,
            rendered.environment.kubernetes_version,
            [_normalized(d) for d in rendered.documents],
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictCache:
    """Per-target verdicts on disk; a missing or unreadable cache is just empty."""

    def __init__(self, folder: Path | None, fingerprint: str) -> None:
        self.path = folder / CACHE_FILE if folder else None
        self.fingerprint = fingerprint
        self.entries: dict[str, Any] = {}
        self.dirty = False
        if self.path and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
            if isinstance(data, dict) and data.get("fingerprint") == fingerprint:
                self.entries = dict(data.get("entries") or {})

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def put(self, key: str, verdict: Any) -> None:
        self.entries[key] = verdict
        self.dirty = True

    def save(self) -> None:
        if not self.path or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        gitignore = self.path.parent / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".verify-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"fingerprint": self.fingerprint, "entries": self.entries}, handle)
        os.replace(temporary, self.path)


@dataclass
class TargetResult:
    key: str
    environment: str
    name: str
    cached: bool
    findings: list[Finding] = field(default_factory=list)


@dataclass
class VerifyReport:
    targets: list[TargetResult]
    failing: list[Finding]
    excepted: list[Excepted]
    unused_exceptions: list[PolicyException]
    checked_by_checkov: int

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def cache_hits(self) -> int:
        return sum(1 for target in self.targets if target.cached)


def _schema_findings(rendered: Rendered, validator: SchemaValidator) -> list[list[str]]:
    return [
        [f.kind, f.name, f.path, f.message]
        for document in rendered.documents
        for f in validator.check(document)
    ]


def _verdict_findings(rendered: Rendered, verdict: dict[str, Any]) -> list[Finding]:
    findings = [
        Finding(
            rendered.key,
            "SCHEMA",
            f"{kind}/{name}",
            f"{path + ': ' if path else ''}{message}",
            "schema",
        )
        for kind, name, path, message in verdict["schema"]
    ]
    findings += [
        Finding(rendered.key, check, resource, title, "checkov")
        for check, title, resource in verdict["checkov"]
    ]
    return findings


def verify(
    repo: Repo,
    environments: Iterable[str] = (),
    services: Iterable[str] = (),
    *,
    use_cache: bool = True,
    progress: Progress | None = None,
    today: dt.date | None = None,
) -> VerifyReport:
    """Run the whole gate over the selected releases and their environments' Argo CD objects."""
    releases = repo.select(environments, services)
    exceptions = load_exceptions(repo.exceptions_file)
    renderer = Renderer(repo)
    env_names = [repo.environment(name).name for name in environments] or list(
        repo.environment_names
    )
    # The Argo CD objects are always rendered (their AppProject feeds PLAT006) but are a
    # target of their own only when whole environments are verified.
    gitops = [renderer.gitops(repo.environment(name)) for name in env_names]
    rendered: list[Rendered] = []
    if not services:
        for name, argocd in zip(env_names, gitops, strict=True):
            rendered += [argocd, renderer.addons(repo.environment(name))]
    for index, release in enumerate(releases, 1):
        rendered.append(renderer.release(release))
        if progress:
            progress("render", index, len(releases))
    context = RuleContext(
        allowed_kinds={g.environment.name: allowed_kinds(g) for g in gitops},
        source_repos={g.environment.name: source_repos(g) for g in gitops},
        objectives=gate_objectives(repo),
    )

    fingerprint = engine_fingerprint()
    cache = VerdictCache(repo.root / CACHE_DIR if use_cache else None, fingerprint)
    keys = {r.key: cache_key(r, fingerprint) for r in rendered}
    verdicts: dict[str, Any] = {r.key: cache.get(keys[r.key]) for r in rendered}
    misses = [r for r in rendered if verdicts[r.key] is None]
    miss_keys = {r.key for r in misses}
    validators: dict[str, SchemaValidator] = {}
    for index, target in enumerate(misses, 1):
        version_ = target.environment.kubernetes_version
        validator = validators.setdefault(version_, SchemaValidator(version_))
        verdicts[target.key] = {"schema": _schema_findings(target, validator), "checkov": []}
        if progress:
            progress("schemas", index, len(misses))
    checkov_targets = {t.key: t.documents for t in misses if t.name != GITOPS_TARGET}
    if checkov_targets and progress:
        progress("checkov", 0, len(checkov_targets))
    for key, failures in run_checkov(checkov_targets).items():
        verdicts[key]["checkov"] = [[f.check, f.title, f.resource] for f in failures]
    if checkov_targets and progress:
        progress("checkov", len(checkov_targets), len(checkov_targets))
    for target in misses:
        cache.put(keys[target.key], verdicts[target.key])
    cache.save()

    results = []
    all_findings: list[Finding] = []
    for target in rendered:
        findings = _verdict_findings(target, verdicts[target.key]) + run_rules(target, context)
        results.append(
            TargetResult(
                key=target.key,
                environment=target.environment.name,
                name=target.name,
                cached=target.key not in miss_keys,
                findings=sorted(findings),
            )
        )
        all_findings += findings
    failing, excepted, unused = apply_exceptions(
        sorted(all_findings), exceptions, today or dt.date.today(), repo.exceptions_file
    )
    return VerifyReport(
        targets=results,
        failing=failing,
        excepted=excepted,
        unused_exceptions=unused,
        checked_by_checkov=len(checkov_targets),
    )
