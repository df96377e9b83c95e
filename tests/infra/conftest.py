"""Runs ``infra/__main__.py`` unchanged under ``pulumi.runtime.set_mocks``, once per stack.

The mocks play AWS: they echo each resource's inputs back as its state and add the few
outputs the program reads (ARNs, the OIDC issuer, the cluster's security group). Every
registration is recorded with its resolved inputs, which is what the assertions and the
policy rules look at, exactly as CrossGuard would see them.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from platform_infra.rules import Resource

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "infra" / "__main__.py"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
HOSTED_ZONE = "Z0123456789ABCDEFGHIJ"
VPC_ID = "vpc-0a1b2c3d4e5f60718"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
STACKS = ("dev", "staging", "production")


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    inputs: Mapping[str, Any]

    def resource(self) -> Resource:
        return Resource(self.type, self.name, self.inputs)


class AwsMocks(pulumi.runtime.Mocks):
    def __init__(self, account: str = ACCOUNT) -> None:
        self.registered: list[Registered] = []
        self.account = account

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.registered.append(Registered(args.typ, args.name, inputs))
        physical = str(inputs.get("name") or inputs.get("identifier") or args.name)
        state: dict[str, Any] = {**inputs, "arn": self._arn(args.typ, physical)}
        if args.typ == "aws:eks/cluster:Cluster":
            state["identities"] = [{"oidcs": [{"issuer": ISSUER}]}]
            state["endpoint"] = "https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com"
            state["certificateAuthority"] = {"data": "LS0tLS1CRUdJTi1DRVJUSUZJQ0FURS0tLS0t"}
            state["vpcConfig"] = {
                **inputs.get("vpcConfig", {}),
                "clusterSecurityGroupId": "sg-0cluster",
            }
        elif args.typ == "aws:acm/certificate:Certificate":
            state["domainValidationOptions"] = [
                {
                    "domainName": inputs["domainName"],
                    "resourceRecordName": f"_x1.{inputs['domainName'].removeprefix('*.')}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_x2.acm-validations.aws.",
                }
            ]
        elif args.typ == "aws:route53/record:Record":
            state["fqdn"] = str(inputs["name"]).rstrip(".")
        elif args.typ == "aws:kms/key:Key":
            state["keyId"] = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        elif args.typ == "aws:rds/instance:Instance":
            state["address"] = f"{physical}.abcdefghijkl.{REGION}.rds.amazonaws.com"
            state["resourceId"] = "db-ABCDEFGHIJKLMNOPQRSTUVWXY"
            state["masterUserSecrets"] = [
                {"secretArn": self._arn("aws:secretsmanager/secret:Secret", f"rds!{physical}")}
            ]
        elif args.typ == "aws:ecr/repository:Repository":
            state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{physical}"
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        if args.typ == "aws:ec2/vpc:Vpc":
            return VPC_ID, state
        return f"{args.name}-id", state

    @staticmethod
    def _arn(type_token: str, physical: str) -> str:
        service = type_token.split(":")[1].split("/", maxsplit=1)[0]
        if service == "iam":
            return f"arn:aws:iam::{ACCOUNT}:role/{physical}"
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{physical}"

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account,
                "arn": f"arn:aws:iam::{self.account}:role/platform-deployer",
                "userId": "AROAEXAMPLE",
                "id": self.account,
            }
        if args.token == "aws:route53/getZone:getZone":
            name = str(args.args["name"])
            return {
                "name": name,
                "zoneId": HOSTED_ZONE,
                "arn": f"arn:aws:route53:::hostedzone/{HOSTED_ZONE}",
                "id": HOSTED_ZONE,
            }
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ZONES, "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"], "id": REGION}
        raise AssertionError(f"the program invoked {args.token}, which these mocks do not answer")


@dataclass
class Program:
    """What one run of the program declared, and the resolved values of its exports."""

    stack: str
    registered: list[Registered]
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.registered if r.type == type_token]

    def one(self, type_token: str) -> Registered:
        found = self.of_type(type_token)
        assert len(found) == 1, f"{len(found)} resources of {type_token}"
        return found[0]

    def resources(self) -> list[Resource]:
        return [r.resource() for r in self.registered]


def stack_config(stack: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = document["config"]
    return config


def engine_form(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine passes it to a program: structured values as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(
    stack: str, config: Mapping[str, Any] | None = None, mocks: AwsMocks | None = None
) -> Program:
    mocks = mocks or AwsMocks()
    pulumi.runtime.set_mocks(mocks, project="platform", stack=stack, preview=False)
    pulumi.runtime.set_all_config(engine_form(stack_config(stack) if config is None else config))
    program = Program(stack, mocks.registered)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        namespace = runpy.run_path(str(PROGRAM), run_name="__main__")
        exported = {
            "roleArns": namespace["identity"].role_arns,
            "addonRoleArns": namespace["addon_identity"].role_arns,
            "certificateArn": namespace["addon_identity"].certificate_arn,
            "clusterName": namespace["cluster"].cluster.name,
            "oidcIssuer": namespace["cluster"].oidc.issuer_url,
            "kubeconfig": namespace["cluster_kubeconfig"],
        }
        if "registry" in namespace:
            exported["repositoryUrls"] = namespace["registry"].repository_urls
        # Returned, so the test waits for every value and the capture really happens.
        return pulumi.Output.from_input(exported).apply(program.exports.update)

    run()
    return program


@pytest.fixture(scope="session")
def programs() -> Iterator[dict[str, Program]]:
    return {stack: run_program(stack) for stack in STACKS}


@pytest.fixture(params=STACKS)
def program(request: pytest.FixtureRequest, programs: dict[str, Program]) -> Program:
    return programs[request.param]
