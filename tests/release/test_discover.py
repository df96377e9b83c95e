"""``platform discover`` against the real registry: tags listed page by page, a policy per
service in pipeline.yaml, what is new published through ``publish``, and nothing the second
time."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from platformctl.discover import list_tags, semver_range
from platformctl.model import Image
from tests.cli.test_bad_input import state
from tests.conftest import edit_yaml, git
from tests.release import test_publish
from tests.release.fleet import Fleet, bare_remote, clone_of, write_image
from tests.release.test_publish import Cli, World, clone_world, trailers_of
from tests.support import github as fake_github
from tests.support.github import FakeGitHub
from tests.support.http import Answer, Request, serve

# the fixtures of test_publish: a fleet whose images are in the session's real registry
template, world = test_publish.template, test_publish.world
github = fake_github.github


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        (">=1.2.0 <2.0.0", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
        ("^1.4", ["1.4.0", "1.99.0"], ["1.3.9", "2.0.0"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("~2.3.1", ["2.3.1", "2.3.7"], ["2.4.0", "2.3.0"]),
        ("1.x", ["1.0.0", "1.7.3"], ["2.0.0", "0.9.0"]),
        ("<1.0.0 || >=3", ["0.9.0", "3.0.0"], ["1.0.0", "2.9.9"]),
        ("=1.2.3", ["1.2.3"], ["1.2.4"]),
    ],
)
def test_semver_ranges_read_as_node_semver_reads_them(
    text: str, inside: list[str], outside: list[str]
) -> None:
    check = semver_range(text)

    def version(tag: str) -> tuple[int, int, int]:
        major, minor, patch = (int(part) for part in tag.split("."))
        return major, minor, patch

    assert [tag for tag in inside if not check(version(tag))] == []
    assert [tag for tag in outside if check(version(tag))] == []


def test_tags_are_listed_page_by_page_following_the_link_header(world: World) -> None:
    tags = [f"1.{n}.0" for n in range(1, 6)]
    for tag in tags:
        world.push("orders", tag)
    client = world.registry.client()
    listed = list_tags(client, f"{world.prefix}/orders", time.monotonic() + 30, page=2)
    # the cosign signature of 1.0.0 is a tag too (``sha256-<hex>.sig``)
    signature = "sha256-" + world.image("orders").digest.removeprefix("sha256:") + ".sig"
    assert sorted(listed) == sorted(["1.0.0", *tags, signature])


def policies(world: World, **policy: dict[str, str]) -> None:
    def change(pipeline: Any) -> None:
        pipeline["discover"] = policy

    edit_yaml(world.root / "environments/pipeline.yaml", change, sequence_indent=4)
    git(world.root, "commit", "-qam", "discover policies")


def test_discover_twice_publishes_once_and_pushes(world: World, cli: Cli, tmp_path: Path) -> None:
    policies(world, orders={"semver": "^1.0.0"}, billing={"pattern": "^main-[0-9a-f]{7}$"})
    for tag in ("1.1.0", "1.2.0", "2.0.0", "1.3.0-rc.1"):
        world.push("orders", tag, "2026-02-01T00:00:00Z")
    newest = world.push("billing", "main-aaaaaaa", "2026-03-01T00:00:00Z")
    world.push("billing", "main-bbbbbbb", "2026-02-01T00:00:00Z")
    world.push("billing", "latest", "2026-04-01T00:00:00Z")
    remote = bare_remote(world.fleet, tmp_path / "remote.git")
    clone: Fleet = clone_of(remote, tmp_path / "clone", world.fleet, "ci")
    first = cli(clone.root, "discover", "--push")
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        f"billing: published: main-aaaaaaa@{newest[7:19]} into {world.first}"
    )
    assert lines[1].startswith("orders: published: 1.2.0@")
    assert "pushed to origin/main" in lines[1]
    subjects = git(remote, "log", "--format=%s", "-2", "main").splitlines()
    assert sorted(subjects) == [
        f"publish(billing): {world.first} main-aaaaaaa",
        f"publish(orders): {world.first} 1.2.0",
    ]
    tip = git(remote, "rev-parse", "main")
    again = cli(clone.root, "discover", "--push", "-o", "json")
    assert again.exit_code == 0, again.output
    statuses = {s["service"]: s["status"] for s in json.loads(again.stdout)["services"]}
    assert statuses == {"billing": "up-to-date", "orders": "up-to-date"}
    assert git(remote, "rev-parse", "main") == tip


def test_a_policy_that_matches_nothing_says_so_and_writes_nothing(world: World, cli: Cli) -> None:
    policies(world, orders={"semver": ">=5.0.0"})
    head = git(world.root, "rev-parse", "HEAD")
    result = cli(world.root, "discover", "-s", "orders", "-s", "billing")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "orders: no-match: no tag of 1 matches semver >=5.0.0",
        "billing: no-policy: no discover policy in environments/pipeline.yaml",
    ]
    assert git(world.root, "rev-parse", "HEAD") == head


def test_a_dry_run_says_what_it_would_publish_and_writes_nothing(world: World, cli: Cli) -> None:
    policies(world, orders={"semver": "^1"})
    world.push("orders", "1.4.0", "2026-02-01T00:00:00Z")
    head = git(world.root, "rev-parse", "HEAD")
    result = cli(world.root, "discover", "--dry-run", "-s", "orders")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("orders: would-publish: 1.4.0@")
    assert git(world.root, "rev-parse", "HEAD") == head
    assert git(world.root, "status", "--porcelain") == ""


def test_a_stage_running_a_newer_build_than_the_policy_names_is_left_alone(
    world: World, cli: Cli
) -> None:
    world.push("orders", "0.9.9-hotfix", "2026-03-01T00:00:00Z")
    assert cli(world.root, "publish", "orders", "--tag", "0.9.9-hotfix").exit_code == 0
    policies(world, orders={"semver": "^1"})
    head = git(world.root, "rev-parse", "HEAD")
    result = cli(world.root, "discover", "-s", "orders")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("orders: newer-running: 1.0.0 is not newer: ")
    assert git(world.root, "rev-parse", "HEAD") == head


def test_discover_opens_one_pull_request_per_service_and_updates_them_when_run_again(
    world: World, cli: Cli, tmp_path: Path, github: FakeGitHub
) -> None:
    policies(world, orders={"semver": "^1.0.0"}, billing={"pattern": "^main-[0-9a-f]{7}$"})
    world.push("orders", "1.2.0", "2026-02-01T00:00:00Z")
    world.push("billing", "main-aaaaaaa", "2026-03-01T00:00:00Z")
    remote, clone = clone_world(world, tmp_path)
    main, head = git(remote, "rev-parse", "main"), git(clone, "rev-parse", "HEAD")
    first = cli(clone, "discover", "--pull-request")
    assert first.exit_code == 0, first.output
    url = "https://github.com/acme-corp/platform/pull/"
    lines = first.stdout.splitlines()
    assert lines[0].startswith("billing: published: main-aaaaaaa@")
    assert lines[0].endswith(f"into {world.first}: pull request {url}1")
    assert lines[1].startswith("orders: published: 1.2.0@")
    assert lines[1].endswith(f"into {world.first}: pull request {url}2")
    heads = {pull["head"]["ref"]: pull["title"] for pull in github.pulls.values()}
    assert heads == {
        f"platform/publish/{world.first}/billing": f"publish(billing): {world.first} main-aaaaaaa",
        f"platform/publish/{world.first}/orders": f"publish(orders): {world.first} 1.2.0",
    }
    for branch in heads:
        assert trailers_of(remote, "Platform-Action", branch) == ["publish"]
    assert [p["state"] for p in github.pulls.values()] == ["open", "open"]  # none superseded
    assert (git(remote, "rev-parse", "main"), git(clone, "rev-parse", "HEAD")) == (main, head)
    assert git(clone, "status", "--porcelain") == ""
    # the stage still runs the old builds until the pull requests are merged: a second run
    # updates the same pull requests instead of opening more
    again = cli(clone, "discover", "--pull-request", "-o", "json")
    assert again.exit_code == 0, again.output
    numbers = [s["pull_request"]["number"] for s in json.loads(again.stdout)["services"]]
    assert numbers == [1, 2]
    assert len(github.pulls) == 2


def test_a_registry_slower_than_the_time_limit_stops_discover_and_writes_nothing(
    world: World, cli: Cli
) -> None:
    """A registry that answers the first page of tags and then stalls on the second: the
    service's line says how far listing got, the run exits 3, nothing is written."""
    released = threading.Event()
    name = "acme/orders"

    def registry_api(request: Request) -> Answer:
        assert request.path == f"/v2/{name}/tags/list", request.path
        if "last" not in request.query:
            link = f'</v2/{name}/tags/list?n=100&last=1.1.0>; rel="next"'
            return 200, {"name": name, "tags": ["1.0.0", "1.1.0"]}, {"Link": link}
        released.wait(timeout=20)  # far longer than the limit; let go when the test ends
        return 200, {"name": name, "tags": ["1.2.0"]}

    policies(world, orders={"semver": "^1"})
    with serve(registry_api) as url:
        host = url.removeprefix("http://")
        values = world.fleet.values(world.first, "orders")
        write_image(values, Image(f"{host}/{name}", "1.0.0"))
        git(world.root, "commit", "-qam", "orders from a slow registry")
        before = state(world.root)
        try:
            text = cli(world.root, "discover", "-s", "orders", "--push", "--time-limit", "0.5")
            data = cli(world.root, "discover", "--time-limit", "0.5", "--push", "-o", "json")
        finally:
            released.set()
    assert text.exit_code == 3, text.output
    assert text.stdout.splitlines() == [
        f"orders: failed: {url} listed 2 tags of {name} and no more within the time limit "
        "(raise --time-limit)"
    ]
    assert text.stderr.startswith("error: discover: 1 service(s) failed, first: ")
    assert data.exit_code == 3, data.output
    (slow,) = [s for s in json.loads(data.stdout)["services"] if s["service"] == "orders"]
    assert (slow["status"], slow["commit"], slow["exit_code"]) == ("failed", None, 3)
    assert state(world.root) == before
