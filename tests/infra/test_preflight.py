"""The preflight reads the account through the provider's data sources and stops the program
before anything is declared, with one line naming the fix (finding 3 and 5)."""

from __future__ import annotations

import pulumi
import pytest

from platform_infra.preflight import AUTO_SCALING_ROLE, OWNER_TAG
from tests.infra.conftest import STACKS, AwsMocks, run_program

SERVICE_LINKED_ROLE = "aws:iam/serviceLinkedRole:ServiceLinkedRole"
KEY = "aws:kms/key:Key"


@pytest.mark.parametrize("stack", STACKS)
def test_a_fresh_account_gets_the_auto_scaling_role_before_the_key(stack: str) -> None:
    """The key policy names AWSServiceRoleForAutoScaling, which exists only after an account's
    first Auto Scaling group: KMS refuses the policy until it does."""
    program = run_program(stack, mocks=AwsMocks(delays={SERVICE_LINKED_ROLE: 0.05}))
    role = program.one(SERVICE_LINKED_ROLE)
    assert role.inputs["awsServiceName"] == "autoscaling.amazonaws.com"
    assert role.inputs["tags"][OWNER_TAG] == stack
    assert role.import_id == ""
    assert program.waits_for(program.one(KEY), role)


def test_a_role_someone_else_made_is_used_not_declared() -> None:
    mocks = AwsMocks(service_roles={AUTO_SCALING_ROLE: {}})
    program = run_program("staging", mocks=mocks)
    assert program.of_type(SERVICE_LINKED_ROLE) == []
    assert program.one(KEY).dependencies == frozenset()


def test_a_rebuilt_stack_adopts_the_role_it_made_and_kept() -> None:
    """Destroy keeps the role (others use it); the next `up` imports it instead of failing on
    a role that already exists."""
    mocks = AwsMocks(service_roles={AUTO_SCALING_ROLE: {OWNER_TAG: "dev"}})
    role = run_program("dev", mocks=mocks).one(SERVICE_LINKED_ROLE)
    assert role.import_id.endswith(f"/autoscaling.amazonaws.com/{AUTO_SCALING_ROLE}")


def test_too_few_elastic_ips_stop_the_program_before_anything_is_declared() -> None:
    # Production has a NAT gateway per zone; three addresses are held by something else.
    others = {"eipalloc-1": {}, "eipalloc-2": {"environment": "dev", "managed-by": "pulumi"}}
    mocks = AwsMocks(elastic_ips=others | {"eipalloc-3": {"environment": "production"}})
    with pytest.raises(pulumi.RunError) as raised:
        run_program("production", mocks=mocks)
    message = str(raised.value)
    assert "\n" not in message
    assert "2 of 5 Elastic IPs free and this stack needs 3" in message
    assert "Service Quotas, EC2 quota L-0263D0A3" in message
    assert [r.type for r in mocks.registered if r.type.startswith("aws:")] == []


def test_the_stacks_own_addresses_do_not_count_against_it() -> None:
    """A second `up` finds its own NAT gateways' addresses in use."""
    own = {"environment": "production", "managed-by": "pulumi"}
    mocks = AwsMocks(elastic_ips={f"eipalloc-{i}": own for i in range(3)} | {"eipalloc-x": {}})
    run_program("production", mocks=mocks)
