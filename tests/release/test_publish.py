"""``platform publish`` against the real registry the gate tests start, on fixture fleets: the
tag resolved there, the signature checked, one commit through promote's write path, read by
history and by the next promotion like any release."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from platformctl.model import Image, load_repo
from tests.cli.test_bad_input import state
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, bare_remote, clone_of, make_fleet, write_image
from tests.support import github as fake_github
from tests.support.github import FakeGitHub
from tests.support.registry import (
    OCI_MANIFEST,
    RunningRegistry,
    public_key_pem,
    push_manifest,
    push_signature,
    push_single_layer,
)

Cli = Callable[..., Any]
github = fake_github.github  # the fixture
BUILT = "2026-01-01T00:00:00Z"
SOURCE = "0123456789abcdef0123456789abcdef01234567"
BUILD_URL = "https://ci.example/acme/orders/actions/runs/42"


@dataclass
class World:
    """A fleet whose images live in the test registry (each test its own repositories)."""

    fleet: Fleet
    registry: RunningRegistry
    prefix: str
    key: ec.EllipticCurvePrivateKey

    @property
    def root(self) -> Path:
        return self.fleet.root

    @property
    def first(self) -> str:
        return self.fleet.stages[0]

    def repository(self, service: str) -> str:
        return f"{self.registry.host}/{self.prefix}/{service}"

    def push(self, service: str, tag: str, created: str | None = BUILT) -> str:
        """A unique image under ``tag`` whose config says when it was built (or not)."""
        config: dict[str, Any] = {"architecture": "amd64", "os": "linux", "rootfs": {}}
        if created is not None:
            config["created"] = created
        config["rootfs"] = {"type": "layers", "diff_ids": []}
        layer = ("application/vnd.oci.image.layer.v1.tar+gzip", os.urandom(256))
        name = f"{self.prefix}/{service}"
        return push_single_layer(
            self.registry.client(), name, tag, json.dumps(config).encode(), layer
        )

    def sign(
        self, service: str, digest: str, key: ec.EllipticCurvePrivateKey | None = None
    ) -> None:
        push_signature(self.registry.client(), f"{self.prefix}/{service}", digest, key or self.key)

    def image(self, service: str, stage: str | None = None) -> Image:
        return load_repo(self.root).release(service, stage or self.first).image

    def require_signature(self) -> None:
        """The first stage declares the signature gate with this world's key."""

        def change(pipeline: Any) -> None:
            pipeline["stages"][0]["gates"] = {
                "signature": {"publicKeys": [public_key_pem(self.key)]}
            }

        edit_yaml(self.root / "environments/pipeline.yaml", change, sequence_indent=4)
        git(self.root, "commit", "-qam", "the first stage requires signatures")

    def message(self, revision: str = "HEAD") -> str:
        return git(self.root, "log", "-1", "--format=%B", revision)


def make_world(template: Fleet, path: Path, running: RunningRegistry) -> World:
    """A copy of ``template`` whose stages all run build 1.0.0 of each service (tag and
    digest), pushed to repositories of its own and signed."""
    shutil.copytree(template.root, path, symlinks=True)
    fleet = Fleet(path, template.stages, template.services)
    key = ec.generate_private_key(ec.SECP256R1())
    world = World(fleet, running, f"t{secrets.token_hex(4)}", key)
    for service in fleet.services:
        digest = world.push(service, "1.0.0")
        world.sign(service, digest)
        for stage in fleet.stages:
            values = fleet.values(stage, service)
            built = Image(world.repository(service), "1.0.0", digest)
            write_image(values, built)
    git(fleet.root, "commit", "-qam", "the fleet's images are in the test registry")
    return world


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return make_fleet(tmp_path_factory.mktemp("publish") / "fleet", ["orders", "billing"])


@pytest.fixture
def world(template: Fleet, tmp_path: Path, registry: RunningRegistry) -> World:
    return make_world(template, tmp_path / "fleet", registry)


