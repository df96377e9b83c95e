"""Reach (finding 4 and 5): who can talk to the API server, what the template's placeholders
do at deploy time, and the hosted zone the certificate and external-dns need."""

from __future__ import annotations

import pulumi
import pytest

from tests.infra.conftest import (
    HOSTED_ZONE,
    REPO,
    STACKS,
    AwsMocks,
    Program,
    run_program,
    stack_config,
)

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


@pytest.mark.parametrize("stack", STACKS)
def test_the_template_as_committed_refuses_to_deploy_saying_what_to_set(stack: str) -> None:
    """A `.example` domain never passes ACM validation; documentation CIDRs are nobody's
    runners. Each placeholder is named on the one line the program stops with."""
    mocks = AwsMocks()
    with pytest.raises(pulumi.RunError) as raised:
        run_program(stack, mocks=mocks, root=REPO)
    message = str(raised.value)
    assert "\n" not in message
    assert "platform:domain" in message
    assert "reserved name ACM can never validate" in message
    assert "platform:dnsZoneId is a placeholder" in message
    assert "apiAccessCidrs 192.0.2.0/24 is a documentation range" in message
    assert mocks.registered == []


def test_a_private_cluster_nothing_can_reach_is_refused() -> None:
    config = stack_config("production")
    del config["platform:cluster"]["apiAccessCidrs"]
    with pytest.raises(pulumi.RunError, match="apiAccessCidrs is empty, so no CI runner"):
        run_program("production", config)


def test_the_api_admits_the_declared_networks_on_443_before_the_deployer_talks(
    program: Program,
) -> None:
    declared = stack_config(program.stack)["platform:cluster"]["apiAccessCidrs"]
    rules = [
        r
        for r in program.of_type(INGRESS)
        if r.inputs["securityGroupId"] == "sg-0cluster" and r.inputs.get("cidrIpv4")
    ]
    assert sorted(r.inputs["cidrIpv4"] for r in rules) == sorted(declared)
    assert all((r.inputs["fromPort"], r.inputs["toPort"]) == (443, 443) for r in rules)
    provider = program.one("pulumi:providers:kubernetes")
    for rule in rules:
        assert program.waits_for(provider, rule)


def test_an_open_api_access_list_is_refused_at_load() -> None:
    config = stack_config("staging")
    config["platform:cluster"]["apiAccessCidrs"] = ["0.0.0.0/0"]
    with pytest.raises(pulumi.RunError, match=r"apiAccessCidrs #1: the API must not be open"):
        run_program("staging", config)


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        ({}, "does not exist in this account: create the public zone"),
        (
            {HOSTED_ZONE: ("staging.platform.acme-corp.cloud", True)},
            "is the private zone staging.platform.acme-corp.cloud, not the public zone",
        ),
        ({HOSTED_ZONE: ("acme-corp.cloud", False)}, "is the public zone acme-corp.cloud, not"),
    ],
)
def test_the_hosted_zone_must_exist_and_be_the_domains_public_zone(
    zones: dict[str, tuple[str, bool]], message: str
) -> None:
    mocks = AwsMocks(zones=zones)
    with pytest.raises(pulumi.RunError, match=message):
        run_program("staging", mocks=mocks)
    assert [r for r in mocks.registered if r.type.startswith("aws:")] == []


def test_the_certificate_is_validated_in_the_configured_zone(program: Program) -> None:
    record = program.one("aws:route53/record:Record")
    assert record.inputs["zoneId"] == stack_config(program.stack)["platform:dnsZoneId"]
