"""Each rule, made to fail and to pass; the same rules served as the CrossGuard pack."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from platform_infra.crossguard import policies
from platform_infra.iam import lint
from platform_infra.rules import (
    DEFAULT_SECURITY_GROUP,
    ECR_POLICY,
    ECR_REPOSITORY,
    EKS_CLUSTER,
    FLOW_LOG,
    IAM_DOCUMENTS,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    KMS_KEY,
    LAUNCH_TEMPLATE,
    LOG_GROUP,
    NODE_GROUP,
    RDS_INSTANCE,
    RULES,
    SUBNET,
    VPC_ENDPOINT,
    Resource,
    Rule,
    evaluate,
    taggable,
)
from tests.infra.conftest import REPO, Program, analyze, engine_registration

PRODUCTION = {"tags": {"environment": "production", "managed-by": "pulumi"}}
DEV = {"tags": {"environment": "dev", "managed-by": "pulumi"}}
GOOD_VOLUME = {"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "volumeType": "gp3"}}


def _policy(principal: Any, condition: dict[str, Any] | None = None) -> str:
    statement: dict[str, Any] = {
        "Sid": "Pull",
        "Effect": "Allow",
        "Principal": principal,
        "Action": "ecr:BatchGetImage",
    }
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _document(statement: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **statement}]})


# rule name -> (resource type, inputs that pass, inputs that fail, part of the message)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any], str]] = {
    "eks-control-plane-logging": (
        EKS_CLUSTER,
        {
            "enabledClusterLogTypes": [
                "api",
                "audit",
                "authenticator",
                "controllerManager",
                "scheduler",
            ]
        },
        {"enabledClusterLogTypes": ["api", "audit"]},
        "authenticator, controllerManager, scheduler",
    ),
    "eks-public-endpoint-cidrs": (
        EKS_CLUSTER,
        {"vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}},
        {"vpcConfig": {"subnetIds": ["a"]}},
        "open to 0.0.0.0/0",
    ),
    "eks-public-endpoint-disabled": (
        EKS_CLUSTER,
        {**DEV, "vpcConfig": {"endpointPublicAccess": True}},
        {**PRODUCTION, "vpcConfig": {"endpointPublicAccess": True}},
        "must be private",
    ),
    "eks-private-endpoint": (
        EKS_CLUSTER,
        {"vpcConfig": {"endpointPrivateAccess": True}},
        {"vpcConfig": {"endpointPrivateAccess": False}},
        "private API endpoint is off",
    ),
    "eks-secrets-encryption": (
        EKS_CLUSTER,
        {
            "encryptionConfig": {
                "resources": ["secrets"],
                "provider": {"keyArn": "arn:aws:kms:eu-west-1:1:key/k"},
            }
        },
        {"encryptionConfig": {"resources": ["secrets"], "provider": {}}},
        "not envelope-encrypted",
    ),
    "eks-supported-version": (
        EKS_CLUSTER,
        {"version": "1.35"},
        {"version": "1.33"},
        "EKS Kubernetes 1.33 left standard support on 2026-07-29",
    ),
    "eks-access-entries": (
        EKS_CLUSTER,
        {"accessConfig": {"authenticationMode": "API"}},
        {
            "accessConfig": {
                "authenticationMode": "API_AND_CONFIG_MAP",
                "bootstrapClusterCreatorAdminPermissions": True,
            }
        },
        "access entries only",
    ),
    "eks-node-group-no-ssh": (
        NODE_GROUP,
        {"launchTemplate": {"id": "lt-1"}},
        {"remoteAccess": {"ec2SshKey": "ops"}},
        "SSH is open to 0.0.0.0/0",
    ),
    "eks-node-group-launch-template": (
        NODE_GROUP,
        {"launchTemplate": {"id": "lt-1", "version": "1"}},
        {"amiType": "AL2023_x86_64_STANDARD"},
        "launch template",
    ),
    "imdsv1-disabled": (
        LAUNCH_TEMPLATE,
        {"metadataOptions": {"httpTokens": "required"}},
        {"metadataOptions": {"httpTokens": "optional"}},
        "IMDSv1 is enabled",
    ),
    "imds-hop-limit": (
        LAUNCH_TEMPLATE,
        {"metadataOptions": {"httpPutResponseHopLimit": 1}},
        {"metadataOptions": {"httpPutResponseHopLimit": 2}},
        "hop limit 2",
    ),
    "encrypted-gp3-root-volume": (
        LAUNCH_TEMPLATE,
        {"blockDeviceMappings": [GOOD_VOLUME]},
        {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeType": "gp3"}}]},
        "/dev/xvda is not encrypted",
    ),
    "ecr-immutable-tags": (
        ECR_REPOSITORY,
        {"imageTagMutability": "IMMUTABLE"},
        {"imageTagMutability": "MUTABLE"},
        "tags are mutable",
    ),
    "ecr-scan-on-push": (
        ECR_REPOSITORY,
        {"imageScanningConfiguration": {"scanOnPush": True}},
        {"imageScanningConfiguration": {"scanOnPush": False}},
        "not scanned",
    ),
    "ecr-kms-encryption": (
        ECR_REPOSITORY,
        {"encryptionConfigurations": [{"encryptionType": "KMS"}]},
        {"encryptionConfigurations": [{"encryptionType": "AES256"}]},
        "not encrypted with KMS",
    ),
    "ecr-policy-not-public": (
        ECR_POLICY,
        {"policy": _policy({"AWS": ["arn:aws:iam::210987654321:root"]})},
        {"policy": _policy({"AWS": "*"})},
        "lets anyone",
    ),
    "kms-key-rotation": (
        KMS_KEY,
        {"enableKeyRotation": True},
        {"enableKeyRotation": False},
        "rotation is off",
    ),
    "rds-secure": (
        RDS_INSTANCE,
        {"storageEncrypted": True, "manageMasterUserPassword": True},
        {"storageEncrypted": True, "password": "hunter2"},
        "Secrets Manager",
    ),
    "rds-production": (
        RDS_INSTANCE,
        {**PRODUCTION, "multiAz": True, "deletionProtection": True, "backupRetentionPeriod": 14},
        {**PRODUCTION, "multiAz": False, "deletionProtection": True, "backupRetentionPeriod": 14},
        "must be Multi-AZ",
    ),
    "log-group-retention-kms": (
        LOG_GROUP,
        {"retentionInDays": 30, "kmsKeyId": "arn:k"},
        {"kmsKeyId": "arn:k"},
        "kept forever",
    ),
    "subnet-no-public-ip": (
        SUBNET,
        {"mapPublicIpOnLaunch": False},
        {"mapPublicIpOnLaunch": True},
        "public IP",
    ),
    "default-security-group-closed": (
        DEFAULT_SECURITY_GROUP,
        {"vpcId": "vpc-1"},
        {"ingress": [{"protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}]},
        "allow nothing",
    ),
    "flow-logs-all-traffic": (
        FLOW_LOG,
        {"trafficType": "ALL"},
        {"trafficType": "REJECT"},
        "ALL traffic",
    ),
    "vpc-endpoint-policy": (
        VPC_ENDPOINT,
        {
            "policy": _document(
                {
                    "Principal": "*",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012"}},
                }
            )
        },
        {"serviceName": "com.amazonaws.eu-west-1.sts"},
        "no endpoint policy",
    ),
    "iam-documents-lint": (
        IAM_ROLE_POLICY,
        {"policy": _document({"Action": "ecr:BatchGetImage", "Resource": "*"})},
        {
            "policy": _document(
                {
                    "Action": "kms:Decrypt",
                    "Resource": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
                }
            )
        },
        "RESOURCE_MISMATCH",
    ),
    "required-tags": (
        "aws:ec2/vpc:Vpc",
        DEV,
        {"tags": {"environment": "dev"}},
        "missing tags: managed-by",
    ),
}


def _rule(name: str) -> Rule:
    return next(rule for rule in RULES if rule.name == name)


def test_every_rule_has_a_case_and_the_checkov_ports_are_all_there() -> None:
    assert set(CASES) == {rule.name for rule in RULES}
    ported = {rule.checkov for rule in RULES}
    for check in (37, 38, 39, 58, 100, 339, 79, 341, 51, 163, 136, 32):
        assert f"CKV_AWS_{check}" in ported


@pytest.mark.parametrize("name", list(CASES))
def test_the_rule_fails_on_the_bad_inputs_and_passes_on_the_good(name: str) -> None:
    type_token, good, bad, message = CASES[name]
    rule = _rule(name)
    assert rule.violations(Resource(type_token, "good", good)) == []
    violations = rule.violations(Resource(type_token, "bad", bad))
    assert violations
    assert message in " ".join(violations)


def test_rules_ignore_other_resource_types() -> None:
    assert _rule("ecr-immutable-tags").violations(Resource(EKS_CLUSTER, "c", {})) == []


def test_a_public_policy_with_a_condition_is_not_public() -> None:
    resource = Resource(
        ECR_POLICY, "p", {"policy": _policy("*", {"StringEquals": {"aws:PrincipalOrgID": "o-1"}})}
    )
    assert _rule("ecr-policy-not-public").violations(resource) == []


def test_taggability_is_read_off_the_provider_sdk() -> None:
    assert taggable("aws:ec2/vpc:Vpc")
    assert taggable("aws:eks/cluster:Cluster")
    assert not taggable("aws:ec2/route:Route")
    assert not taggable("aws:iam/rolePolicy:RolePolicy")
    assert not taggable("kubernetes:core/v1:Secret")


@pytest.mark.parametrize(
    ("type_token", "key"),
    [
        (EKS_CLUSTER, "encryptionConfig"),
        (EKS_CLUSTER, "enabledClusterLogTypes"),
        (LAUNCH_TEMPLATE, "metadataOptions"),
        (ECR_REPOSITORY, "imageScanningConfiguration"),
        (RDS_INSTANCE, "storageEncrypted"),
        (KMS_KEY, "enableKeyRotation"),
    ],
)
def test_removing_a_secure_default_from_a_stack_is_caught(
    programs: dict[str, Program], type_token: str, key: str
) -> None:
    resource = programs["dev"].of_type(type_token)[0]
    weakened = Resource(
        type_token, resource.name, {k: v for k, v in resource.inputs.items() if k != key}
    )
    assert evaluate([resource.resource()]) == []
    assert evaluate([weakened]) != []


def test_the_pack_serves_every_rule_with_its_checkov_id() -> None:
    served = {policy.name: policy for policy in policies()}
    assert set(served) == {rule.name for rule in RULES}
    assert "CKV_AWS_58" in served["eks-secrets-encryption"].description


def test_the_pack_runs_in_the_projects_environment() -> None:
    pack = yaml.safe_load((REPO / "infra" / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["name"] == "python"
    venv = (REPO / "infra" / "policy" / pack["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == (REPO / ".venv").resolve()
    entry = (REPO / "infra" / "policy" / "__main__.py").read_text()
    assert "policies()" in entry
    assert "PolicyPack(" in entry


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_the_pack_passes_every_stack_as_crossguard_runs_it(
    preview: bool, programs: dict[str, Program], previews: dict[str, Program]
) -> None:
    """The structs the SDK sent, through pulumi_policy's analyzer: rules see its read-only
    Mapping/Sequence proxies, numbers as doubles and, in preview, the engine's unknowns."""
    for stack, program in (previews if preview else programs).items():
        diagnostics = program.analyze()
        mandatory = [d for d in diagnostics if d.mandatory]
        assert mandatory == [], f"{stack}: " + "; ".join(
            f"{d.urn}: {d.policy}: {d.message}" for d in mandatory
        )
        # A value the engine cannot know yet skips that policy with an advisory note (it runs
        # again on `up`); on `up` every value is known and nothing may be skipped.
        unknown = [d for d in diagnostics if "can't be known during preview" in d.message]
        assert bool(unknown) is preview
        assert len(unknown) == len(diagnostics)