def trailers_of(root: Path, key: str, revision: str = "HEAD") -> list[str]:
    out = git(root, "log", "-1", f"--format=%(trailers:key={key},valueonly)", revision)
    return [line for line in out.splitlines() if line]


def trailers(world: World, key: str, revision: str = "HEAD") -> list[str]:
    return trailers_of(world.root, key, revision)


def test_publish_records_the_registry_digest_as_one_line_with_its_trailers(
    world: World, cli: Cli
) -> None:
    digest = world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    result = cli(
        world.root,
        "publish",
        "orders",
        "--tag",
        "1.1.0",
        "--source-commit",
        SOURCE,
        "--build-url",
        BUILD_URL,
    )
    assert result.exit_code == 0, result.output
    assert world.image("orders") == Image(world.repository("orders"), "1.1.0", digest)
    stat = git(world.root, "show", "--numstat", "--format=", "HEAD").split()
    assert stat == ["1", "1", f"environments/{world.first}/orders.yaml"]
    assert world.message().startswith(f"publish(orders): {world.first} 1.1.0\n")
    assert trailers(world, "Platform-Action") == ["publish"]
    assert trailers(world, "Platform-Source-Commit") == [SOURCE]
    assert trailers(world, "Platform-Build-Url") == [BUILD_URL]
    assert trailers(world, "Platform-Image") == [f"{world.repository('orders')}:1.1.0@{digest}"]
    assert trailers(world, "Platform-Gate")[0].startswith("registry/orders passed (1.1.0 → ")
    assert git(world.root, "status", "--porcelain") == ""


def test_history_reads_a_publish_and_the_next_promotion_takes_it(world: World, cli: Cli) -> None:
    digest = world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    published = cli(
        world.root, "publish", "orders", "--tag", "1.1.0", "--digest", digest,
        "--source-commit", SOURCE, "--build-url", BUILD_URL,
    )  # fmt: skip
    assert published.exit_code == 0, published.output
    history = json.loads(
        cli(world.root, "history", "orders", "-e", world.first, "-o", "json").stdout
    )
    newest = history[0]
    assert (newest["action"], newest["tag"], newest["digest"]) == ("publish", "1.1.0", digest)
    assert (newest["source_commit"], newest["build_url"]) == (SOURCE, BUILD_URL)
    assert newest["gates"][0]["gate"] == "registry"
    assert history[1]["action"] == "manual"  # the fixture's own edit
    table = cli(world.root, "history", "orders", "-e", world.first).stdout
    (row,) = [line for line in table.splitlines() if " publish " in line]
    assert f"build {SOURCE[:12]}" in row
    nxt = world.fleet.stages[1]
    promoted = cli(world.root, "promote", "orders", "--to", nxt)
    assert promoted.exit_code == 0, promoted.output
    assert world.image("orders", nxt) == world.image("orders")
    there = json.loads(cli(world.root, "history", "orders", "-e", nxt, "-o", "json").stdout)[0]
    assert (there["action"], there["from_environment"], there["digest"]) == (
        "promote",
        world.first,
        digest,
    )


def test_publishing_what_runs_changes_nothing(world: World, cli: Cli) -> None:
    head = git(world.root, "rev-parse", "HEAD")
    result = cli(world.root, "publish", "orders", "--tag", "1.0.0")
    assert result.exit_code == 0, result.output
    assert "nothing to publish: orders already as planned" in result.stdout
    assert git(world.root, "rev-parse", "HEAD") == head


def test_a_first_stage_that_requires_signatures_records_the_verified_one(
    world: World, cli: Cli
) -> None:
    world.require_signature()
    digest = world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    world.sign("orders", digest)
    result = cli(world.root, "publish", "orders", "--tag", "1.1.0", "-o", "json")
    assert result.exit_code == 0, result.output
    gates = [g["gate"] for g in json.loads(result.stdout)["gates"]]
    assert gates == ["registry", "signature", "policy"]
    assert any(
        t.startswith("signature/orders passed (signed, key sha256:")
        for t in trailers(world, "Platform-Gate")
    )


