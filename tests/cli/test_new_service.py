"""``platform new service`` and the promotion that gives a later stage its first image line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from platformctl.model import load_repo
from platformctl.scaffold import append_to_list
from tests.conftest import git

KEY = ("networkPolicy", "egressTo", "services")

Cli = Callable[..., Any]


def snapshot(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "diff", "--cached"),
    )


def _drop_image_line(repo: Path, relative: str) -> None:
    path = repo / relative
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("image:")))
    git(repo, "commit", "-qam", "no image yet")


def test_a_promotion_creates_the_missing_image_line(repo: Path, cli: Cli) -> None:
    _drop_image_line(repo, "environments/production/user-service.yaml")
    staging = load_repo(repo).release("user-service", "staging").image
    result = cli(repo, "promote", "user-service", "--to", "production")
    assert result.exit_code == 0, result.output
    text = (repo / "environments/production/user-service.yaml").read_text()
    assert text.count("image:") == 1
    stat = git(repo, "show", "--numstat", "--format=", "HEAD")
    assert stat.split() == ["1", "0", "environments/production/user-service.yaml"]
    assert load_repo(repo).release("user-service", "production").image == staging


def test_new_service_writes_every_stage_and_wires_its_callers(repo: Path, cli: Cli) -> None:
    gateway_before = (repo / "environments/dev/api-gateway.yaml").read_text()
    result = cli(
        repo, "new", "service", "order-service", "--like", "user-service",
        "--callers", "api-gateway,auth-service",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pulumi up --stack" in result.stdout
    assert "platform promote order-service --to production" in result.stdout
    model = load_repo(repo)
    assert "order-service" in model.services
    dev = model.release("order-service", "dev")
    assert dev.image.tag == "0.1.0"
    assert dev.image.repository.endswith(".amazonaws.com/order-service")
    assert set(model.pending) == {("order-service", "staging"), ("order-service", "production")}
    for env in ("dev", "staging", "production"):
        values = yaml.safe_load((repo / f"environments/{env}/order-service.yaml").read_text())
        assert values["serviceAccount"]["roleArn"].endswith(f":role/platform-{env}-order-service")
        assert values["env"]["DB_HOST"].startswith(f"platform-{env}.")
        assert "ingressFrom" not in values.get("networkPolicy", {})
    base = yaml.safe_load((repo / "environments/base/order-service.yaml").read_text())
    assert base["networkPolicy"] == {"ingressFrom": {"services": ["api-gateway", "auth-service"]}}
    assert "command" not in base
    assert not any(key.endswith("_URL") for key in base.get("env", {}))
    # the callers: their egress in dev only (where it runs), lines added, the rest kept
    stat = git(repo, "diff", "--numstat").split("\n")
    assert sorted(line for line in stat if line) == [
        "2\t0\tenvironments/dev/api-gateway.yaml",
        "3\t0\tenvironments/dev/auth-service.yaml",
    ]
    gateway = (repo / "environments/dev/api-gateway.yaml").read_text()
    assert gateway == gateway_before.replace(
        "networkPolicy:\n",
        "networkPolicy:\n  egressTo:\n"
        "    services: [user-service, product-service, auth-service, order-service]\n",
    )
    egress = model.release("auth-service", "dev").values["networkPolicy"]["egressTo"]
    assert egress["services"] == ["user-service", "order-service"]
    staging = model.release("auth-service", "staging").values["networkPolicy"]["egressTo"]
    assert staging["services"] == ["user-service"]
    assert "add order-service to networkPolicy.egressTo.services of api-gateway" in result.stdout


def test_dry_run_prints_the_diff_and_writes_nothing(repo: Path, cli: Cli) -> None:
    before = snapshot(repo)
    result = cli(repo, "new", "service", "order-service", "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["created"] == [
        f"environments/{d}/order-service.yaml" for d in ("base", "dev", "production", "staging")
    ]
    assert payload["without_image"] == ["staging", "production"]
    assert snapshot(repo) == before
    result = cli(repo, "new", "service", "order-service", "--callers", "api-gateway", "--dry-run")
    assert "+    services: [user-service, product-service, auth-service, order-service]" in (
        result.stdout
    )
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Order_Service"], "'Order_Service' is not a valid service name"),
        (["user-service"], "service 'user-service' already exists"),
        (["base"], "'base' is not a valid service name"),
        (["order-service", "--like", "nope"], "unknown service 'nope'"),
        (["order-service", "--callers", "api-gateway,nope"], "unknown caller 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    repo: Path, cli: Cli, args: list[str], message: str
) -> None:
    before = snapshot(repo)
    result = cli(repo, "new", "service", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(repo) == before


def test_a_verify_failure_writes_nothing(repo: Path, cli: Cli) -> None:
    before = snapshot(repo)
    result = cli(
        repo, "new", "service", "order-service", "--tag", "latest", "--callers", "api-gateway"
    )
    assert result.exit_code == 1, result.output
    assert "PLAT002" in result.stderr
    assert snapshot(repo) == before


def test_append_to_list_keeps_every_other_line() -> None:
    flow = "# c\nnetworkPolicy:\n  egressTo:\n    services: [a, 'b']  # keep\nx: \"1\"\n"
    assert append_to_list(flow, KEY, "n") == flow.replace("'b']", "'b', n]")
    block = "networkPolicy:\n  egressTo:\n    services:\n      - a  # one\n    cidrs: []\n"
    assert append_to_list(block, KEY, "n") == block.replace("# one\n", "# one\n      - n\n")
    partial = "# c\nnetworkPolicy:\n  ingressFrom:\n    services: [x]\nz: 1\n"
    assert append_to_list(partial, KEY, "n") == partial.replace(
        "networkPolicy:\n", "networkPolicy:\n  egressTo:\n    services: [n]\n"
    )
    assert append_to_list("a: 1\n", KEY, "n") == (
        "a: 1\nnetworkPolicy:\n  egressTo:\n    services: [n]\n"
    )
    assert append_to_list(flow, KEY, "a") == flow
