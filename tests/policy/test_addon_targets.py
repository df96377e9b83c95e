"""verify renders every upstream chart an add-on Application deploys, as it deploys it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from platformctl.model import load_repo
from platformctl.render import Renderer
from platformctl.verify import verify
from tests.conftest import edit_yaml

TODAY = dt.date(2026, 12, 1)


def test_each_addon_chart_is_a_target_of_its_own(repo: Path) -> None:
    report = verify(load_repo(repo), ["dev"], use_cache=False, today=TODAY)
    loaded = load_repo(repo)
    charts = {job.key for job in Renderer(loaded).addon_chart_jobs(loaded.environment("dev"))}
    assert charts
    assert charts <= {target.key for target in report.targets}
    assert {"dev/addons", "dev/argocd"} <= {target.key for target in report.targets}


def test_a_value_the_chart_does_not_define_is_reported_with_its_line(repo: Path) -> None:
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: data["addons"]["external-dns"]["values"].update(
            {"sourcez": ["ingress"], "serviceMonitor": {"enabledd": True}}
        ),
    )
    report = verify(load_repo(repo), ["dev"], use_cache=False, today=TODAY)
    found = {(f.target, f.check, f.resource): f.message for f in report.failing}
    message = found[("dev/addons/external-dns", "VALUES", "values/sourcez")]
    assert "environments/addons/dev.yaml:" in message
    assert "external-dns 1.21.1 has no value 'sourcez'" in message
    assert ("dev/addons/external-dns", "VALUES", "values/serviceMonitor.enabledd") in found
    # the keys the chart does define are not reported
    assert not [f for f in report.failing if f.check == "VALUES" and "policy" in f.resource]


def test_free_form_values_are_not_reported(repo: Path) -> None:
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: data["addons"]["external-dns"]["values"].update(
            {"podAnnotations": {"example.com/anything": "x"}}
        ),
    )
    report = verify(load_repo(repo), ["dev"], use_cache=False, today=TODAY)
    assert not [f for f in report.failing if f.check == "VALUES"]


def test_a_misspelt_value_is_found_through_a_warm_cache(repo: Path) -> None:
    """A key Helm ignores changes no rendered byte: the finding must not hang on the output."""
    loaded = load_repo(repo)
    assert verify(loaded, ["dev"], today=TODAY).ok
    edit_yaml(
        repo / "environments/addons/dev.yaml",
        lambda data: data["addons"]["external-dns"]["values"].update({"sourcez": ["ingress"]}),
    )
    report = verify(load_repo(repo), ["dev"], today=TODAY)
    assert ("dev/addons/external-dns", "VALUES") in {(f.target, f.check) for f in report.failing}
