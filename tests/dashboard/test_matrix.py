"""The Matrix page (``GET /``): the facts of ``platform status`` per cell, the age of each
image from the ledger, the HTMX fragment, and the head-keyed cache."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import platformctl.dashboard.pages.matrix as matrix_page
import platformctl.dashboard.site as site_module
from platformctl.dashboard import views
from platformctl.dashboard.site import Site
from platformctl.model import Image
from tests.conftest import git, run_platform
from tests.dashboard.conftest import Element, client_of, parse, table_rows
from tests.release.fleet import REGISTRY, Fleet, image, make_pipeline, write_image

Cli = Callable[..., Any]
SERVICES = ["alpha", "beta", "gamma"]
HOLD_REASON = "canary errors <5xx> & latency"
# a digest whose short form (12 hex) no other image of the fleet shares
DIGEST = "sha256:" + "ab12cd34" * 8
THREE_DAYS_AGO = dt.datetime.now(dt.UTC) - dt.timedelta(days=3, hours=1)


@pytest.fixture
def fleet(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Three stages: beta ahead in the second and held there; alpha pinned to its own digest
    in the last, three days ago; gamma level with the first stage's tag in the second and not
    deployed in the last."""
    fleet = make_pipeline(tmp_path / "fleet", SERVICES, ["beta"])
    first, second, last = fleet.stages[0], fleet.stages[1], fleet.stages[-1]
    write_image(fleet.values(last, "alpha"), Image(f"{REGISTRY}/alpha", "2.0.0", DIGEST))
    stamp = THREE_DAYS_AGO.isoformat()
    with monkeypatch.context() as dated:
        dated.setenv("GIT_AUTHOR_DATE", stamp)
        dated.setenv("GIT_COMMITTER_DATE", stamp)
        git(fleet.root, "commit", "-qam", "alpha 2.0.0 pinned in the last stage")
    # the first stage's tag, pinned: the same build by tag, so no change from the stage before
    fleet.set_image(second, "gamma", 3)
    fleet.values(last, "gamma").unlink()
    git(fleet.root, "commit", "-qam", f"gamma leaves {last}")
    held = cli(fleet.root, "hold", "beta", "--env", second, "--reason", HOLD_REASON)
    assert held.exit_code == 0, held.output
    assert first != second != last
    return fleet


def matrix_table(html: str) -> Element:
    return parse(html).find("table", class_="matrix")


def cells(table: Element) -> dict[tuple[str, str], Element]:
    """(service, environment) -> the cell's ``td``, by the table's own headers."""
    header = [th.text for th in table.find("thead").find_all("th")]
    found = {}
    for row in table.find("tbody").find_all("tr"):
        service = row.find("th", scope="row").text
        for environment, td in zip(header[1:], row.find_all("td"), strict=True):
            found[(service, environment)] = td
    return found


def test_the_matrix_has_a_row_per_service_and_a_column_per_stage(fleet: Fleet) -> None:
    response = client_of(fleet.root).get("/")
    assert response.status_code == 200
    table = matrix_table(response.text)
    assert table.find("caption").text
    columns = table.find("thead").find_all("th", scope="col")
    assert [th.text for th in columns] == ["Service", *fleet.stages]
    rows = table.find("tbody").find_all("th", scope="row")
    assert [th.text for th in rows] == SERVICES
    links = [th.find("a").attrs["href"] for th in rows]
    assert links == [f"/services/{name}" for name in SERVICES]


def test_each_cell_says_what_platform_status_says(fleet: Fleet, cli: Cli) -> None:
    """Tag, short digest, held and changed-from-the-stage-before: the same facts per cell as
    ``platform status -o json``; a service missing in a stage has a cell that says so."""
    found = cells(matrix_table(client_of(fleet.root).get("/").text))
    result = cli(fleet.root, "status", "--output", "json")
    assert result.exit_code == 0, result.output
    shown = set()
    for row in json.loads(result.stdout):
        td = found[(row["service"], row["environment"])]
        shown.add((row["service"], row["environment"]))
        assert td.find("code", class_="tag").text == (row["tag"] or "(digest)")
        digests = [code.text for code in td.find_all("code", class_="digest")]
        assert digests == ([f"@{row['digest'][7:19]}"] if row["digest"] else [])
        assert bool(td.find_all("abbr", class_="held-marker")) == (row["held"] is not None)
        changed = td.find_all("abbr", class_="changed-marker")
        assert bool(changed) == row["differs_from_previous"]
        if changed:
            assert changed[0].attrs["title"] == f"differs from {row['previous_environment']}"
    # every cell status has no row for says why
    for key, td in found.items():
        if key not in shown:
            assert "absent" in (td.attrs["class"] or "").split()
    missing = found[("gamma", fleet.stages[-1])]
    assert missing.text == f"service 'gamma' is not deployed in '{fleet.stages[-1]}'"


