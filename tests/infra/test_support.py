"""The support calendar: refusals on the day a version leaves standard support, warnings 90
days before naming the next version, through the stacks and `platform verify` alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from platformctl.errors import InputError
from platformctl.model import Repo, load_repo
from platformctl.stacks import read_stack, stack_findings
from platformctl.support import (
    ARGOCD_CHART,
    Calendar,
    argocd_app_version,
    argocd_verdict,
    load_calendar,
)
from tests.infra.conftest import ROOT, STACKS

TODAY = dt.date(2026, 12, 1)
CALENDAR = """\
kubernetes:
  source: https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html
  checked: 2026-12-01
  versions:
    "1.40": {released: 2026-01-01, standardSupportEnds: 2026-12-01, extendedSupportEnds: 2027-12-01}
    "1.41": {released: 2026-04-01, standardSupportEnds: 2027-02-01, extendedSupportEnds: 2028-02-01}
    "1.42": {released: 2026-08-01, standardSupportEnds: 2027-10-01, extendedSupportEnds: 2028-10-01}
  addons:
    source: aws eks describe-addon-versions
    checked: 2026-12-01
    versions:
      "1.42": {vpc-cni: [v9.0.0-eksbuild.1]}
postgres:
  source: rds
  checked: 2026-12-01
  versions:
    "30": {standardSupportEnds: 2030-01-01}
  minorsCreatableUntil:
    "30.1": 2026-05-01
argocd:
  source: argo
  checked: 2026-12-01
  versions:
    "9.1": {released: 2026-02-02, supportEnds: 2026-11-03}
    "9.2": {released: 2026-05-05, supportEnds: 2027-02-02}
    "9.3": {released: 2026-08-04, supportEnds: 2027-05-04}
