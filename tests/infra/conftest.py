"""Runs ``infra/__main__.py`` unchanged under ``pulumi.runtime.set_mocks``, once per stack.

The mocks play AWS: they echo each resource's inputs back as its state and add the few
outputs the program reads (ARNs, the OIDC issuer, the cluster's security group). In preview
they return nothing computed, as the engine does for a resource about to be created, so the
program's later inputs carry the engine's unknowns.

``EngineMonitor`` sits where the engine would: it keeps each registration exactly as the SDK
sent it (the protobuf ``object``, its dependencies) and the order in which creations started
and finished. The policy pack is then run over those structs through pulumi_policy's own
analyzer servicer (``Program.analyze``), which is what ``pulumi preview --policy-pack`` does.
"""

from __future__ import annotations

import atexit
import json
import runpy
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.mocks import MockMonitor
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from platform_infra.crossguard import PACK_NAME, policies
from platform_infra.rules import Resource

# The repository, and a copy of it made deployable: `pulumi up` refuses the placeholders the
# template ships (a reserved domain, a zero zone ID, documentation CIDRs), so the program runs
# on the copy, where only those values differ.
REPO = Path(__file__).resolve().parents[2]
DEPLOYABLE = {
    "acme-corp.example": "acme-corp.cloud",
    "Z00000000000000000000": "Z0123456789ABCDEFGHIJ",
    "192.0.2.0/24": "10.250.0.0/22",
    "203.0.113.0/24": "84.17.32.0/24",
    "198.51.100.0/24": "84.17.33.0/24",
}


