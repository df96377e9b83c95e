"""Every route of the dashboard, whichever pages it has: read-only, self-contained (no URL of
another host to load or post to), no secret in any page, accessible markup, the CSP sent, and
a repository that fails to load is the CLI's one line with a 500.

The routes are read from ``create_app(...).routes``, so a page added later is covered without
a change here, unless it has a path parameter this file cannot fill yet (``PARAMETERS``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute
from httpx import Response

from platformctl.dashboard.app import SECURITY_HEADERS
from platformctl.dashboard.pages import PAGES
from platformctl.dashboard.views import commit_base
from platformctl.model import load_repo
from tests.conftest import commit_edit, edit_yaml, git, run_platform
from tests.dashboard.conftest import Element, client_of, parse
from tests.release.fleet import Fleet, make_pipeline

Cli = Callable[..., Any]
# secrets the fixture puts in the process's environment, the repository and its git config
REMOTE_SECRET = "remote-password-7f3a"
PIPELINE_SECRET = "pipeline-password-91c2"
WEBHOOK_SECRET = "HOOKSECRET5d0e"
GITHUB_SECRET = "ghp_testsecret0123456789"
URL_ATTRIBUTES = ("src", "href", "action", "formaction", "xlink:href", "poster", "hx-get")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def fleet(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """A pipeline with a hold, whose stages name token variables (all set, to secrets), one
    stage a webhook URL with its token in the file, a remote and a repository URL with
    credentials."""
    fleet = make_pipeline(tmp_path / "fleet", ["alpha", "beta"], ["alpha"])
    held = cli(fleet.root, "hold", "beta", "--env", fleet.stages[1], "--reason", "flaky canary")
    assert held.exit_code == 0, held.output

    def pipeline(data: Any) -> None:
        data["repository"]["url"] = f"https://deploy:{PIPELINE_SECRET}@git.example.com/t/p.git"

    def webhook(data: Any) -> None:
        hook = f"https://hooks.example.com/services/T00/B00/{WEBHOOK_SECRET}"
        data.setdefault("notifications", {})["webhook"] = {"url": hook}

    edit_yaml(fleet.root / "environments" / fleet.stages[0] / "environment.yaml", webhook)
    commit_edit(fleet.root, "environments/pipeline.yaml", pipeline, "secrets in the repository")
    remote = f"https://user:{REMOTE_SECRET}@git.example.com/t/p.git"
    git(fleet.root, "remote", "add", "origin", remote)
    for name, value in secret_variables(fleet.root).items():
        monkeypatch.setenv(name, value)
    return fleet


def secret_variables(root: Path) -> dict[str, str]:
    """Every variable the model names for a token or webhook URL, and GITHUB_TOKEN, each
    set to a value of its own."""
    names = {"GITHUB_TOKEN"}
    for environment in load_repo(root).environments:
        for endpoint in (environment.argocd, environment.prometheus):
            if endpoint is not None and endpoint.token_env:
                names.add(endpoint.token_env)
        if environment.webhook_url_env:
            names.add(environment.webhook_url_env)
    values = {name: f"secret-of-{name.lower()}-{index}" for index, name in enumerate(names)}
    values["GITHUB_TOKEN"] = GITHUB_SECRET
    return values


def secrets_of(root: Path) -> list[str]:
    return [
        REMOTE_SECRET,
        PIPELINE_SECRET,
        WEBHOOK_SECRET,
        *(os.environ[name] for name in secret_variables(root)),
    ]


def page_routes() -> list[APIRoute]:
    """The routes of every page: ``create_app`` includes each ``PAGES`` module's router as it
    is (no prefix); the application's own ``routes`` nest them in private wrappers."""
    routes = [route for module in PAGES for route in module.router.routes]
    assert all(isinstance(route, APIRoute) for route in routes)
    return [route for route in routes if isinstance(route, APIRoute)]


def parameters(fleet: Fleet) -> dict[str, str]:
    """A value for each path parameter a page may have, from the fixture repository."""
    return {
        "name": fleet.services[0],
        "service": fleet.services[0],
        "env": fleet.stages[1],
        "environment": fleet.stages[1],
        "stage": fleet.stages[1],
    }


def paths(fleet: Fleet) -> Iterator[str]:
    """Each page route's path, its parameters filled in."""
    known = parameters(fleet)
    for route in page_routes():
        missing = set(route.param_convertors) - set(known)
        assert not missing, f"{route.path}: add a value for {missing} to parameters()"
        yield route.path.format(**{name: known[name] for name in route.param_convertors})


def test_there_are_pages_and_every_route_only_reads(fleet: Fleet) -> None:
    routes = page_routes()
    assert "/" in {route.path for route in routes}
    for route in routes:
        assert route.methods <= {"GET", "HEAD"}, route.path
    client = client_of(fleet.root)
    for path in paths(fleet):
        for method in WRITES:
            assert client.request(method, path).status_code == 405, (method, path)


def external(url: str, base: str | None) -> bool:
    """Whether ``url`` points at another host (the repository's commit links excepted: they
    are navigation to the repository the model names, not something the page loads)."""
    if base is not None and url.startswith(base):
        return False
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:  # relative: the same origin
        return False
    return not (parts.scheme in ("http", "https") and parts.netloc == "testserver")


