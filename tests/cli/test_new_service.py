"""``platform new service`` and the promotion that gives a later stage its first image line.

The repository is a copy of this one; the ``--like`` service, the callers, the stages and the
new service's name come from its model, so a fork with other services runs these too."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import yaml

from platformctl.bridge import service_role_name
from platformctl.model import BASE_DIR, Repo, load_repo
from platformctl.scaffold import EGRESS_KEY, append_to_list
from tests.conftest import git

Cli = Callable[..., Any]


def snapshot(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "diff", "--cached"),
    )


def new_name(model: Repo) -> str:
    return next(f"orders-{n}" for n in count() if f"orders-{n}" not in model.services)


def everywhere(model: Repo) -> list[str]:
    """The services that run in every stage (a `--like` or a caller must)."""
    found = [
        s for s in model.services if all((s, e) in model.releases for e in model.environment_names)
    ]
    assert found, "the repository has no service running in every stage"
    return found


def egress(model: Repo, service: str, stage: str) -> list[str]:
    values: Any = model.release(service, stage).values
    for key in EGRESS_KEY:
        values = (values or {}).get(key)
    return list(values or [])


def added_lines(diff: str) -> list[str]:
    return [ln for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]


def _drop_image_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("image:")))


def test_a_promotion_creates_the_missing_image_line(repo: Path, cli: Cli) -> None:
    model = load_repo(repo)
    source, last = model.environment_names[-2:]
    service = everywhere(model)[0]
    path = model.release(service, last).values_file
    _drop_image_line(path)
    git(repo, "commit", "-qam", "no image yet")
    result = cli(repo, "promote", service, "--to", last)
    assert result.exit_code == 0, result.output
    assert path.read_text().count("image:") == 1
    stat = git(repo, "show", "--numstat", "--format=", "HEAD")
    assert stat.split() == ["1", "0", str(path.relative_to(repo))]
    promoted = load_repo(repo)
    assert promoted.release(service, last).image == model.release(service, source).image


def test_new_service_writes_every_stage_and_wires_its_callers(repo: Path, cli: Cli) -> None:
    model = load_repo(repo)
    stages, new = model.environment_names, new_name(model)
    like, *others = everywhere(model)
    callers = tuple(others[:2]) or (like,)
    first = stages[0]
    before = {c: model.release(c, first).values_file.read_text() for c in callers}
    result = cli(repo, "new", "service", new, "--like", like, "--callers", ",".join(callers))
    assert result.exit_code == 0, result.output
    assert "pulumi up --stack" in result.stdout
    assert f"platform promote {new} --to {stages[-1]}" in result.stdout
    assert f"into the egress of {', '.join(callers)}" in result.stdout
    written = load_repo(repo)
    assert new in written.services
    image = written.release(new, first).image
    assert (image.tag, image.digest) == ("0.1.0", None)
    assert image.repository.endswith(f".amazonaws.com/{new}")
    assert set(written.pending) == {(new, stage) for stage in stages[1:]}
    for stage in stages:
        values = yaml.safe_load((repo / f"environments/{stage}/{new}.yaml").read_text())
        cluster = model.environment(stage).cluster_name
        assert values["serviceAccount"]["roleArn"].endswith(
            f":role/{service_role_name(cluster, new)}"
        )
        # the shape of --like in that stage (its database host among it), not its URLs
        shape = model.release(like, stage).environment_values.get("env") or {}
        copied = {k: v for k, v in shape.items() if not k.endswith("_URL")}
        assert values["env"] == {**copied, "ENVIRONMENT": stage}
        assert "ingressFrom" not in values.get("networkPolicy", {})
    base = yaml.safe_load((repo / f"environments/{BASE_DIR}/{new}.yaml").read_text())
    assert base["networkPolicy"]["ingressFrom"] == {"services": list(callers)}
    assert "command" not in base
    assert not any(key.endswith("_URL") for key in base.get("env", {}))
    # the callers: their egress in the first stage only (where it runs), lines added only
    stat = [row.split("\t") for row in git(repo, "diff", "--numstat").splitlines()]
    assert {name for _, _, name in stat} == {
        str(model.release(c, first).values_file.relative_to(repo)) for c in callers
    }
    assert all(removed == "0" for _, removed, _ in stat)
    for caller in callers:
        lines = iter(written.release(caller, first).values_file.read_text().splitlines())
        assert all(any(ln == other for other in lines) for ln in before[caller].splitlines())
        assert egress(written, caller, first) == [*egress(model, caller, first), new]
        for stage in stages[1:]:
            assert egress(written, caller, stage) == egress(model, caller, stage)


def test_dry_run_prints_the_diff_and_writes_nothing(repo: Path, cli: Cli) -> None:
    model = load_repo(repo)
    stages, new, caller = model.environment_names, new_name(model), everywhere(model)[0]
    before = snapshot(repo)
    result = cli(repo, "new", "service", new, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["created"] == sorted(f"environments/{d}/{new}.yaml" for d in (BASE_DIR, *stages))
    assert payload["without_image"] == list(stages[1:])
    assert snapshot(repo) == before
    dry = cli(repo, "new", "service", new, "--callers", caller, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert snapshot(repo) == before
    # what the dry run shows is what the real run writes, line for line
    assert cli(repo, "new", "service", new, "--callers", caller).exit_code == 0
    git(repo, "add", "-A")
    assert added_lines(dry.stdout) == added_lines(git(repo, "diff", "--cached"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Order_Service"], "'Order_Service' is not a valid service name"),
        (["{existing}"], "service '{existing}' already exists"),
        (["base"], "'base' is not a valid service name"),
        (["{new}", "--like", "nope"], "unknown service 'nope'"),
        (["{new}", "--callers", "{existing},nope"], "unknown caller 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    repo: Path, cli: Cli, args: list[str], message: str
) -> None:
    model = load_repo(repo)
    names = {"existing": model.services[0], "new": new_name(model)}
    before = snapshot(repo)
    result = cli(repo, "new", "service", *(arg.format(**names) for arg in args))
    assert result.exit_code == 2, result.output
    assert message.format(**names) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(repo) == before


def test_a_verify_failure_writes_nothing(repo: Path, cli: Cli) -> None:
    model = load_repo(repo)
    before = snapshot(repo)
    caller = everywhere(model)[0]
    result = cli(repo, "new", "service", new_name(model), "--tag", "latest", "--callers", caller)
    assert result.exit_code == 1, result.output
    assert "PLAT002" in result.stderr
    assert snapshot(repo) == before


def test_append_to_list_keeps_every_other_line() -> None:
    flow = "# c\nnetworkPolicy:\n  egressTo:\n    services: [a, 'b']  # keep\nx: \"1\"\n"
    assert append_to_list(flow, EGRESS_KEY, "n") == flow.replace("'b']", "'b', n]")
    block = "networkPolicy:\n  egressTo:\n    services:\n      - a  # one\n    cidrs: []\n"
    assert append_to_list(block, EGRESS_KEY, "n") == block.replace("# one\n", "# one\n      - n\n")
    partial = "# c\nnetworkPolicy:\n  ingressFrom:\n    services: [x]\nz: 1\n"
    assert append_to_list(partial, EGRESS_KEY, "n") == partial.replace(
        "networkPolicy:\n", "networkPolicy:\n  egressTo:\n    services: [n]\n"
    )
    assert append_to_list("a: 1\n", EGRESS_KEY, "n") == (
        "a: 1\nnetworkPolicy:\n  egressTo:\n    services: [n]\n"
    )
    assert append_to_list(flow, EGRESS_KEY, "a") == flow