def test_force_publishes_a_moved_tag_and_records_why(world: World, cli: Cli) -> None:
    moved = world.push("orders", "1.0.0", "2026-02-01T00:00:00Z")  # pushed over the tag
    refused = cli(world.root, "publish", "orders", "--tag", "1.0.0")
    assert refused.exit_code == 1
    assert "the tag was moved" in refused.stderr
    forced = cli(
        world.root,
        "publish",
        "orders",
        "--tag",
        "1.0.0",
        "--force",
        "--reason",
        "rebuilt base image",
    )
    assert forced.exit_code == 0, forced.output
    assert world.image("orders").digest == moved
    assert trailers(world, "Platform-Reason") == ["rebuilt base image"]
    assert any("overridden" in t and "moved" in t for t in trailers(world, "Platform-Gate"))


def test_the_build_order_is_the_creation_time_not_the_tag(world: World, cli: Cli) -> None:
    """A tag that sorts lower but was built later is newer; one built earlier is older."""
    later = world.push("orders", "0.9.9-hotfix", "2026-03-01T12:00:00.123456789Z")
    assert cli(world.root, "publish", "orders", "--tag", "0.9.9-hotfix").exit_code == 0
    assert world.image("orders").digest == later
    world.push("orders", "2.0.0", "2025-12-31T23:59:59Z")
    older = cli(world.root, "publish", "orders", "--tag", "2.0.0")
    assert older.exit_code == 1
    assert "before 0.9.9-hotfix" in older.stderr


def test_an_index_is_dated_by_its_image_not_by_its_attestation(world: World, cli: Cli) -> None:
    """buildx lists attestations in the index as platform unknown/unknown: not the build."""
    name = f"{world.prefix}/orders"
    image = world.push("orders", "scratch-image", "2026-02-01T00:00:00Z")
    attestation = world.push("orders", "scratch-attestation", "2020-01-01T00:00:00Z")

    def entry(digest: str, os_name: str) -> dict[str, Any]:
        platform = {"architecture": "unknown" if os_name == "unknown" else "amd64", "os": os_name}
        size = len(world.registry.client().manifest(name, digest).content)  # type: ignore[union-attr]
        return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": platform}

    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(attestation, "unknown"), entry(image, "linux")],
    }
    digest = push_manifest(world.registry.client(), name, "1.1.0", index)
    result = cli(world.root, "publish", "orders", "--tag", "1.1.0")
    assert result.exit_code == 0, result.output
    assert world.image("orders").digest == digest


