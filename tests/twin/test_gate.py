"""The twin inside `platform verify`: its findings, their cache, and a verify of one service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from platformctl import verify as verify_module
from platformctl.model import load_repo
from platformctl.verify import verify
from tests.twin.conftest import kind, releases_with
from tests.twin.test_checks import replace_in, set_values

TODAY = dt.date(2026, 11, 22)


def run(root: Path, **kwargs: Any) -> Any:
    return verify(load_repo(root), today=TODAY, **kwargs)


def twin_findings(report: Any) -> list[tuple[str, str, str]]:
    return [(f.target, f.check, f.resource) for f in report.failing if f.engine == "twin"]


def test_the_gate_reports_the_twin_and_reuses_it_only_while_no_target_changes(
    stacked: Path,
) -> None:
    first = run(stacked)
    assert first.ok, first.failing
    # Only the twin's own verdicts matter here: what the other engines find (and the
    # exceptions accept) changes with the charts verify renders, not with the twin. The one
    # excepted twin check: PLAT020 on the CRDs the load balancer controller's and external-dns's
    # charts ship in crds/ (environments/policy-exceptions.yaml says why and what to do).
    assert not [
        e for e in first.excepted if e.finding.engine == "twin" and e.finding.check != "PLAT020"
    ]
    key = releases_with(stacked, "production", kind("Ingress"))[0]
    set_values(stacked, key, ingress={"host": "www.example.com"})
    second = run(stacked)
    assert (key, "PLAT015", f"Ingress/{key.split('/')[1]}") in twin_findings(second)
    third = run(stacked)
    assert third.cache_hits == len(third.targets)
    assert twin_findings(third) == twin_findings(second)


def test_verifying_one_service_still_models_its_whole_environment(stacked: Path) -> None:
    """A finding that needs another target (a peer's network policy) is found when only the
    sender is verified, from a cold cache and from a warm one."""
    repo = load_repo(stacked)
    sender = receiver = ""
    for release in repo.select(["staging"]):
        targets = release.values.get("networkPolicy", {}).get("egressTo", {}).get("services")
        if targets:
            sender, receiver = release.key, f"staging/{targets[0]}"
            break
    assert sender
    set_values(stacked, receiver, networkPolicy={"ingressFrom": {"services": []}})
    service = sender.split("/")[1]
    for use_cache in (False, True, True):
        report = run(stacked, environments=["staging"], services=[service], use_cache=use_cache)
        assert (sender, "PLAT014", f"NetworkPolicy/{service}") in twin_findings(report)
        assert {f.target for f in report.failing} <= {sender}


def _twin_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The environments the gate models from here on (not answered from its cache)."""
    runs: list[str] = []
    model = verify_module.check_environment

    def counted(repo: Any, environment: Any, *args: Any, **kwargs: Any) -> Any:
        runs.append(environment.name)
        return model(repo, environment, *args, **kwargs)

    monkeypatch.setattr(verify_module, "check_environment", counted)
    return runs


def _new_build(root: Path, key: str, tag: str = "9.9.9") -> None:
    """What a promotion writes: the release's tag and digest, nothing else."""
    environment, service = key.split("/")
    image = dict(load_repo(root).release(service, environment).environment_values["image"])
    set_values(root, key, image={**image, "tag": tag, "digest": "sha256:" + "b" * 64})


def test_a_new_image_is_answered_from_the_twin_of_the_one_before(
    stacked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No twin check reads a tag or a digest, and the twin is given none (it models
    documents and values with them blanked): a promotion does not model the whole
    environment again (at 100 services, ~0.25 s of a promotion's 0.34 s in a started
    worker)."""
    first = run(stacked)
    key = load_repo(stacked).select(["production"])[0].key
    _new_build(stacked, key)
    runs = _twin_runs(monkeypatch)
    second = run(stacked)
    assert runs == []
    assert twin_findings(second) == twin_findings(first)


def test_a_chart_that_renders_the_tag_elsewhere_is_modelled_again(
    stacked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a chart makes of a tag beyond the image and the version label is part of what
    the twin is keyed on."""
    replace_in(
        stacked,
        "_helpers.tpl",
        "app.kubernetes.io/part-of: platform",
        "app.kubernetes.io/part-of: platform\nexample.com/build: {{ .Values.image.tag | quote }}",
    )
    run(stacked)
    key = load_repo(stacked).select(["production"])[0].key
    _new_build(stacked, key)
    runs = _twin_runs(monkeypatch)
    run(stacked)
    assert runs == ["production"]


def test_an_applicationset_that_selects_on_the_tag_is_modelled_with_the_tag(
    stacked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ApplicationSet whose selector reads tags decides on each one: the twin models it
    with the tags, and sees the release it stops deploying."""
    template = stacked / "charts/gitops/templates/applicationset.yaml"
    text = template.read_text()
    exists = "          - key: image.repository\n            operator: Exists\n"
    assert exists in text
    not_in = (
        "          - key: image.tag\n            operator: NotIn\n            values: [9.9.9]\n"
    )
    template.write_text(text.replace(exists, exists + not_in))
    first = run(stacked)
    assert not [f for f in twin_findings(first) if f[1] == "PLAT019"]
    key = load_repo(stacked).select(["production"])[0].key
    _new_build(stacked, key)
    runs = _twin_runs(monkeypatch)
    second = run(stacked)
    assert runs == ["production"]
    assert (key, "PLAT019") in {(target, check) for target, check, _ in twin_findings(second)}
