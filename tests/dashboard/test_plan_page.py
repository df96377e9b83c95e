"""The Next promotion page: the offline dry run of ``platform promote --all --to STAGE``, as
the CLI plans it, on fixture repositories: the same services move with the same diff, a hold
shows with its reason, an offline gate shows its verdict and a network gate is left to the
promotion (no socket is opened), and nothing in the repository is written.

``Page`` and ``cli`` are shared with test_metrics_page.py: what a page shows, parsed from its
HTML, and what the CLI prints for the same question.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from platformctl.cli import app
from platformctl.dashboard.app import create_app
from platformctl.dashboard.pages.plan import AT_PROMOTION, Fresh
from platformctl.dashboard.site import Site
from platformctl.gates.config import NETWORK_GATES
from tests.cli.test_bad_input import state
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, image, make_fleet
from tests.release.test_metrics import dated


class Page(HTMLParser):
    """Each ``<table>`` (by its class) as rows of cell texts; each ``<pre>``'s text; each
    inline ``<svg>`` as markup."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.pres: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._pre: list[str] | None = None
        self.text: list[str] = []
        self.feed(html)
        self.svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self._pre.append(data)

    def body(self) -> str:
        """The page's text, whitespace collapsed."""
        return " ".join("".join(self.text).split())

    def rows(self, table: str) -> list[list[str]]:
        """The body rows of the table of this class (its first row is the header)."""
        return self.tables[table][1:]


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    """``platform --repo ROOT ARGS`` in this process: exit code, stdout, stderr."""
    result = CliRunner().invoke(app, ["--repo", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def cli_error(root: Path, *args: str) -> str:
    """The one-line message the CLI prints after ``error: `` for ``ARGS``."""
    code, _, stderr = cli(root, *args)
    assert code != 0, stderr
    (line,) = stderr.splitlines()
    assert line.startswith("error: "), line
    return line.removeprefix("error: ")


def written(root: Path) -> dict[str, Any]:
    """Everything a write would change: the tree, index, refs, HEAD and stash (``state``),
    ``git status``, and every file under .git (a lock, a journal, a new object) and the
    cache folder."""
    return {
        **state(root),
        # without the optional lock git status would refresh the index's stat data itself
        "status": git(root, "--no-optional-locks", "status", "--porcelain", "--ignored"),
        "git": sorted(
            (str(path.relative_to(root)), path.stat().st_mtime_ns)
            for path in (root / ".git").rglob("*")
            if path.is_file()
        ),
        "cache": (root / ".platform-cache").exists(),
    }


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate endpoint asked would open a socket: any connection fails the test instead."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the page opened a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _client(root: Path) -> TestClient:
    return TestClient(create_app(root))


def _moving(page: Page) -> list[list[str]]:
    """(service, from, to, digest) of the services the page says would move."""
    return [[r[0], r[2], r[3], r[4]] for r in page.rows("plan-services") if r[1] == "yes"]


def _cli_moving(payload: dict[str, Any], fleet: Fleet, stage: str) -> list[list[str]]:
    """The same, from ``promote -o json`` (before/after are references: read as labels)."""
    rows = []
    for change in payload["changes"]:
        before = fleet.image(stage, change["service"]).label if change["before"] else "(no image)"
        digest = "unknown (offline)" if change["digest_unknown"] else change["digest"][7:19]
        after = change["tag"] + (f"@{change['digest'][7:19]}" if change["digest"] else "")
        rows.append([change["service"], before, after, digest])
    return rows


def _dry_run(root: Path, stage: str, *more: str) -> tuple[int, dict[str, Any]]:
    import json

    code, stdout, _ = cli(root, "promote", "--all", "--to", stage, "--dry-run", *more, "-o", "json")
    return code, json.loads(stdout)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    """Three services in every stage at build 1; alpha and beta have build 2 in the first."""
    fleet = make_fleet(tmp_path / "fleet", ["alpha", "beta", "gamma"])
    fleet.set_image(fleet.stages[0], "alpha", 2, commit=False)
    fleet.set_image(fleet.stages[0], "beta", 2)
    return fleet


def test_the_services_that_move_and_the_diff_are_the_dry_runs(fleet: Fleet) -> None:
    first, second = fleet.stages[:2]
    code, payload = _dry_run(fleet.root, second)
    assert code == 0
    response = _client(fleet.root).get(f"/plan/{second}")
    assert response.status_code == 200
    # no other host (base.html's url_for names this one) and no style attribute (the CSP)
    own = response.text.replace("http://testserver/", "/")
    assert "://" not in own
    assert "style=" not in own
    page = Page(response.text)
    assert _moving(page) == _cli_moving(payload, fleet, second)
    assert [row[0] for row in _moving(page)] == ["alpha", "beta"]
    (gamma,) = [r for r in page.rows("plan-services") if r[0] == "gamma"]
    assert gamma[1] == "no"
    assert gamma[5] == f"already as planned in {second}"
    (diff,) = page.pres
    assert diff == payload["diff"]
    assert diff.count(f"+image: {{repository: {image('alpha', 2).repository}") == 1
    body = page.body()
    assert f"promote(alpha,beta): {first} → {second}" in body
    assert f"release set {first}@" in body  # the set the plan takes, as the CLI notes it
    # make_fleet declares no gates: only the policy gate, which the promotion runs
    assert [row[:3] for row in page.rows("plan-gates")] == [["policy", "*", AT_PROMOTION]]


def test_the_command_without_offline_plans_the_same_here(fleet: Fleet) -> None:
    """With no network gate declared, --offline changes nothing: the page is the dry run."""
    second = fleet.stages[1]
    _, offline = _dry_run(fleet.root, second, "--offline")
    _, online = _dry_run(fleet.root, second)
    assert offline["changes"] == online["changes"]
    assert offline["diff"] == online["diff"]


def test_a_held_service_shows_held_with_its_reason(fleet: Fleet, no_network: None) -> None:
    second = fleet.stages[1]
    reason = "<script>alert('x')</script> & \"flaky\""
    code, _, stderr = cli(fleet.root, "hold", "beta", "--env", second, "--reason", reason)
    assert code == 0, stderr
    refusal = cli_error(fleet.root, "promote", "--all", "--to", second, "--dry-run")
    assert refusal.startswith(f"beta is held in {second}")
    code, payload = _dry_run(fleet.root, second, "--skip-held")
    assert code == 0
    assert payload["skipped_held"] == ["beta"]
    before = written(fleet.root)
    response = _client(fleet.root).get(f"/plan/{second}")
    assert response.status_code == 200  # a plan that refuses is still the answer
    assert "<script>alert" not in response.text
    page = Page(response.text)
    assert f"The command refuses (exit 1): error: {refusal}" in page.body()
    (beta,) = [r for r in page.rows("plan-services") if r[0] == "beta"]
    assert beta[1] == "no"
    assert beta[6] == f"held: {reason}"
    assert beta[5].startswith("held: it has a change, so the promotion refuses")
    # what is shown instead: the plan of --skip-held, as that command makes it
    assert _moving(page) == _cli_moving(payload, fleet, second)
    assert page.pres == [payload["diff"]]
    assert written(fleet.root) == before


def test_a_plan_that_refuses_with_skip_held_too_says_both(fleet: Fleet) -> None:
    """beta is held; alpha's build has no digest and the stage requires one: the command
    refuses for the hold, and with --skip-held for the digest. The page says both."""
    second = fleet.stages[1]

    def digests(data: Any) -> None:
        data.setdefault("policy", {})["requireDigest"] = True

    edit_yaml(fleet.root / "environments" / second / "environment.yaml", digests)
    fleet.set_image(fleet.stages[0], "alpha", 3, pinned=False, commit=False)
    git(fleet.root, "commit", "-qam", "digests required; CI's tag of alpha")
    code, _, stderr = cli(fleet.root, "hold", "beta", "--env", second, "--reason", "flaky")
    assert code == 0, stderr
    held = cli_error(fleet.root, "promote", "--all", "--to", second, "--dry-run")
    digest = cli_error(fleet.root, "promote", "--all", "--to", second, "--dry-run", "--skip-held")
    assert "has no digest" in digest
    response = _client(fleet.root).get(f"/plan/{second}")
    assert response.status_code == 200
    body = Page(response.text).body()
    assert f"The command refuses (exit 1): error: {held}" in body
    assert f"With --skip-held it refuses too (exit 1): error: {digest}" in body
    assert "Held in" in body  # no plan to show: the holds are listed on their own
    assert "beta: flaky" in body


def _gated(tmp_path: Path, made: dt.timedelta, arrived: dt.timedelta) -> Fleet:
    """A fleet made ``made`` ago whose alpha build 2 reached the first stage ``arrived`` ago;
    the second stage requires a day's soak there, and asks the registry and Argo CD."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with dated(now - made):
        fleet = make_fleet(tmp_path / "fleet", ["alpha", "beta"])

    def gates(pipeline: Any) -> None:
        pipeline["stages"][1]["gates"] = {"soak": {"minimum": "24h"}, "registry": {}, "argocd": {}}

    edit_yaml(fleet.root / "environments" / "pipeline.yaml", gates, sequence_indent=4)
    with dated(now - made):
        git(fleet.root, "commit", "-qam", "the second stage soaks a day")
    with dated(now - arrived):
        fleet.set_image(fleet.stages[0], "alpha", 2, pinned=False)  # CI's tag
    return fleet


def test_offline_gates_get_their_verdict_network_gates_wait(
    tmp_path: Path, no_network: None
) -> None:
    fleet = _gated(tmp_path, dt.timedelta(days=5), dt.timedelta(days=2))
    second = fleet.stages[1]
    code, payload = _dry_run(fleet.root, second, "--offline")
    assert code == 0, payload["error"]
    before = written(fleet.root)
    page = Page(_client(fleet.root).get(f"/plan/{second}").text)
    gates = page.rows("plan-gates")
    expected = [
        [
            g["gate"],
            g["service"] or "*",
            AT_PROMOTION
            if g["verdict"] == "skipped" and g["gate"] in NETWORK_GATES
            else g["verdict"],
        ]
        for g in payload["gates"]
    ]
    assert [row[:3] for row in gates[:-1]] == expected
    assert [row[:3] for row in gates] == [
        ["soak", "alpha", "passed"],
        ["registry", "alpha", AT_PROMOTION],
        ["argocd", "alpha", AT_PROMOTION],
        ["policy", "*", AT_PROMOTION],
    ]
    # the soak's evidence as the CLI measured it (a second apart: the time it ran is "now")
    ran = re.compile(r"ran [0-9dhms]+ ")
    assert ran.sub("ran T ", gates[0][3]) == ran.sub("ran T ", payload["gates"][0]["measured"])
    assert gates[1][3].startswith("not asked offline")
    assert _moving(page) == _cli_moving(payload, fleet, second)
    assert _moving(page)[0][3] == "unknown (offline)"  # the registry gate resolves the tag
    assert written(fleet.root) == before


def test_a_set_soaking_still_leaves_the_one_that_soaked(tmp_path: Path, no_network: None) -> None:
    """Build 2 arrived an hour ago: the set that soaked a day is build 1's, already there."""
    fleet = _gated(tmp_path, dt.timedelta(days=5), dt.timedelta(hours=1))
    second = fleet.stages[1]
    code, payload = _dry_run(fleet.root, second, "--offline")
    assert code == 0
    assert payload["changes"] == []
    assert payload["unchanged"] == ["alpha", "beta"]
    page = Page(_client(fleet.root).get(f"/plan/{second}").text)
    body = page.body()
    assert f"nothing to promote: alpha, beta already as planned in {second}" in body
    assert f"release set {payload['release_set']['id']}" in body
    assert _moving(page) == []
    assert page.pres == []
    assert "Declared: soak, registry, argocd; not evaluated: there is nothing to promote" in body


def test_a_release_not_soaked_yet_shows_the_clis_refusal(tmp_path: Path, no_network: None) -> None:
    fleet = _gated(tmp_path, dt.timedelta(hours=2), dt.timedelta(hours=1))
    second = fleet.stages[1]
    args = ("promote", "--all", "--to", second, "--dry-run", "--offline")
    code, _, _ = cli(fleet.root, *args)
    refusal = cli_error(fleet.root, *args)
    assert "unchanged" in refusal  # soaked_set: no release set of the stage has run 24h
    response = _client(fleet.root).get(f"/plan/{second}")
    assert response.status_code == 200
    assert f"The command refuses (exit {code}): error: {refusal}" in Page(response.text).body()


def test_a_failed_offline_gate_refuses_with_its_evidence(fleet: Fleet, no_network: None) -> None:
    """A freeze window open now: the gate fails, the command exits 1 naming it, and the page
    shows the failed row with the window's name (text someone typed: escaped)."""
    second = fleet.stages[1]
    today = dt.datetime.now(dt.UTC).date()
    name = '<b>release & "freeze"</b>'

    def freeze(pipeline: Any) -> None:
        window = {"name": name, "from": str(today - dt.timedelta(days=1))}
        window["until"] = str(today + dt.timedelta(days=2))
        pipeline["stages"][1]["gates"] = {"freeze": {"timezone": "UTC", "windows": [window]}}

    edit_yaml(fleet.root / "environments" / "pipeline.yaml", freeze, sequence_indent=4)
    git(fleet.root, "commit", "-qam", "a freeze in the second stage")
    code, payload = _dry_run(fleet.root, second)
    assert code == 1
    assert payload["refused"]
    response = _client(fleet.root).get(f"/plan/{second}")
    assert response.status_code == 200
    assert "<b>release" not in response.text
    page = Page(response.text)
    (gate, policy) = page.rows("plan-gates")
    assert gate[:3] == ["freeze", "*", "failed"]
    # as the CLI measured it, but for the minute it was measured at, which may have turned
    clock = re.compile(r" \([A-Z][a-z]{2} [0-9-]+ [0-9:]+ UTC\)$")
    assert clock.sub("", gate[3]) == clock.sub("", payload["gates"][0]["measured"])
    assert clock.search(gate[3])
    assert name in gate[3]
    assert policy[0] == "policy"
    assert f"The command refuses (exit 1): error: {payload['error']}" in page.body()
    assert _moving(page) == _cli_moving(payload, fleet, second)


def test_unknown_and_first_stages_are_404_with_the_clis_message(fleet: Fleet) -> None:
    client = _client(fleet.root)
    for stage in ("nowhere", fleet.stages[0]):
        said = cli_error(fleet.root, "promote", "--all", "--to", stage, "--dry-run")
        response = client.get(f"/plan/{stage}")
        assert response.status_code == 404
        assert f"error: {said}" in Page(response.text).body()


def test_the_index_lists_the_stages_and_the_form_redirects(fleet: Fleet) -> None:
    client = _client(fleet.root)
    page = client.get("/plan")
    assert page.status_code == 200
    later = fleet.stages[1:]
    assert re.findall(r'<a href="/plan/([^"]+)"', page.text) == list(later)
    assert re.findall(r'<option value="([^"]+)"', page.text) == list(later)
    assert '<label for="plan-stage">' in page.text
    assert '<select id="plan-stage" name="stage">' in page.text
    moved = client.get("/plan", params={"stage": later[-1]}, follow_redirects=False)
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/plan/{later[-1]}"
    odd = client.get("/plan", params={"stage": "a/b?c"}, follow_redirects=False)
    assert odd.headers["location"] == "/plan/a%2Fb%3Fc"


def test_a_new_head_is_planned_again(fleet: Fleet) -> None:
    second = fleet.stages[1]
    client = _client(fleet.root)
    assert [r[0] for r in _moving(Page(client.get(f"/plan/{second}").text))] == ["alpha", "beta"]
    fleet.set_image(fleet.stages[0], "gamma", 2)
    moving = _moving(Page(client.get(f"/plan/{second}").text))
    assert [r[0] for r in moving] == ["alpha", "beta", "gamma"]


def test_fresh_builds_again_once_its_ttl_passed(fleet: Fleet) -> None:
    snapshot = Site(fleet.root).snapshot()
    built: list[int] = []

    def build(_: object) -> int:
        built.append(1)
        return len(built)

    kept = Fresh[int](snapshot, ttl=3600)
    assert (kept.get(build), kept.get(build)) == (1, 1)
    expired = Fresh[int](snapshot, ttl=0)
    assert (expired.get(build), expired.get(build)) == (2, 3)
