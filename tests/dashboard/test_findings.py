"""The Findings page: the last verify result of each environment, its age and whether the
branch moved since, read from the record ``platform verify`` writes."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from platformctl.dashboard.app import create_app
from platformctl.model import load_repo
from platformctl.policy.findings import Finding
from platformctl.verify import TargetResult, VerifyReport
from platformctl.verify_record import last_results, record, record_path
from tests.conftest import git
from tests.release.fleet import Fleet, make_fleet

Cli = Callable[..., Any]
ALPHA, BETA = SERVICES = ("alpha", "beta")


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return make_fleet(tmp_path / "repo", list(SERVICES))


def get(fleet: Fleet, url: str) -> Any:
    return TestClient(create_app(fleet.root)).get(url)


def section(body: str, environment: str) -> str:
    """The text of one environment's section of the page, tags stripped."""
    match = re.search(
        rf'<section class="findings-environment" aria-labelledby="findings-{environment}">'
        r"(.*?)</section>",
        body,
        re.S,
    )
    assert match, f"no section for {environment}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match[1])).split())


def report_of(environment: str, *failing: Finding) -> VerifyReport:
    """A run of one environment with these findings (the gate's own output is tested in
    tests/cli/test_verify_record.py; here only what the page makes of a record)."""
    targets = [TargetResult(f"{environment}/{name}", environment, name, True) for name in SERVICES]
    return VerifyReport(targets, list(failing), [], [], 0)


def test_a_failing_run_shows_its_findings_with_their_rule_ids(fleet: Fleet, cli: Cli) -> None:
    stage = next(e.name for e in load_repo(fleet.root).environments if e.policy.require_digest)
    fleet.set_image(stage, ALPHA, 2, pinned=False)
    assert cli(fleet.root, "verify", "-e", stage).exit_code == 1
    response = get(fleet, "/findings")
    assert response.status_code == 200
    text = section(response.text, stage)
    assert "failed" in text
    assert f"PLAT001 {stage}/{ALPHA} Deployment/" in text
    assert "Failing findings" in text
    assert "stale" not in text
    head = git(fleet.root, "rev-parse", "HEAD").strip()
    assert head[:12] in text
    # the environments not verified say how to get a result, in pipeline order
    others = [name for name in fleet.stages if name != stage]
    for name in others:
        assert section(response.text, name).endswith(
            f"not verified no verify result recorded: run platform verify -e {name}"
        )
    positions = [response.text.index(f'id="findings-{name}"') for name in fleet.stages]
    assert positions == sorted(positions)
    one = get(fleet, f"/findings/{stage}")
    assert one.status_code == 200
    assert f"PLAT001 {stage}/{ALPHA}" in section(one.text, stage)
    assert f'id="findings-{others[0]}"' not in one.text


def test_the_age_is_shown_with_the_exact_time_and_staleness_once_the_branch_moves(
    fleet: Fleet,
) -> None:
    stage = fleet.stages[0]
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3, minutes=5)
    finding = Finding(f"{stage}/{BETA}", "PLAT004", "Deployment/beta", "no probe", "project")
    record(fleet.root, report_of(stage, finding), fleet.stages, [BETA], now=at)
    body = get(fleet, "/findings").text
    exact = at.isoformat(timespec="seconds")
    assert re.search(rf'<time datetime="{re.escape(exact)}">[^<]*\(3 hours ago\)</time>', body)
    text = section(body, stage)
    assert "only the services beta" in text
    assert "PLAT004" in text
    assert "stale" not in text
    fleet.set_image(stage, BETA, 5)  # a commit: the branch moves past the verified one
    text = section(get(fleet, "/findings").text, stage)
    assert "stale: the branch moved since" in text
    assert git(fleet.root, "rev-parse", "HEAD").strip()[:12] in text


def test_a_clean_result_on_uncommitted_edits_says_so(fleet: Fleet) -> None:
    stage = fleet.stages[-1]
    fleet.set_image(stage, ALPHA, 3, commit=False)
    record(fleet.root, report_of(stage), fleet.stages, [])
    text = section(get(fleet, "/findings").text, stage)
    assert "passed" in text
    assert "with uncommitted changes" in text
    assert "the whole environment" in text
    assert "Failing findings" not in text


@pytest.mark.usefixtures("own_cache")
def test_a_corrupt_record_reads_as_no_result(fleet: Fleet) -> None:
    stage = fleet.stages[0]
    record(fleet.root, report_of(stage), fleet.stages, [])
    assert stage in last_results(fleet.root)
    record_path(fleet.root).write_bytes(b"\x00\xff not json")
    response = get(fleet, "/findings")
    assert response.status_code == 200
    assert "no verify result recorded" in section(response.text, stage)
    assert record_path(fleet.root).read_bytes() == b"\x00\xff not json"  # read, never written


@pytest.mark.usefixtures("own_cache")
def test_the_page_never_runs_verify(fleet: Fleet) -> None:
    for url in ("/findings", f"/findings/{fleet.stages[0]}"):
        assert get(fleet, url).status_code == 200
    cache = record_path(fleet.root).parent
    assert not (cache / "verify.json").exists()  # the gate's own cache: no target was checked
    assert not record_path(fleet.root).exists()


def test_an_unknown_environment_is_a_404_with_the_cli_message(fleet: Fleet, cli: Cli) -> None:
    wrong = f"{fleet.stages[0]}x"
    response = get(fleet, f"/findings/{wrong}")
    assert response.status_code == 404
    printed = cli(fleet.root, "status", "--env", wrong).stderr.strip()
    assert printed.startswith("error: unknown environment")
    assert printed in html.unescape(response.text)


def test_the_page_has_no_external_url_and_no_inline_style(fleet: Fleet) -> None:
    stage = fleet.stages[0]
    leaked = Finding(
        f"{stage}/{ALPHA}", "PLAT010", "Deployment/alpha", "pulls https://bot:s3cret@x/y", "p"
    )
    record(fleet.root, report_of(stage, leaked), fleet.stages, [])
    body = get(fleet, "/findings").text
    assert "s3cret" not in body
    assert "PLAT010" in body
    assert "style=" not in body
    assert "<script>" not in body
    # base.html's url_for() links the static files absolutely, on the serving host itself
    linked = re.findall(r'(?:href|src)="((?:https?:)?//[^"]*)"', body)
    assert linked
    assert all(url.startswith("http://testserver/static/") for url in linked), linked
