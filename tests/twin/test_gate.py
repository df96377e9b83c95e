"""The twin inside `platform verify`: its findings, their cache, and a verify of one service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from platformctl.model import load_repo
from platformctl.verify import verify
from tests.twin.conftest import kind, releases_with
from tests.twin.test_checks import set_values

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