def test_the_pack_blocks_what_the_rules_block_through_the_analyzer() -> None:
    """The same bad inputs as CASES, serialized as the engine would hand them over."""
    for name, (type_token, good, bad, message) in CASES.items():
        for props, expected in ((good, False), (bad, True)):
            registered = engine_registration(type_token, props)
            reported = [d for d in analyze([registered]) if d.policy == name]
            assert bool(reported) is expected, (name, props)
            assert all(d.mandatory for d in reported)
            if expected:
                assert any(message in d.message for d in reported)


@pytest.mark.parametrize(
    ("statement", "finding"),
    [
        ({"Action": "ecr:PullEverything", "Resource": "*"}, "UNKNOWN_ACTION"),
        (
            {
                "Action": "ec2:CreateTags",
                "Resource": "*",
                "Condition": {"StringEquals": {"elasticloadbalancing:CreateAction": "X"}},
            },
            "UNKNOWN_CONDITION_FOR_ACTION",
        ),
        ({"Action": "kms:Decrypt", "Resource": "arn:aws:s3:::bucket"}, "RESOURCE_MISMATCH"),
    ],
)
def test_parliament_refuses_what_aws_would_refuse_or_ignore(
    statement: dict[str, Any], finding: str
) -> None:
    assert any(line.startswith(finding) for line in lint(_document(statement)))


def test_a_trust_policy_needs_no_resource_but_an_identity_policy_does() -> None:
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "eks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    assert lint(trust, trust=True) == []
    assert lint(trust) != []


def test_every_document_the_program_writes_is_linted(program: Program) -> None:
    linted = [
        r
        for r in program.registered
        if r.type in IAM_DOCUMENTS and isinstance(r.inputs.get(IAM_DOCUMENTS[r.type][0]), str)
    ]
    types = {r.type for r in linted}
    assert {IAM_ROLE, IAM_ROLE_POLICY, KMS_KEY} <= types
    for resource in linted:
        key, trust = IAM_DOCUMENTS[resource.type]
        assert lint(resource.inputs[key], trust=trust) == [], resource.name