def test_the_specific_cells(fleet: Fleet) -> None:
    """The cells the fixture made, as a reader sees them."""
    found = cells(matrix_table(client_of(fleet.root).get("/").text))
    second, last = fleet.stages[1], fleet.stages[-1]
    alpha = found[("alpha", last)]
    assert alpha.text.startswith("2.0.0 @ab12cd34ab12 *")
    assert "3 days ago" in alpha.find("time").text
    beta = found[("beta", second)]
    assert beta.find("code", class_="tag").text == image("beta", 2).tag
    held = beta.find("abbr", class_="held-marker")
    assert HOLD_REASON in (held.attrs["title"] or "")
    # the reason is also text a screen reader reads, not only a hover
    hidden = [span.text for span in beta.find_all("span", class_="visually-hidden")]
    assert any(HOLD_REASON in text for text in hidden), hidden
    assert "held" in (beta.attrs["class"] or "").split()
    gamma = found[("gamma", second)]
    assert not gamma.find_all("abbr", class_="changed-marker")


def test_the_age_is_the_time_of_the_commit_that_put_the_image_there(fleet: Fleet) -> None:
    """Not the time of the newest commit of the file (the hold touched none of them, and a
    later commit to another file is no change of this one)."""
    found = cells(matrix_table(client_of(fleet.root).get("/").text))
    for (service, environment), td in found.items():
        if "absent" in (td.attrs["class"] or "").split():
            continue
        path = f"environments/{environment}/{service}.yaml"
        when, commit = git(fleet.root, "log", "-1", "--format=%cI %H", "--", path).split()
        time = td.find("time")
        assert time.attrs["datetime"] == when, (service, environment)
        assert (time.attrs["title"] or "").endswith(f"commit {commit[:12]}")
    alpha = found[("alpha", fleet.stages[-1])].find("time")
    assert alpha.attrs["datetime"] == THREE_DAYS_AGO.isoformat(timespec="seconds")


def test_an_image_not_committed_yet_has_no_age(fleet: Fleet) -> None:
    fleet.set_image(fleet.stages[0], "alpha", 9, pinned=False, commit=False)
    git(fleet.root, "add", "-A")  # staged: the model sees it, the ledger does not yet
    td = cells(matrix_table(client_of(fleet.root).get("/").text))[("alpha", fleet.stages[0])]
    assert td.find("code", class_="tag").text == image("alpha", 9).tag
    assert td.find("small", class_="age").text == "not committed yet"