def test_a_publish_pushed_to_a_moved_remote_is_planned_again_on_its_tip(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    remote = bare_remote(world.fleet, tmp_path / "remote.git")
    first = clone_of(remote, tmp_path / "a", world.fleet, "a").root
    second = clone_of(remote, tmp_path / "b", world.fleet, "b").root
    world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    world.push("billing", "1.1.0", "2026-02-01T00:00:00Z")
    assert cli(second, "publish", "billing", "--tag", "1.1.0", "--push").exit_code == 0
    result = cli(first, "publish", "orders", "--tag", "1.1.0", "--push", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["push_attempts"] == 2
    log = git(remote, "log", "--format=%s", "-2", "main").splitlines()
    stage = world.first
    assert log == [f"publish(orders): {stage} 1.1.0", f"publish(billing): {stage} 1.1.0"]
    # the same service published meanwhile: a real conflict, refused, nothing pushed
    world.push("orders", "1.2.0", "2026-02-02T00:00:00Z")
    world.push("orders", "1.3.0", "2026-02-03T00:00:00Z")
    git(second, "pull", "-q")
    assert cli(second, "publish", "orders", "--tag", "1.3.0", "--push").exit_code == 0
    tip = git(remote, "rev-parse", "main")
    conflict = cli(first, "publish", "orders", "--tag", "1.2.0", "--push")
    assert conflict.exit_code == 1, conflict.output
    assert "conflict: orders" in conflict.stderr
    assert git(remote, "rev-parse", "main") == tip


def clone_world(world: World, tmp_path: Path) -> tuple[Path, Path]:
    """A bare remote of the world's fleet and a clone of it (the remote, the clone)."""
    remote = bare_remote(world.fleet, tmp_path / "remote.git")
    return remote, clone_of(remote, tmp_path / "clone", world.fleet, "ci").root


def test_publish_as_a_pull_request_names_the_build_and_leaves_the_branch_alone(
    world: World, tmp_path: Path, cli: Cli, github: FakeGitHub
) -> None:
    remote, clone = clone_world(world, tmp_path)
    digest = world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    before, main = state(clone), git(remote, "rev-parse", "main")
    result = cli(
        clone, "publish", "orders", "--tag", "1.1.0", "--source-commit", SOURCE,
        "--build-url", BUILD_URL, "--pull-request",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    branch = f"platform/publish/{world.first}/orders"
    assert "opened pull request #1: https://github.com/" in result.stdout
    assert f"(branch origin/{branch})" in result.stdout
    (pull,) = github.pulls.values()
    assert (pull["head"]["ref"], pull["base"]["ref"]) == (branch, "main")
    assert pull["title"] == f"publish(orders): {world.first} 1.1.0"
    image = f"{world.repository('orders')}:1.1.0@{digest}"
    named = [
        "Platform-Action: publish",
        f"Platform-Image: {image}",
        f"Platform-Source-Commit: {SOURCE}",
        f"Platform-Build-Url: {BUILD_URL}",
    ]
    assert [line for line in named if line not in pull["body"].splitlines()] == []
    # the commit is on the pull request's branch, with the build's trailers
    assert trailers_of(remote, "Platform-Action", branch) == ["publish"]
    assert trailers_of(remote, "Platform-Source-Commit", branch) == [SOURCE]
    assert trailers_of(remote, "Platform-Build-Url", branch) == [BUILD_URL]
    pushed = git(remote, "rev-parse", branch)
    assert git(remote, "rev-parse", f"{branch}~1") == main
    # main, the clone's branch, index and working tree: untouched (only the remote-tracking
    # ref of the pushed branch is new)
    assert git(remote, "rev-parse", "main") == main
    after = state(clone)
    new_refs = set(after["refs"].splitlines()) - set(before["refs"].splitlines())
    assert new_refs == {f"refs/remotes/origin/{branch} {pushed.strip()}"}
    assert {**after, "refs": ""} == {**before, "refs": ""}


def test_a_publish_github_refuses_leaves_no_branch_behind(
    world: World, tmp_path: Path, cli: Cli, github: FakeGitHub
) -> None:
    github.refuse_create = True
    remote, clone = clone_world(world, tmp_path)
    world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    before = state(clone)
    result = cli(clone, "publish", "orders", "--tag", "1.1.0", "--pull-request")
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: pull request not opened:")
    assert "the branch was put back" in result.stderr
    assert git(remote, "ls-remote", "--heads", str(remote), "platform/*") == ""
    assert state(clone) == before


def test_rollback_after_two_publishes_goes_back_to_the_earlier_publish(
    world: World, cli: Cli
) -> None:
    first = world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    world.push("orders", "1.2.0", "2026-02-02T00:00:00Z")
    for tag in ("1.1.0", "1.2.0"):
        assert cli(world.root, "publish", "orders", "--tag", tag).exit_code == 0
    result = cli(world.root, "rollback", "orders", "--env", world.first, "--reason", "bad build")
    assert result.exit_code == 0, result.output
    assert world.image("orders") == Image(world.repository("orders"), "1.1.0", first)
    assert trailers(world, "Platform-Action") == ["rollback"]


def test_the_next_stage_soaks_a_publish_from_when_its_pull_request_was_merged(
    world: World, tmp_path: Path, cli: Cli, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish commit is dated three days back (CI built and opened it then); it reached
    the branch when its pull request was merged, just now: a 1-day soak is not met."""
    nxt = world.fleet.stages[1]

    def soak(pipeline: Any) -> None:
        pipeline["stages"][1]["gates"] = {"soak": {"minimum": "24h"}}

    edit_yaml(world.root / "environments/pipeline.yaml", soak, sequence_indent=4)
    git(world.root, "commit", "-qam", f"{nxt} soaks a day")
    remote, clone = clone_world(world, tmp_path)
    world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    made = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat()
    with monkeypatch.context() as dated:
        dated.setenv("GIT_COMMITTER_DATE", made)
        dated.setenv("GIT_AUTHOR_DATE", made)
        opened = cli(clone, "publish", "orders", "--tag", "1.1.0", "--pull-request")
    assert opened.exit_code == 0, opened.output
    branch = f"platform/publish/{world.first}/orders"
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(
        git(remote, "log", "-1", "--format=%cI", branch).strip()
    )
    assert age > dt.timedelta(days=2)  # a soak read from the commit's own date would pass
    merger = clone_of(remote, tmp_path / "merger", world.fleet, "github").root
    git(merger, "merge", "-q", "--no-ff", "-m", "Merge pull request #1", f"origin/{branch}")
    git(merger, "push", "-q", "origin", "main")
    git(clone, "pull", "-q")
    refused = cli(clone, "promote", "orders", "--to", nxt)
    assert refused.exit_code == 1, refused.output
    assert f"in {world.first} < 1d" in refused.stdout


# Bad input that needs the registry: one stderr line, the code, the clone unchanged.
Setup = Callable[[World], list[str]]


def _missing_tag(world: World) -> list[str]:
    return ["--tag", "9.9.9"]


def _other_digest(world: World) -> list[str]:
    world.push("orders", "1.1.0")
    return ["--tag", "1.1.0", "--digest", world.push("orders", "1.1.1")]


def _unsigned(world: World) -> list[str]:
    world.require_signature()
    world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    return ["--tag", "1.1.0"]


def _signed_by_another_key(world: World) -> list[str]:
    world.require_signature()
    digest = world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    world.sign("orders", digest, ec.generate_private_key(ec.SECP256R1()))
    return ["--tag", "1.1.0"]


def _moved_tag(world: World) -> list[str]:
    world.push("orders", "1.0.0", "2026-02-01T00:00:00Z")
    return ["--tag", "1.0.0"]


def _older_build(world: World) -> list[str]:
    world.push("orders", "1.1.0", "2025-06-01T00:00:00Z")
    return ["--tag", "1.1.0"]


def _older_version_without_time(world: World) -> list[str]:
    world.push("orders", "0.9.0", created=None)
    return ["--tag", "0.9.0"]


def _held(world: World) -> list[str]:
    path = world.root / "environments" / world.first / "environment.yaml"
    hold = "holds:\n  orders: {reason: incident, by: ops, since: '2026-01-01T00:00:00+00:00'}\n"
    path.write_text(path.read_text() + hold)
    git(world.root, "commit", "-qam", "hold")
    world.push("orders", "1.1.0", "2026-02-01T00:00:00Z")
    return ["--tag", "1.1.0"]


REGISTRY_CASES = [
    ("tag that does not exist", _missing_tag, 2),
    ("digest that does not match the tag", _other_digest, 2),
    ("unsigned where the first stage requires a signature", _unsigned, 1),
    ("signed by a key the stage does not list", _signed_by_another_key, 1),
    ("tag that moved", _moved_tag, 1),
    ("build older than the one running", _older_build, 1),
    ("older version, no creation time", _older_version_without_time, 1),
    ("service held in the first stage", _held, 1),
]


@pytest.mark.parametrize(
    ("setup", "code"),
    [case[1:] for case in REGISTRY_CASES],
    ids=[case[0] for case in REGISTRY_CASES],
)
def test_bad_builds_are_one_line_their_code_and_change_nothing(
    world: World, cli: Cli, setup: Setup, code: int
) -> None:
    args = setup(world)
    before = state(world.root)
    result = cli(world.root, "publish", "orders", *args, "--push")
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert state(world.root) == before
