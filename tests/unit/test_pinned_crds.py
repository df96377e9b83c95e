"""The CRD schemas the gate validates against are the pinned versions' own."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from platformctl.model import load_repo
from platformctl.render import Renderer
from platformctl.schemas import CRD_DIR, SchemaValidator
from platformctl.vendor import Lock, pinned_crds
from tests.conftest import PROJECT_ROOT

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_every_crd_file_is_what_the_vendored_charts_and_manifests_render() -> None:
    """External Secrets' included: its CRDs are the vendored bundle's (a directory source)."""
    rendered = pinned_crds(PROJECT_ROOT)
    files = {p.name for p in CRD_DIR.glob("*_*.json")}
    assert set(rendered) == files
    for name, crd in rendered.items():
        assert _load(CRD_DIR / name) == crd, name
    assert "external-secrets.io_ExternalSecret.json" in rendered


def test_argo_cds_crds_are_those_of_the_version_the_stacks_install() -> None:
    application = _load(CRD_DIR / "argoproj.io_Application.json")
    versions = [v["name"] for v in application["spec"]["versions"]]
    assert versions == ["v1alpha1"]
    readme = (CRD_DIR / "README.md").read_text()
    chart = yaml.safe_load((PROJECT_ROOT / "charts/vendor/argo-cd/Chart.yaml").read_text())
    assert f"argo-cd {chart['version']}, Argo CD {chart['appVersion']}" in readme


def test_the_bundle_crds_are_those_of_the_chart_version_deployed() -> None:
    readme = (CRD_DIR / "README.md").read_text()
    chart = yaml.safe_load((PROJECT_ROOT / "charts/vendor/external-secrets/Chart.yaml").read_text())
    bundle = Lock.load(PROJECT_ROOT).get_manifests("external-secrets-crds")
    assert bundle.upstream.tag == f"helm-chart-{chart['version']}" == f"helm-chart-{bundle.version}"
    assert f"tag `{bundle.upstream.tag}`" in readme


def _applicationset(environment: str = "dev") -> dict[str, Any]:
    repo = load_repo(PROJECT_ROOT)
    gitops = Renderer(repo).gitops(repo.environment(environment))
    return next(d for d in gitops.documents if d["metadata"]["name"] == f"{environment}-services")


def _with_exclude(rendered: dict[str, Any]) -> dict[str, Any]:
    # a copy: rendered documents are shared within the process (render._parse), never mutated
    appset = copy.deepcopy(rendered)
    generator = appset["spec"]["generators"][0]["git"]
    generator["files"] = [{"path": "environments/dev/*.yaml", "exclude": True}]
    return appset


def test_a_field_newer_than_the_deployed_argo_cd_is_reported() -> None:
    fixture = FIXTURES / "crds-argo-cd-v3.0.6"
    digest = hashlib.sha256((fixture / "argoproj.io_ApplicationSet.yaml").read_bytes())
    assert digest.hexdigest() in (fixture / "README.md").read_text()
    findings = SchemaValidator("1.33", fixture).check(_with_exclude(_applicationset()))
    assert any(
        f.path.endswith("git.files #1.exclude") and re.search(r"unknown key 'exclude'", f.message)
        for f in findings
    ), findings


def test_the_same_field_passes_against_the_pinned_argo_cd() -> None:
    assert SchemaValidator("1.33").check(_with_exclude(_applicationset())) == []
