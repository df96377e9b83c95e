"""Creation order AWS needs, asserted on what the engine is told: each test delays the
prerequisite's creation and checks that its dependents both name it among their dependencies
(directly or through others) and only started once it was done.

Without the dependency, the engine creates both at once and AWS refuses or breaks the later
one: node groups join before the VPC CNI has its role, NAT gateways start without a route to
the internet, the Argo CD install talks to a cluster that does not admit the deployer yet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.conftest import STACKS, AwsMocks, Program, Registered, run_program

ADDON = "aws:eks/addon:Addon"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ROLE = "aws:iam/role:Role"
GATEWAY = "aws:ec2/internetGateway:InternetGateway"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"
ACCESS_POLICY = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
SERVICE_LINKED_ROLE = "aws:iam/serviceLinkedRole:ServiceLinkedRole"
# Long enough that a dependent which does not wait starts while the prerequisite is pending.
DELAYS = dict.fromkeys(
    (ADDON, ATTACHMENT, ROLE, GATEWAY, LOG_GROUP, ACCESS_ENTRY, ACCESS_POLICY, SERVICE_LINKED_ROLE),
    0.05,
)


@pytest.fixture(scope="module")
def delayed() -> Iterator[dict[str, Program]]:
    return {stack: run_program(stack, mocks=AwsMocks(delays=DELAYS)) for stack in STACKS}


@pytest.fixture(params=STACKS)
def program(request: pytest.FixtureRequest, delayed: dict[str, Program]) -> Program:
    return delayed[request.param]


def _waits(program: Program, later: Registered, earlier: list[Registered]) -> None:
    assert earlier, f"nothing for {later.name} to wait for"
    for prerequisite in earlier:
        assert program.waits_for(later, prerequisite), (
            f"{later.type} {later.name} does not wait for {prerequisite.type} {prerequisite.name}"
        )


def _addon(program: Program, name: str) -> Registered:
    return next(r for r in program.of_type(ADDON) if r.inputs["addonName"] == name)


def test_node_groups_wait_for_the_vpc_cni_addon_and_its_role(program: Program) -> None:
    """EKS installs a self-managed aws-node first: nodes that join before the managed add-on
    (with its IRSA role) replaced it run the CNI with the node role's rights, or none."""
    cni = _addon(program, "vpc-cni")
    role = program.named(ROLE, "cluster-vpc-cni")
    _waits(program, cni, [role, *[a for a in program.of_type(ATTACHMENT) if "vpc-cni" in a.name]])
    for group in program.of_type(NODE_GROUP):
        _waits(program, group, [cni])


def test_node_groups_wait_for_the_node_roles_policies(program: Program) -> None:
    """A node that boots before AmazonEKSWorkerNodePolicy is attached cannot join."""
    attachments = [a for a in program.of_type(ATTACHMENT) if a.name.startswith("cluster-nodes-")]
    assert len(attachments) >= 3
    for group in program.of_type(NODE_GROUP):
        _waits(program, group, attachments)


def test_addresses_and_nat_gateways_wait_for_the_internet_gateway(program: Program) -> None:
    """AWS: an Elastic IP in a VPC and a public NAT gateway need the VPC's internet gateway."""
    gateway = program.one(GATEWAY)
    dependents = program.of_type("aws:ec2/eip:Eip") + program.of_type(
        "aws:ec2/natGateway:NatGateway"
    )
    assert dependents
    for dependent in dependents:
        _waits(program, dependent, [gateway])


def test_log_groups_exist_before_what_writes_to_them(program: Program) -> None:
    """Left to the writer, a log group is created without retention or encryption."""
    cluster = program.one("aws:eks/cluster:Cluster")
    _waits(
        program, cluster, [r for r in program.of_type(LOG_GROUP) if "/aws/eks/" in r.inputs["name"]]
    )
    _waits(
        program,
        program.one("aws:ec2/flowLog:FlowLog"),
        [r for r in program.of_type(LOG_GROUP) if "flow-logs" in r.name],
    )
    _waits(
        program,
        program.one("aws:rds/instance:Instance"),
        [r for r in program.of_type(LOG_GROUP) if r.name.startswith("database-logs-")],
    )


def test_the_kubernetes_provider_waits_for_the_deployers_access(program: Program) -> None:
    """With access entries only, the deployer can talk to the API once its entry and its
    admin policy association exist; before, the Argo CD install gets 401/403."""
    provider = program.one("pulumi:providers:kubernetes")
    _waits(program, provider, program.of_type(ACCESS_ENTRY) + program.of_type(ACCESS_POLICY))
