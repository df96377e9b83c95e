"""The Metrics page on the dated history of tests/release/test_metrics.py: its table is
``platform metrics``'s, its charts draw the same report (a bar per week and environment, the
bars summing to the deployments; a dot per lead time), a bad ``since`` gets the CLI's message
with 400, and a window without deployments says so instead of drawing empty charts."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from platformctl.dashboard.app import create_app
from platformctl.gates.config import format_duration
from tests.dashboard.test_plan_page import Page, cli, cli_error, written
from tests.release.test_metrics import Timeline, _build_timeline

SVG = ""  # inline SVG: no namespace of its own in the page


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Timeline:
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=20)
    return _build_timeline(tmp_path_factory.mktemp("metrics-page") / "fleet", base)


@pytest.fixture(scope="module")
def client(timeline: Timeline) -> TestClient:
    return TestClient(create_app(timeline.fleet.root))


def _cli_table(timeline: Timeline, *args: str) -> list[list[str]]:
    code, stdout, stderr = cli(timeline.fleet.root, "metrics", *args, "-o", "markdown")
    assert code == 0, stderr
    lines = [line for line in stdout.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _cli_json(timeline: Timeline, *args: str) -> dict[str, dict[str, object]]:
    code, stdout, stderr = cli(timeline.fleet.root, "metrics", *args, "-o", "json")
    assert code == 0, stderr
    return {m["environment"]: m for m in json.loads(stdout)["environments"]}


def _charts(page: Page) -> tuple[ET.Element, ET.Element]:
    bars, dots = (ET.fromstring(svg) for svg in page.svgs)
    return bars, dots


def _bars(chart: ET.Element, series: int) -> list[float]:
    return [
        float(rect.get("data-value", ""))
        for rect in chart.iter(f"{SVG}rect")
        if rect.get("class") == f"bar series-{series}"
    ]


def test_the_numbers_and_charts_of_a_window_by_hand(timeline: Timeline, client: TestClient) -> None:
    since = timeline.at(0).isoformat()
    response = client.get("/metrics", params={"since": since})
    assert response.status_code == 200
    # no other host (base.html's url_for names this one) and no style attribute (the CSP)
    own = response.text.replace("http://testserver/", "/")
    assert "://" not in own
    assert "style=" not in own
    page = Page(response.text)
    assert page.rows("metrics") == _cli_table(timeline, "--since", since)
    d, s, p = timeline.fleet.stages
    bars, dots = _charts(page)
    # 20 days: three weeks counted back from now; hours 0..100 all fall in the oldest
    assert [_bars(bars, i) for i in range(3)] == [[3, 0, 0], [4, 0, 0], [5, 0, 0]]
    assert page.rows("metrics-buckets") == [
        [d, "3", "0", "0"],
        [s, "4", "0", "0"],
        [p, "5", "0", "0"],
    ]
    # the lead times of the report (test_metrics: s 10h, 15h, 10h; p 30h, 20h, 75h), a dot each
    titles = [c.findtext(f"{SVG}title") for c in dots.iter(f"{SVG}circle")]
    assert sorted(t for t in titles if t and t.startswith(f"{s}:")) == [
        f"{s}: 10h",
        f"{s}: 10h",
        f"{s}: 15h",
    ]
    assert sorted(t for t in titles if t and t.startswith(f"{p}:")) == [
        f"{p}: 1d6h",
        f"{p}: 20h",
        f"{p}: 3d3h",
    ]
    marks = [m.findtext(f"{SVG}title") for m in dots.iter(f"{SVG}line") if m.get("class") == "mark"]
    assert f"{p} median: 1d6h" in marks
    assert f"{p} p90: 3d3h" in marks


def test_the_default_window_is_the_clis(timeline: Timeline, client: TestClient) -> None:
    before = written(timeline.fleet.root)
    page = Page(client.get("/metrics").text)
    assert page.rows("metrics") == _cli_table(timeline)
    report = _cli_json(timeline)
    bars, dots = _charts(page)
    circles = list(dots.iter(f"{SVG}circle"))
    for index, (env, numbers) in enumerate(report.items()):
        assert sum(_bars(bars, index)) == numbers["deployments"], env
        lead = numbers["lead_time"]
        assert isinstance(lead, dict)
        assert (
            len([c for c in circles if c.get("class") == f"dot series-{index}"]) == lead["releases"]
        )
        if lead["median_seconds"] is not None:
            median = format_duration(dt.timedelta(seconds=lead["median_seconds"]))
            assert f"{env} median: {median}" in [m.findtext(f"{SVG}title") for m in dots.iter()]
    # 30 days: five weeks; the initial commit (hour -48) is in the second, the rest in the third
    assert len(_bars(bars, 0)) == 5
    assert _bars(bars, 0)[1:3] == [1, 3]
    assert client.get("/metrics").text == client.get("/metrics").text  # kept per head
    assert written(timeline.fleet.root) == before


def test_a_window_without_deployments_says_so(timeline: Timeline, client: TestClient) -> None:
    since = timeline.at(110)
    response = client.get("/metrics", params={"since": since.isoformat()})
    assert response.status_code == 200
    page = Page(response.text)
    assert f"no deployments since {since:%Y-%m-%d %H:%M} UTC" in page.body()
    assert page.svgs == []
    assert [row[:2] for row in page.rows("metrics")] == [
        [stage, "0"] for stage in timeline.fleet.stages
    ]


@pytest.mark.parametrize("since", ["yesterday", "0d", "2999-01-01"])
def test_a_bad_since_is_400_with_the_clis_message(
    timeline: Timeline, client: TestClient, since: str
) -> None:
    said = cli_error(timeline.fleet.root, "metrics", "--since", since)
    response = client.get("/metrics", params={"since": since})
    assert response.status_code == 400
    assert f"error: {said}" in Page(response.text).body()


def test_the_window_form_is_labelled(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert '<label for="metrics-since">' in text
    assert 'id="metrics-since" name="since"' in text
    assert "style=" not in text