"""


@pytest.fixture
def calendar(tmp_path: Path) -> Calendar:
    path = tmp_path / "support.yaml"
    path.write_text(CALENDAR)
    return load_calendar(path)


def test_a_version_is_refused_on_the_day_its_standard_support_ends(calendar: Calendar) -> None:
    verdict = calendar.kubernetes_version("1.40", TODAY)
    assert verdict.refused == (
        "EKS Kubernetes 1.40 left standard support on 2026-12-01: move to 1.41"
    )
    assert calendar.kubernetes_version("1.40", TODAY - dt.timedelta(days=1)).refused is None


def test_a_version_within_90_days_of_its_end_warns_naming_the_next(calendar: Calendar) -> None:
    verdict = calendar.kubernetes_version("1.41", TODAY)
    assert verdict.refused is None
    assert verdict.warning == (
        "EKS Kubernetes 1.41 leaves standard support on 2027-02-01 (62 days): plan the move to 1.42"
    )
    assert calendar.kubernetes_version("1.42", TODAY).warning is None
    assert calendar.kubernetes_version("1.42", dt.date(2027, 7, 3)).warning is not None


def test_an_unknown_version_names_the_ones_in_support(calendar: Calendar) -> None:
    assert calendar.kubernetes_version("1.39", TODAY).refused == (
        f"EKS Kubernetes 1.39 is not in {calendar.source}: use one of 1.41, 1.42"
    )


def test_postgres_pins_a_major_or_a_minor_rds_still_creates(calendar: Calendar) -> None:
    assert calendar.postgres_version("30", TODAY).refused is None
    assert calendar.postgres_version("30.2", TODAY).refused is None
    refused = calendar.postgres_version("30.1", TODAY).refused
    assert refused == (
        'RDS PostgreSQL 30.1 cannot be created since 2026-05-01: pin the major ("30") '
        "and let RDS pick its default minor"
    )
    assert calendar.postgres_version("31", TODAY).refused is not None


def test_addon_builds_must_belong_to_the_clusters_minor(calendar: Calendar) -> None:
    assert calendar.addon_version("1.42", "vpc-cni", "v9.0.0-eksbuild.1") is None
    assert "not a build for Kubernetes 1.42" in str(
        calendar.addon_version("1.42", "vpc-cni", "v8.0.0-eksbuild.1")
    )
    assert "lists no coredns build" in str(calendar.addon_version("1.42", "coredns", "v1"))


@pytest.mark.parametrize(
    ("app_version", "refused", "warning"),
    [("v9.1.14", True, False), ("v9.2.7", False, True), ("v9.3.1", False, False)],
)
def test_argo_cd_is_judged_by_the_vendored_charts_app_version(
    tmp_path: Path, calendar: Calendar, app_version: str, refused: bool, warning: bool
) -> None:
    chart = tmp_path / ARGOCD_CHART
    chart.parent.mkdir(parents=True)
    chart.write_text(f"apiVersion: v2\nname: argo-cd\nversion: 1.0.0\nappVersion: {app_version}\n")
    verdict = argocd_verdict(calendar, tmp_path, TODAY)
    assert (verdict.refused is not None, verdict.warning is not None) == (refused, warning)


def test_a_chart_that_is_not_vendored_is_said_so(tmp_path: Path, calendar: Calendar) -> None:
    verdict = argocd_verdict(calendar, tmp_path, TODAY)
    assert verdict.refused is None
    assert verdict.warning is not None
    assert "the Argo CD chart is not vendored" in verdict.warning


def test_a_malformed_calendar_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "support.yaml"
    path.write_text(
        CALENDAR.replace("standardSupportEnds: 2027-02-01", "standardSupportEnds: soon")
    )
    with pytest.raises(InputError, match=r"support\.yaml:\d+: kubernetes\.versions\.1\.41"):
        load_calendar(path)


def _at(repo: Repo, stack: str, version: str) -> Repo:
    environments = tuple(
        dataclasses.replace(e, kubernetes_version=version) if e.name == stack else e
        for e in repo.environments
    )
    return dataclasses.replace(repo, environments=environments)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_is_pinned_to_versions_in_standard_support_today(stack: str) -> None:
    settings = read_stack(load_repo(ROOT), stack)
    assert settings.database.engine_version.isdigit(), "pin the major: no perpetual diffs"


@pytest.mark.parametrize("stack", STACKS)
def test_a_stack_on_1_33_is_refused_as_pulumi_and_verify_see_it(stack: str) -> None:
    """Finding 2: 1.33 left standard support on 2026-07-29."""
    repo = _at(load_repo(ROOT), stack, "1.33")
    with pytest.raises(InputError, match=r"1\.33 left standard support on 2026-07-29: move"):
        read_stack(repo, stack, TODAY)
    findings, _ = stack_findings(repo, [stack], TODAY)
    assert [f.check for f in findings] == ["stack"]
    assert "environment.yaml:" in findings[0].message


def _pinned_ends(repo: Repo) -> list[dt.date]:
    """The calendar's end of support of every version the repository pins today: each
    environment's Kubernetes minor and PostgreSQL major, and the vendored Argo CD's minor."""
    calendar = repo.support
    ends = [calendar.kubernetes[e.kubernetes_version].ends for e in repo.environments]
    for stack in STACKS:
        major = read_stack(repo, stack).database.engine_version.split(".")[0]
        ends.append(calendar.postgres[major].ends)
    app_version = argocd_app_version(repo.root)
    assert app_version is not None
    ends.append(calendar.argocd[".".join(app_version.removeprefix("v").split(".")[:2])].ends)
    return ends


def test_verify_reports_what_is_due_soon_as_warnings() -> None:
    """30 days before the first end of support among what is pinned (whichever it is): no
    finding yet, and a warning for it."""
    repo = load_repo(ROOT)
    first = min(_pinned_ends(repo))
    findings, warnings = stack_findings(repo, repo.environment_names, first - dt.timedelta(days=30))
    assert findings == []
    assert any(f"leaves standard support on {first.isoformat()} (30 days)" in w for w in warnings)
