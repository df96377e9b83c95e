"""Bad stack settings stop the program before any resource exists, with ``file:line: key``."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from platformctl.errors import InputError
from platformctl.model import Repo, load_repo
from platformctl.stacks import load_settings, stack_file
from tests.infra.conftest import REPO, AwsMocks, run_program, stack_config

Edit = Callable[[dict[str, Any]], None]


def _set(section: str, path: list[str | int], value: Any) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        node = config[section]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _drop(key: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        del config[key]

    return edit


BAD = {
    "not a CIDR": (
        _set("platform:network", ["cidr"], "10.0.0.0/33"),
        r"Pulumi\.dev\.yaml:\d+: platform:network\.cidr: '10\.0\.0\.0/33' is not an IPv4 CIDR",
    ),
    "public range": (_set("platform:network", ["cidr"], "8.8.0.0/16"), "is not a private range"),
    "too small": (_set("platform:network", ["cidr"], "10.0.0.0/24"), "use a /16 to /20"),
    "unknown node size": (
        _set("platform:cluster", ["nodeGroups", 0, "instanceTypes", 0], "m7i.huge"),
        r"nodeGroups #1\.instanceTypes #1: unknown size 'm7i\.huge'",
    ),
    "unknown database size": (
        _set("platform:database", ["instanceClass"], "db.t4g.enormous"),
        "unknown size 'db.t4g.enormous'",
    ),
    "missing key": (_drop("platform:database"), "missing key 'platform:database'"),
    "sizes out of order": (
        _set("platform:cluster", ["nodeGroups", 0, "minSize"], 9),
        "minSize <= desiredSize <= maxSize",
    ),
    "endpoint open to all": (
        _set("platform:cluster", ["publicAccessCidrs"], ["0.0.0.0/0"]),
        "must not be open to the internet",
    ),
    "misspelt key": (
        lambda c: c["platform:network"].update(cidrs=c["platform:network"].pop("cidr")),
        "unknown key 'cidrs'; did you mean 'cidr'",
    ),
    "unpinned add-on": (
        _set("platform:cluster", ["addons", "coredns"], "latest"),
        r"addons\.coredns",
    ),
    "retention CloudWatch refuses": (
        _set("platform:network", ["flowLogRetentionDays"], 42),
        r"flowLogRetentionDays: 42 is not one of",
    ),
    "no admin": (
        _set("platform:cluster", ["adminRoleArns"], []),
        r"adminRoleArns: \[\] needs at least one item",
    ),
    "region not the environment's": (
        lambda c: c.update({"aws:region": "us-east-1"}),
        r"Pulumi.dev.yaml:\d+: aws:region: us-east-1, but environments/dev/environment.yaml puts "
        "the cluster in eu-west-1",
    ),
}


def _settings(config: dict[str, Any], stack: str = "dev", repo: Repo | None = None) -> None:
    load_settings(stack, config, repo or load_repo(REPO), stack_file(REPO, stack))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_settings_are_refused_with_file_line_and_key(case: str) -> None:
    edit, message = BAD[case]
    config = copy.deepcopy(stack_config("dev", REPO))
    edit(config)
    with pytest.raises(InputError, match=message):
        _settings(config)


def test_a_domain_that_disagrees_with_argocds_url_is_refused() -> None:
    config = stack_config("staging", REPO)
    config["platform:domain"] = "stage.platform.acme-corp.example"
    with pytest.raises(InputError, match=r"make endpoints\.argocd\.url and platform:domain agree"):
        _settings(config, "staging")


def _with_dev(**changes: Any) -> Repo:
    repo = load_repo(REPO)
    dev = dataclasses.replace(repo.environment("dev"), **changes)
    return dataclasses.replace(repo, environments=(dev, *repo.environments[1:]))


def test_an_unsupported_kubernetes_version_is_refused() -> None:
    with pytest.raises(InputError, match=r"Kubernetes 1\.27 is not in environments/support\.yaml"):
        _settings(stack_config("dev", REPO), repo=_with_dev(kubernetes_version="1.27"))


def test_the_registry_must_be_in_the_first_stages_region() -> None:
    config = stack_config("dev", REPO)
    config["aws:region"] = "us-east-1"
    with pytest.raises(
        InputError, match="aws:region is us-east-1 but the images live in eu-west-1"
    ):
        _settings(config, repo=_with_dev(region="us-east-1"))


def test_a_stack_without_an_environment_is_refused_with_the_closest_name() -> None:
    with pytest.raises(InputError, match="did you mean 'staging'"):
        _settings(stack_config("staging", REPO), "stagin")


def test_every_stack_file_is_valid() -> None:
    for stack in ("dev", "staging", "production"):
        _settings(stack_config(stack, REPO), stack)


def test_the_program_stops_before_declaring_anything() -> None:
    config = stack_config("production", REPO)
    config["platform:network"]["cidr"] = "10.0.0.0/8"
    mocks = AwsMocks()
    with pytest.raises(
        pulumi.RunError, match=r"Pulumi\.production\.yaml:\d+: platform:network\.cidr: /8"
    ):
        run_program("production", config, mocks)
    assert mocks.registered == []


def test_the_registry_stack_refuses_credentials_of_another_account() -> None:
    with pytest.raises(ValueError, match="assume a role in 123456789012"):
        run_program("dev", mocks=AwsMocks(account="210987654321"))
