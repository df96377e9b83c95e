"""The Service page (``GET /services/{name}``): ``platform history`` per environment, in the
branch's order, with the holds, the gate evidence of the trailers and links to the commits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from platformctl.dashboard.views import commit_base
from tests.conftest import commit_edit, git, run_platform
from tests.dashboard.conftest import Element, client_of, parse
from tests.release.fleet import Fleet, image, make_pipeline

Cli = Callable[..., Any]
SECRET = "s3cret-token-value"
REPOSITORY = f"https://bot:{SECRET}@git.example.com/team/gitops.git"
COMMITS = "https://git.example.com/team/gitops/commit/"


def set_repository(fleet: Fleet, url: str) -> None:
    def change(pipeline: Any) -> None:
        pipeline["repository"]["url"] = url

    commit_edit(fleet.root, "environments/pipeline.yaml", change, "repository url")


@pytest.fixture
def fleet(tmp_path: Path, cli: Cli) -> Fleet:
    """alpha: promoted into the last stage, rolled back, unheld and held again there; in the
    second stage a release whose trailers record an overridden gate. beta is not deployed in
    the last stage."""
    fleet = make_pipeline(tmp_path / "fleet", ["alpha", "beta"], ["alpha"])
    first, second, last = fleet.stages[0], fleet.stages[1], fleet.stages[-1]
    set_repository(fleet, REPOSITORY)
    steps = [
        ("promote", "alpha", "--to", last),
        ("rollback", "alpha", "--env", last, "--reason", "p95 latency 450 ms"),
        ("unhold", "alpha", "--env", last),
        ("hold", "alpha", "--env", last, "--reason", "investigating <the> alerts"),
    ]
    for step in steps:
        result = cli(fleet.root, *step)
        assert result.exit_code == 0, (step, result.output)
    # a promotion's record as `platform promote --override` writes it
    fleet.set_image(second, "alpha", 4, commit=False)
    trailers = [
        "Platform-Action: promote",
        "Platform-Service: alpha",
        f"Platform-Environment: {second}",
        f"Platform-From: {first}",
        "Platform-Reason: hotfix for the outage",
        "Platform-Gate: soak/alpha overridden (2h < 24h)",
        "Platform-Gate: registry/alpha passed (tag resolves to the digest)",
    ]
    message = f"promote(alpha): {first} → {second}\n\n" + "\n".join(trailers)
    git(fleet.root, "commit", "-qam", message)
    fleet.values(last, "beta").unlink()
    git(fleet.root, "commit", "-qam", f"beta leaves {last}")
    return fleet


def sections(html: str) -> dict[str, Element]:
    """environment -> its section, by the section's heading."""
    found = {}
    for section in parse(html).find_all("section"):
        found[section.find("h2").text] = section
    return found


def history_rows(section: Element) -> list[list[Element]]:
    return [row.find_all("td") for row in section.find("tbody").find_all("tr")]


def test_each_environment_has_the_history_platform_history_prints(fleet: Fleet, cli: Cli) -> None:
    response = client_of(fleet.root).get("/services/alpha")
    assert response.status_code == 200
    found = sections(response.text)
    assert list(found) == list(fleet.stages)
    for stage in fleet.stages:
        result = cli(fleet.root, "history", "alpha", "--env", stage, "-n", "50", "-o", "json")
        assert result.exit_code == 0, result.output
        expected = json.loads(result.stdout)
        rows = history_rows(found[stage])
        assert [row[0].text for row in rows] == [event["commit"][:12] for event in expected]
        actions = [row[3].text for row in rows]
        assert actions == [
            event["action"] + (" (rolled back)" if event.get("rolled_back") else "")
            for event in expected
        ]
        for row, event in zip(rows, expected, strict=True):
            assert row[1].find("time").attrs["datetime"] == event["time"]
            assert row[2].text == event["author"]


def test_the_last_stage_tells_the_story_newest_first(fleet: Fleet) -> None:
    last = sections(client_of(fleet.root).get("/services/alpha").text)[fleet.stages[-1]]
    rows = history_rows(last)
    assert [row[3].text for row in rows] == [
        "hold",
        "unhold",
        "rollback",
        "promote (rolled back)",
        "manual",
    ]
    assert rows[0][7].text == "investigating <the> alerts"
    assert rows[2][7].text == "p95 latency 450 ms"
    assert rows[2][4].text.startswith(image("alpha", 1).tag or "")
    assert rows[3][4].text.startswith(image("alpha", 2).tag or "")
    assert rows[3][5].text == fleet.stages[1]  # promoted from the stage before


def test_the_gate_evidence_and_the_override_of_the_trailers(fleet: Fleet) -> None:
    second = sections(client_of(fleet.root).get("/services/alpha").text)[fleet.stages[1]]
    newest = history_rows(second)[0]
    assert newest[3].text == "promote"
    assert newest[5].text == fleet.stages[0]
    assert newest[7].text == "hotfix for the outage [overrode soak]"
    gates = [item.text for item in newest[8].find_all("li")]
    assert gates == [
        "soak/alpha overridden (2h < 24h)",
        "registry/alpha passed (tag resolves to the digest)",
    ]


def test_each_row_links_to_its_commit_without_the_credentials(fleet: Fleet) -> None:
    text = client_of(fleet.root).get("/services/alpha").text
    assert SECRET not in text
    for section in sections(text).values():
        for row in history_rows(section):
            link = row[0].find("a")
            commit = link.attrs["href"] or ""
            assert commit.startswith(COMMITS)
            assert len(commit.removeprefix(COMMITS)) == 40
            assert commit.removeprefix(COMMITS).startswith(link.text)


def test_a_repository_url_that_is_no_web_address_gives_no_links(fleet: Fleet) -> None:
    set_repository(fleet, "git@git.example.com:team/gitops.git")
    page = parse(client_of(fleet.root).get("/services/alpha").text)
    assert not [a for a in page.find_all("a") if "/commit/" in (a.attrs["href"] or "")]
    assert page.find("tbody").find("code").text  # the id is still shown


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://github.com/acme/platform.git", "https://github.com/acme/platform/commit/"),
        ("https://u:p@git.example.com:8443/a/b/c/", "https://git.example.com:8443/a/b/c/commit/"),
        ("http://git.example.com/a/b.git", None),
        ("ssh://git@git.example.com/a/b.git", None),
        ("git@github.com:acme/platform.git", None),
        ("https://git.example.com/", None),
        ("https://git.example.com:99999/a/b", None),
        ("/srv/git/platform.git", None),
    ],
)
def test_commit_base(url: str, base: str | None) -> None:
    assert commit_base(url) == base


def test_a_stage_the_service_is_not_deployed_in_says_so(fleet: Fleet) -> None:
    found = sections(client_of(fleet.root).get("/services/beta").text)
    last = fleet.stages[-1]
    assert found[last].find("p", class_="absent").text == (
        f"service 'beta' is not deployed in '{last}'."
    )
    assert not found[last].find_all("table")
    assert found[fleet.stages[0]].find("table")


@pytest.mark.parametrize("name", ["alpah", "Not_A_Name"])
def test_an_unknown_service_is_a_404_with_the_clis_message(fleet: Fleet, name: str) -> None:
    response = client_of(fleet.root).get(f"/services/{name}")
    assert response.status_code == 404
    shown = parse(response.text).find("article", role="alert").find("code").text
    cli = run_platform(
        Path.cwd(), "--repo", str(fleet.root), "history", name, "-e", fleet.stages[0]
    )
    assert cli.returncode == 2
    assert shown == cli.stderr.strip().splitlines()[0]
    assert name in shown