def test_htmx_gets_only_the_table_fragment(fleet: Fleet) -> None:
    client = client_of(fleet.root)
    whole = client.get("/")
    fragment = client.get("/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert "<nav" not in fragment.text
    assert table_rows(matrix_table(fragment.text)) == table_rows(matrix_table(whole.text))
    # the fragment is the element it replaces, polling again
    tree = parse(fragment.text)
    top = [child for child in tree.children if isinstance(child, Element)]
    assert [element.attrs.get("id") for element in top] == ["matrix-view"]
    assert top[0].attrs["hx-get"] == "/"
    assert top[0].attrs["hx-trigger"] == "every 30s"
    assert top[0].attrs["hx-select"] == "#matrix-view"


def test_refresh_is_a_plain_link_that_htmx_enhances(fleet: Fleet) -> None:
    page = parse(client_of(fleet.root).get("/").text)
    refresh = next(a for a in page.find_all("a") if a.text == "Refresh")
    assert refresh.attrs["href"] == "/"
    assert refresh.attrs["hx-get"] == "/"
    assert refresh.attrs["hx-target"] == "#matrix-view"
    container = page.find("div", id="matrix-view")
    assert container.attrs["hx-trigger"] == "every 30s"
    assert container.find("table", class_="matrix")


def test_a_new_commit_is_shown_and_no_commit_loads_nothing_again(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    builds: list[str] = []
    real_load, real_view = site_module.load_repo, matrix_page.matrix_view

    def counted_load(root: Path) -> Any:
        loads.append(root)
        return real_load(root)

    def counted_view(snapshot: Any) -> views.Matrix:
        builds.append(snapshot.head)
        return real_view(snapshot)

    monkeypatch.setattr(site_module, "load_repo", counted_load)
    monkeypatch.setattr(matrix_page, "matrix_view", counted_view)
    client = client_of(fleet.root)
    first = client.get("/")
    again = client.get("/", headers={"HX-Request": "true"})
    assert first.status_code == again.status_code == 200
    assert (len(loads), len(builds)) == (1, 1)

    fleet.set_image(fleet.stages[0], "alpha", 7, pinned=False)
    after = cells(matrix_table(client.get("/").text))[("alpha", fleet.stages[0])]
    assert after.find("code", class_="tag").text == image("alpha", 7).tag
    assert (len(loads), len(builds)) == (2, 2)
    assert builds[0] != builds[1]


def test_the_ages_take_one_walk_of_the_ledger(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``image_changes`` walk for every cell, not one per file."""
    walks: list[int] = []
    real = views.image_changes

    def counted(git_: Any, paths: Any, revision: str = "HEAD") -> Any:
        walks.append(len(paths))
        return real(git_, paths, revision)

    monkeypatch.setattr(views, "image_changes", counted)
    matrix = views.matrix_view(Site(fleet.root).snapshot())
    deployed = sum(cell.deployed for row in matrix.rows for cell in row.cells)
    assert walks == [deployed]
    assert all(cell.since for row in matrix.rows for cell in row.cells if cell.deployed)


def test_the_release_sets_are_the_lines_platform_status_prints(tmp_path: Path, cli: Cli) -> None:
    fleet = make_pipeline(tmp_path / "sets", ["alpha", "beta"], ["alpha"])
    last = fleet.stages[-1]
    promoted = cli(fleet.root, "promote", "--all", "--to", last)
    assert promoted.exit_code == 0, promoted.output
    status = cli(fleet.root, "status")
    expected = [line for line in status.stdout.splitlines() if line.startswith("set: ")]
    assert expected  # the promotion took a release set
    page = parse(client_of(fleet.root).get("/").text)
    assert [li.text for li in page.find("ul", class_="set-lines").find_all("li")] == expected
    set_id = expected[0].split(" runs ")[1].split(" (")[0]
    alpha = cells(page.find("table", class_="matrix"))[("alpha", last)]
    assert alpha.find("small", class_="set").text == f"set {set_id}"
    beta = cells(page.find("table", class_="matrix"))[("beta", last)]
    assert not beta.find_all("small", class_="set")
    # a filter without the stage the set is in shows no line of it
    other = parse(client_of(fleet.root).get("/", params={"env": fleet.stages[0]}).text)
    assert not other.find_all("ul", class_="set-lines")


def test_the_env_filter_shows_those_columns_as_status_e_does(fleet: Fleet, cli: Cli) -> None:
    client = client_of(fleet.root)
    first, last = fleet.stages[0], fleet.stages[-1]
    response = client.get("/", params={"env": [last, first]})
    assert response.status_code == 200
    table = matrix_table(response.text)
    assert [th.text for th in table.find("thead").find_all("th")] == ["Service", first, last]
    whole = cells(matrix_table(client.get("/").text))
    for key, td in cells(table).items():
        assert td.text == whole[key].text, key
    # polling and Refresh keep the filter; the form says which are shown
    page = parse(response.text)
    here = f"/?env={last}&env={first}"
    assert page.find("div", id="matrix-view").attrs["hx-get"] == here
    assert next(a for a in page.find_all("a") if a.text == "Refresh").attrs["href"] == here
    boxes = {box.attrs["value"]: "checked" in box.attrs for box in page.find_all("input")}
    assert boxes == {stage: stage in (first, last) for stage in fleet.stages}


def test_an_unknown_env_is_a_404_with_the_clis_message(fleet: Fleet) -> None:
    response = client_of(fleet.root).get("/", params={"env": "prod-eu"})
    assert response.status_code == 404
    shown = parse(response.text).find("article", role="alert").find("code").text
    cli = run_platform(Path.cwd(), "--repo", str(fleet.root), "status", "-e", "prod-eu")
    assert cli.returncode == 2
    assert shown == cli.stderr.strip().splitlines()[0]