@dataclass(frozen=True)
class Rules:
    """What a page is checked against: the secrets it must not show, and the repository's
    commit links (the one kind of link to another host a page may have)."""

    secrets: tuple[str, ...]
    commit_base: str | None

    @classmethod
    def of(cls, root: Path) -> Rules:
        return cls(tuple(secrets_of(root)), commit_base(load_repo(root).repository_url))


def check_page(response: Response, rules: Rules, *, whole: bool = True) -> None:
    """What every page (and fragment) of the dashboard must be."""
    path = response.request.url.path
    text = response.text
    assert (
        response.headers["Content-Security-Policy"] == (SECURITY_HEADERS["Content-Security-Policy"])
    )
    for secret in rules.secrets:
        assert secret not in text, (path, secret)
    tree = parse(text)
    base = rules.commit_base
    for element in tree.iter():
        for name in URL_ATTRIBUTES:
            url = element.attrs.get(name)
            if url is not None:
                assert not external(url, base), (path, element.tag, name, url)
        # the CSP refuses inline styles and scripts: they would silently do nothing
        assert "style" not in element.attrs, (path, element.tag)
        assert not any(name.startswith("on") for name in element.attrs), (path, element.tag)
        assert element.tag != "style", path
        if element.tag == "script":
            assert element.attrs.get("src"), path
    for table in tree.find_all("table"):
        assert table.find_all("th"), (path, "a table without headers")
    check_labels(tree, path)
    if whole:
        assert tree.find("html").attrs.get("lang"), path


def check_labels(tree: Element, path: str) -> None:
    """Every form control has a label: a ``<label for>``, one around it, or an aria one."""
    labelled = {label.attrs.get("for") for label in tree.find_all("label")}
    inside = {id(control) for label in tree.find_all("label") for control in label.iter()}
    for control in tree.iter():
        if control.tag not in ("input", "select", "textarea"):
            continue
        if control.attrs.get("type") in ("hidden", "submit", "button", "reset"):
            continue
        assert (
            control.attrs.get("id") in labelled
            or id(control) in inside
            or control.attrs.get("aria-label")
            or control.attrs.get("aria-labelledby")
        ), (path, control.tag, control.attrs)


def test_every_page_is_self_contained_secret_free_and_accessible(fleet: Fleet) -> None:
    client, rules = client_of(fleet.root), Rules.of(fleet.root)
    checked = 0
    for path in paths(fleet):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        if "HEAD" in methods_of(path):
            assert client.head(path).status_code == 200, path
        assert response.headers["content-type"].startswith("text/html"), path
        check_page(response, rules)
        fragment = client.get(path, headers={"HX-Request": "true"})
        assert fragment.status_code == 200, path
        check_page(fragment, rules, whole="<html" in fragment.text)
        checked += 1
    assert checked == len(page_routes()) >= 2


def methods_of(path: str) -> set[str]:
    """The methods of the route whose template (parameters filled or not) is ``path``."""
    for route in page_routes():
        if route.path_regex.match(path):
            return set(route.methods)
    raise AssertionError(f"no route for {path}")


def test_the_error_pages_are_held_to_the_same(fleet: Fleet) -> None:
    client, rules = client_of(fleet.root), Rules.of(fleet.root)
    for path in ("/no-such-page", "/services/no-such-service"):
        response = client.get(path)
        assert response.status_code == 404, path
        check_page(response, rules)


def test_the_checks_themselves_catch_what_they_look_for(fleet: Fleet) -> None:
    """The page checks fail on the faults they are for (so a green run means something)."""
    base = "https://git.example.com/t/p/commit/"
    assert external("https://cdn.example.com/x.js", base)
    assert external("//cdn.example.com/x.js", base)
    assert external("http://testserver.evil.example/", base)
    assert not external("/static/pico.min.css", base)
    assert not external("http://testserver/static/htmx.min.js", base)
    assert not external(f"{base}0123", base)
    tree = parse('<label for="a">A</label><input id="a"><label>B <select></select></label>')
    check_labels(tree, "/ok")
    with pytest.raises(AssertionError):
        check_labels(parse('<input id="b" type="text">'), "/bad")


def test_a_repository_that_fails_to_load_is_a_500_with_the_clis_message(fleet: Fleet) -> None:
    rules = Rules.of(fleet.root)
    (fleet.root / "environments" / "pipeline.yaml").write_text("stages: [\n")
    git(fleet.root, "commit", "-qam", "a broken pipeline")
    cli = run_platform(Path.cwd(), "--repo", str(fleet.root), "status")
    assert cli.returncode != 0
    line = cli.stderr.strip().splitlines()[0]
    assert line.startswith("error: ")
    client = client_of(fleet.root)
    assert paths_without_the_model(fleet)
    for path in paths_without_the_model(fleet):
        response = client.get(path)
        assert response.status_code == 500, path
        shown = parse(response.text).find("article", role="alert").find("code").text
        assert shown == line, path
        check_page(response, rules)


def paths_without_the_model(fleet: Fleet) -> list[str]:
    """The page paths, filled from the fixture's names (the model cannot be read now)."""
    known = parameters(fleet)
    return [
        route.path.format(**{name: known[name] for name in route.param_convertors})
        for route in page_routes()
    ]