def _deployable_copy() -> Path:
    root = Path(tempfile.mkdtemp(prefix="platform-deployable-"))
    atexit.register(shutil.rmtree, root, True)
    for folder in ("environments", "charts", "infra"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [*REPO.glob("Pulumi*.yaml"), *(REPO / "environments").rglob("*.yaml")]:
        text = path.read_text()
        for placeholder, value in DEPLOYABLE.items():
            text = text.replace(placeholder, value)
        target = root / path.relative_to(REPO)
        target.write_text(text)
    return root


ROOT = _deployable_copy()
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
    urn: str
    inputs: Mapping[str, Any]
    # What the SDK sent the engine: the inputs as a protobuf Struct (unknowns, secrets and
    # numbers as doubles included), and the URNs it must wait for.
    properties: struct_pb2.Struct
    dependencies: frozenset[str]
    # The ID of an existing resource the program adopts (the ``import`` option), or "".
    import_id: str = ""

    def resource(self) -> Resource:
        return Resource(self.type, self.name, self.inputs)


def _service(role_name: str) -> str:
    """The service of an AWS service-linked role (AWSServiceRoleForAutoScaling)."""
    services = {"AWSServiceRoleForAutoScaling": "autoscaling.amazonaws.com"}
    return services[role_name]


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    mandatory: bool
    message: str
    urn: str


class AwsMocks(pulumi.runtime.Mocks):
    def __init__(
        self,
        account: str = ACCOUNT,
        delays: Mapping[str, float] | None = None,
        service_roles: Mapping[str, Mapping[str, str]] | None = None,
        elastic_ip_quota: float = 5.0,
        elastic_ips: Mapping[str, Mapping[str, str]] | None = None,
        zones: Mapping[str, tuple[str, bool]] | None = None,
        repositories: Sequence[str] = (),
    ) -> None:
        self.account = account
        # The account as the preflight reads it: a fresh one by default (no service-linked
        # roles, the default quota of 5 Elastic IPs, none in use). Roles and addresses map to
        # their tags.
        self.service_roles = dict(service_roles or {})
        self.elastic_ip_quota = elastic_ip_quota
        self.elastic_ips = dict(elastic_ips or {})
        self.repositories = list(repositories)
        # Hosted zones by ID: (name, private). None: the stack's own public zone exists.
        self.zones = dict(zones) if zones is not None else None
        self.preview = False
        # Filled by EngineMonitor: what was registered, and when each creation started/ended.
        self.registered: list[Registered] = []
        self.events: list[tuple[str, str]] = []
        # Seconds a creation of this type token takes: a dependent created too early shows up
        # in EngineMonitor.events, whatever order the program happens to declare things in.
        self.delays = dict(delays or {})

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        if args.typ in self.delays:
            time.sleep(self.delays[args.typ])
        if self.preview:
            return "", inputs
        physical = str(inputs.get("name") or inputs.get("identifier") or args.name)
        state: dict[str, Any] = {**inputs, "arn": self._arn(args.typ, physical, inputs)}
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

    def _service_role(self, name: str) -> str:
        return f"arn:aws:iam::{self.account}:role/aws-service-role/{_service(name)}/{name}"

    @staticmethod
    def _arn(type_token: str, physical: str, inputs: Mapping[str, Any] | None = None) -> str:
        """The ARN AWS gives a resource of this type, in its documented format: the policies
        that name it are linted against parliament's resource formats."""
        kind = type_token.split(":")[2]
        global_iam = {
            "Role": "role",
            "Policy": "policy",
            "User": "user",
            "ServiceLinkedRole": "role/aws-service-role",
        }
        if type_token == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            issuer = str((inputs or {}).get("url", ISSUER)).removeprefix("https://")
            return f"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer}"
        if type_token.startswith("aws:iam/") and kind in global_iam:
            return f"arn:aws:iam::{ACCOUNT}:{global_iam[kind]}/{physical}"
        regional = {
            "aws:kms/key:Key": ("kms", "key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            "aws:kms/alias:Alias": ("kms", physical),
            "aws:secretsmanager/secret:Secret": ("secretsmanager", f"secret:{physical}-AbCdEf"),
            "aws:cloudwatch/logGroup:LogGroup": ("logs", f"log-group:{physical}"),
            "aws:ecr/repository:Repository": ("ecr", f"repository/{physical}"),
            "aws:eks/cluster:Cluster": ("eks", f"cluster/{physical}"),
            "aws:rds/instance:Instance": ("rds", f"db:{physical}"),
            "aws:acm/certificate:Certificate": (
                "acm",
                "certificate/6f0e2f1c-1111-4a2b-9c3d-0123456789ab",
            ),
        }
        service, resource = regional.get(
            type_token,
            (type_token.split(":")[1].split("/", maxsplit=1)[0], f"{kind.lower()}/{physical}"),
        )
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account,
                "arn": f"arn:aws:iam::{self.account}:role/platform-deployer",
                "userId": "AROAEXAMPLE",
                "id": self.account,
            }
        if args.token == "aws:ecr/getRepositories:getRepositories":
            return {"names": self.repositories, "id": REGION, "region": REGION}
        if args.token == "aws:route53/getZones:getZones":
            return {"ids": sorted(self.zones), "id": "zones"}
        if args.token == "aws:route53/getZone:getZone":
            zone_id = str(args.args["zoneId"])
            name, private = self.zones[zone_id]
            return {
                "name": name,
                "privateZone": private,
                "zoneId": zone_id,
                "arn": f"arn:aws:route53:::hostedzone/{zone_id}",
                "id": zone_id,
            }
        if args.token == "aws:iam/getRoles:getRoles":
            prefix = str(args.args.get("pathPrefix", "/"))
            names = sorted(n for n in self.service_roles if prefix.endswith(f"{_service(n)}/"))
            return {"names": names, "arns": [self._service_role(n) for n in names], "id": prefix}
        if args.token == "aws:iam/getRole:getRole":
            name = str(args.args["name"])
            return {"name": name, "arn": self._service_role(name), "tags": self.service_roles[name]}
        if args.token == "aws:servicequotas/getServiceQuota:getServiceQuota":
            assert (args.args["serviceCode"], args.args["quotaCode"]) == ("ec2", "L-0263D0A3")
            return {"value": self.elastic_ip_quota, "id": "ec2/L-0263D0A3"}
        if args.token == "aws:ec2/getEips:getEips":
            wanted = dict(args.args.get("tags") or {})
            ids = sorted(
                i for i, t in self.elastic_ips.items() if wanted.items() <= dict(t).items()
            )
            return {"allocationIds": ids, "publicIps": [], "id": REGION}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ZONES, "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"], "id": REGION}
        raise AssertionError(f"the program invoked {args.token}, which these mocks do not answer")


class EngineMonitor(MockMonitor):
    """The mock monitor, keeping what the engine would receive and when creations ran."""

    def __init__(self, mocks: AwsMocks) -> None:
        super().__init__(mocks)
        self.registered = mocks.registered
        self.events = mocks.events
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method's name)
        urn = self.make_urn(request.parent, request.type, request.name)
        with self._lock:
            self.events.append(("start", urn))
        response = super().RegisterResource(request)
        waits = set(request.dependencies)
        for dependencies in request.propertyDependencies.values():
            waits.update(dependencies.urns)
        properties = struct_pb2.Struct()
        properties.CopyFrom(request.object)
        registered = Registered(
            request.type,
            request.name,
            urn,
            pulumi.runtime.rpc.deserialize_properties(request.object),
            properties,
            frozenset(waits),
            request.importId,
        )
        with self._lock:
            self.events.append(("done", urn))
            if request.type != "pulumi:pulumi:Stack":
                self.registered.append(registered)
        return response


def analyze(resources: list[Registered]) -> list[Diagnostic]:
    """The pack's verdicts on each resource, as pulumi_policy's analyzer servicer reports them
    to the engine during ``pulumi preview --policy-pack infra/policy``."""
    servicer = _PolicyAnalyzerServicer(PACK_NAME, "0.1.0", policies(), EnforcementLevel.MANDATORY)
    found: list[Diagnostic] = []
    for resource in resources:
        request = proto.AnalyzeRequest(
            type=resource.type, properties=resource.properties, urn=resource.urn, name=resource.name
        )
        for diagnostic in servicer.Analyze(request, None).diagnostics:
            found.append(
                Diagnostic(
                    diagnostic.policyName,
                    diagnostic.enforcementLevel == proto.MANDATORY,
                    diagnostic.message,
                    resource.urn,
                )
            )
    return found


@dataclass
class Program:
    """What one run of the program declared, and the resolved values of its exports."""

    stack: str
    registered: list[Registered]
    events: list[tuple[str, str]]
    exports: dict[str, Any] = field(default_factory=dict)

    def analyze(self) -> list[Diagnostic]:
        return analyze(self.registered)

    def named(self, type_token: str, name: str) -> Registered:
        found = [r for r in self.registered if r.type == type_token and r.name == name]
        assert len(found) == 1, f"{len(found)} resources of {type_token} named {name}"
        return found[0]

    def waits_for(self, later: Registered, earlier: Registered) -> bool:
        """Whether the engine creates ``earlier`` before ``later``: a path in the dependencies
        the SDK sent, and, with delays, ``later`` only started once ``earlier`` was done."""
        by_urn = {r.urn: r for r in self.registered}
        seen: set[str] = set()
        pending = list(later.dependencies)
        while pending:
            urn = pending.pop()
            if urn == earlier.urn:
                done = self.events.index(("done", earlier.urn))
                return done < self.events.index(("start", later.urn))
            if urn not in seen and urn in by_urn:
                seen.add(urn)
                pending.extend(by_urn[urn].dependencies)
        return False

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.registered if r.type == type_token]

    def one(self, type_token: str) -> Registered:
        found = self.of_type(type_token)
        assert len(found) == 1, f"{len(found)} resources of {type_token}"
        return found[0]

    def resources(self) -> list[Resource]:
        return [r.resource() for r in self.registered]


def stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    document = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = document["config"]
    return config


def engine_form(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine passes it to a program: structured values as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(
    stack: str,
    config: Mapping[str, Any] | None = None,
    mocks: AwsMocks | None = None,
    preview: bool = False,
    root: Path = ROOT,
) -> Program:
    """Run the program of the repository at ``root`` (the deployable copy by default)."""
    mocks = mocks or AwsMocks()
    mocks.preview = preview
    config = stack_config(stack, root) if config is None else config
    if mocks.zones is None:
        mocks.zones = {HOSTED_ZONE: (str(config["platform:domain"]), False)}
    monitor = EngineMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="platform", stack=stack, preview=preview, monitor=monitor
    )
    pulumi.runtime.set_all_config(engine_form(config))
    program = Program(stack, mocks.registered, mocks.events)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        namespace = runpy.run_path(str(root / "infra" / "__main__.py"), run_name="__main__")
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


@pytest.fixture(scope="session")
def previews() -> Iterator[dict[str, Program]]:
    return {stack: run_program(stack, preview=True) for stack in STACKS}


def engine_registration(type_token: str, inputs: Mapping[str, Any]) -> Registered:
    """One resource as the engine hands it to the analyzer, from plain inputs."""
    properties = json_format.ParseDict(inputs, struct_pb2.Struct())
    urn = f"urn:pulumi:dev::platform::{type_token}::x"
    return Registered(type_token, "x", urn, inputs, properties, frozenset())


@pytest.fixture(params=STACKS)
def program(request: pytest.FixtureRequest, programs: dict[str, Program]) -> Program:
    return programs[request.param]
