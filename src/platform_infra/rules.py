"""The infrastructure's secure defaults as plain functions over a resource's inputs.

Each rule sees what Pulumi sends the engine: the type token and the camelCase inputs. That is
what ``pulumi.runtime.set_mocks`` records in the tests and what CrossGuard hands a policy
during ``pulumi preview --policy-pack infra/policy``, so one function serves both. Rules
marked with a checkov id are ports of that check (its Terraform attribute names translated to
the Pulumi inputs); the others hold this platform's own defaults.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from platform_infra.iam import lint
from platformctl.model import find_root, load_repo
from platformctl.support import Calendar

# What CKV_AWS_37 requires of an EKS cluster (the rules hold their own expectations; the
# components never read them).
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
REQUIRED_TAGS = ("environment", "managed-by")
PRODUCTION = "production"

EKS_CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
KMS_KEY = "aws:kms/key:Key"
RDS_INSTANCE = "aws:rds/instance:Instance"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SUBNET = "aws:ec2/subnet:Subnet"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY = "aws:iam/policy:Policy"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
SECRET_POLICY = "aws:secretsmanager/secretPolicy:SecretPolicy"
# Where each resource type carries an IAM document, and whether it is a role's trust policy.
IAM_DOCUMENTS: Mapping[str, tuple[str, bool]] = {
    IAM_ROLE: ("assumeRolePolicy", True),
    IAM_ROLE_POLICY: ("policy", False),
    IAM_POLICY: ("policy", False),
    KMS_KEY: ("policy", False),
    ECR_POLICY: ("policy", False),
    VPC_ENDPOINT: ("policy", False),
    SECRET_POLICY: ("policy", False),
}


@dataclass(frozen=True)
class Resource:
    """One resource as the engine sees it: type token, logical name and inputs."""

    type: str
    name: str
    props: Mapping[str, Any]

    @property
    def tags(self) -> Mapping[str, Any]:
        tags = self.props.get("tags")
        return tags if isinstance(tags, Mapping) else {}

    @property
    def in_production(self) -> bool:
        return self.tags.get("environment") == PRODUCTION


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    resource_types: frozenset[str]
    check: Callable[[Resource], Iterator[str]]
    checkov: str | None = None

    def applies_to(self, resource_type: str) -> bool:
        return not self.resource_types or resource_type in self.resource_types

    def violations(self, resource: Resource) -> list[str]:
        return list(self.check(resource)) if self.applies_to(resource.type) else []


@dataclass(frozen=True)
class Violation:
    rule: Rule
    resource: Resource
    message: str

    def __str__(self) -> str:
        ported = f" ({self.rule.checkov})" if self.rule.checkov else ""
        return (
            f"{self.resource.type} '{self.resource.name}': {self.rule.name}{ported}: {self.message}"
        )


def _is_list(value: Any) -> bool:
    """A list as the tests' mocks give it, or as CrossGuard does: a read-only Sequence proxy."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _items(value: Any) -> list[Any]:
    """A list-valued input as a list; one value where AWS also accepts a scalar."""
    if value is None:
        return []
    return list(value) if _is_list(value) else [value]


def _get(props: Mapping[str, Any], *path: str | int) -> Any:
    """``props[a][b]...``, where a list stands for its first block (Terraform's ``[0]``).

    CrossGuard hands rules Mapping/Sequence proxies, never ``dict``/``list``: only the
    abstract types are tested here.
    """
    node: Any = props
    for key in path:
        if _is_list(node) and not isinstance(key, int):
            node = node[0] if node else None
        if isinstance(key, int):
            node = node[key] if _is_list(node) and len(node) > key else None
        elif isinstance(node, Mapping):
            node = node.get(key)
        else:
            return None
    return node


def _truthy(value: Any) -> bool:
    """Pulumi sends some booleans as strings (``encrypted: "true"`` on EBS)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _control_plane_logging(resource: Resource) -> Iterator[str]:
    enabled = set(resource.props.get("enabledClusterLogTypes") or [])
    missing = [kind for kind in CONTROL_PLANE_LOG_TYPES if kind not in enabled]
    if missing:
        yield "control-plane log types not enabled: " + ", ".join(missing)


def _public_access(resource: Resource) -> bool:
    # EKS makes the endpoint public unless told otherwise.
    value = _get(resource.props, "vpcConfig", "endpointPublicAccess")
    return value is None or _truthy(value)


def _public_endpoint_cidrs(resource: Resource) -> Iterator[str]:
    if not _public_access(resource):
        return
    cidrs = _get(resource.props, "vpcConfig", "publicAccessCidrs") or []
    if not cidrs or "0.0.0.0/0" in cidrs:
        yield "the public API endpoint is open to 0.0.0.0/0; list allowed CIDRs or make it private"


def _public_endpoint_disabled(resource: Resource) -> Iterator[str]:
    if resource.in_production and _public_access(resource):
        yield "production's API endpoint must be private (endpointPublicAccess: false)"


def _private_endpoint(resource: Resource) -> Iterator[str]:
    if not _truthy(_get(resource.props, "vpcConfig", "endpointPrivateAccess")):
        yield "the private API endpoint is off: nodes would reach the API over the internet"


def _secrets_encryption(resource: Resource) -> Iterator[str]:
    config = _get(resource.props, "encryptionConfig") or {}
    resources = _get(config, "resources") or []
    if "secrets" not in resources or not _get(config, "provider", "keyArn"):
        yield "Kubernetes secrets are not envelope-encrypted with a KMS key"


@cache
def _calendar() -> Calendar:
    """The repository's support calendar (the pack runs from the repository's own venv)."""
    return load_repo(find_root(Path(__file__).resolve().parent)).support


def _supported_version(resource: Resource) -> Iterator[str]:
    """CKV_AWS_339 keeps a list of versions; the calendar also knows until when."""
    version = resource.props.get("version")
    if version is not None:
        verdict = _calendar().kubernetes_version(str(version), dt.date.today())
        if verdict.refused:
            yield verdict.refused


def _api_authentication(resource: Resource) -> Iterator[str]:
    if _get(resource.props, "accessConfig", "authenticationMode") != "API":
        yield "authentication must use access entries only (accessConfig.authenticationMode: API)"
    if _truthy(_get(resource.props, "accessConfig", "bootstrapClusterCreatorAdminPermissions")):
        yield "the cluster creator must not get implicit admin; grant admins with access entries"


def _node_group_ssh(resource: Resource) -> Iterator[str]:
    remote = _get(resource.props, "remoteAccess")
    if remote and _get(remote, "ec2SshKey") and not _get(remote, "sourceSecurityGroupIds"):
        yield "SSH is open to 0.0.0.0/0 through remoteAccess.ec2SshKey"
    elif remote:
        yield "nodes must not accept SSH (remove remoteAccess; use SSM Session Manager)"


def _node_group_launch_template(resource: Resource) -> Iterator[str]:
    if not _get(resource.props, "launchTemplate", "id"):
        yield "a managed node group needs the platform's launch template (IMDSv2, encrypted disk)"


def _imdsv1_disabled(resource: Resource) -> Iterator[str]:
    options = _get(resource.props, "metadataOptions")
    if not isinstance(options, Mapping):
        yield "metadataOptions missing: IMDSv1 stays enabled"
    elif options.get("httpEndpoint") != "disabled" and options.get("httpTokens") != "required":
        yield "IMDSv1 is enabled (metadataOptions.httpTokens must be 'required')"


def _imds_hop_limit(resource: Resource) -> Iterator[str]:
    limit = _get(resource.props, "metadataOptions", "httpPutResponseHopLimit")
    if limit is not None and int(limit) > 1:
        yield f"metadata hop limit {limit} lets pods read the node's credentials; use 1"


def _encrypted_root_volume(resource: Resource) -> Iterator[str]:
    mappings = resource.props.get("blockDeviceMappings") or []
    if not mappings:
        yield "no root volume mapping: the AMI's unencrypted default would apply"
    for mapping in mappings:
        ebs = _get(mapping, "ebs") or {}
        if not _truthy(ebs.get("encrypted")):
            yield f"volume {mapping.get('deviceName')} is not encrypted"
        if ebs.get("volumeType") != "gp3":
            yield f"volume {mapping.get('deviceName')} is {ebs.get('volumeType')}, not gp3"


def _ecr_immutable(resource: Resource) -> Iterator[str]:
    if resource.props.get("imageTagMutability") != "IMMUTABLE":
        yield "tags are mutable: a promoted tag could be moved to another image"


def _ecr_scan_on_push(resource: Resource) -> Iterator[str]:
    if not _truthy(_get(resource.props, "imageScanningConfiguration", "scanOnPush")):
        yield "images are not scanned on push"


def _ecr_kms(resource: Resource) -> Iterator[str]:
    if _get(resource.props, "encryptionConfigurations", "encryptionType") != "KMS":
        yield "the repository is not encrypted with KMS"


def _principal_is_public(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return "*" in _items(principal.get("AWS"))
    return False


def _ecr_policy_not_public(resource: Resource) -> Iterator[str]:
    raw = resource.props.get("policy")
    try:
        policy = json.loads(raw) if isinstance(raw, str) else raw or {}
    except json.JSONDecodeError:
        yield "the repository policy is not valid JSON"
        return
    for statement in _items(policy.get("Statement")):
        if (
            statement.get("Effect") == "Allow"
            and _principal_is_public(statement.get("Principal"))
            and not statement.get("Condition")
        ):
            yield f"statement {statement.get('Sid', '?')} lets anyone (*) use the repository"


def _kms_rotation(resource: Resource) -> Iterator[str]:
    if not _truthy(resource.props.get("enableKeyRotation")):
        yield "key rotation is off"


def _rds_secure(resource: Resource) -> Iterator[str]:
    if not _truthy(resource.props.get("storageEncrypted")):
        yield "storage is not encrypted"
    if resource.props.get("publiclyAccessible"):
        yield "the database is publicly accessible"
    if resource.props.get("password") or not _truthy(
        resource.props.get("manageMasterUserPassword")
    ):
        yield "the master password must be managed in Secrets Manager (manageMasterUserPassword)"


def _rds_production(resource: Resource) -> Iterator[str]:
    if not resource.in_production:
        return
    if not _truthy(resource.props.get("multiAz")):
        yield "production's database must be Multi-AZ"
    if not _truthy(resource.props.get("deletionProtection")):
        yield "production's database must have deletion protection"
    if int(resource.props.get("backupRetentionPeriod") or 0) < 7:
        yield "production keeps backups for at least 7 days"


def _log_group(resource: Resource) -> Iterator[str]:
    if not resource.props.get("retentionInDays"):
        yield "logs are kept forever: set retentionInDays"
    if not resource.props.get("kmsKeyId"):
        yield "logs are not encrypted with the platform's KMS key"


def _subnet_no_public_ip(resource: Resource) -> Iterator[str]:
    if _truthy(resource.props.get("mapPublicIpOnLaunch")):
        yield "instances launched here get a public IP (mapPublicIpOnLaunch)"


def _default_security_group_closed(resource: Resource) -> Iterator[str]:
    if resource.props.get("ingress") or resource.props.get("egress"):
        yield "the VPC's default security group must allow nothing"


def _flow_log_all_traffic(resource: Resource) -> Iterator[str]:
    if resource.props.get("trafficType") != "ALL":
        yield "flow logs must record ALL traffic, rejected included"


def _endpoint_policy(resource: Resource) -> Iterator[str]:
    raw = resource.props.get("policy")
    if not isinstance(raw, str) or not raw:
        yield "no endpoint policy: anyone's credentials can use this network path to AWS"
        return
    for statement in _items(json.loads(raw).get("Statement")):
        if (
            statement.get("Effect") == "Allow"
            and _principal_is_public(statement.get("Principal"))
            and "*" in _items(statement.get("Resource"))
            and not statement.get("Condition")
        ):
            yield f"statement {statement.get('Sid', '?')} lets any principal do anything"


def _iam_documents_lint(resource: Resource) -> Iterator[str]:
    key, trust = IAM_DOCUMENTS[resource.type]
    document = resource.props.get(key)
    if isinstance(document, str):
        for finding in lint(document, trust=trust):
            yield f"{key}: {finding}"


@cache
def taggable(type_token: str) -> bool:
    """Whether an AWS resource type takes ``tags`` (read off the provider SDK itself)."""
    package, _, rest = type_token.partition(":")
    module, _, class_name = rest.partition(":")
    if package != "aws" or not class_name:
        return False
    try:
        sdk = importlib.import_module(f"pulumi_aws.{module.split('/')[0]}")
    except ImportError:
        return False
    resource_class = getattr(sdk, class_name, None)
    init = getattr(resource_class, "_internal_init", None)
    return init is not None and "tags" in inspect.signature(init).parameters


def _tagged(resource: Resource) -> Iterator[str]:
    if not taggable(resource.type):
        return
    missing = [tag for tag in REQUIRED_TAGS if not resource.tags.get(tag)]
    if missing:
        yield "missing tags: " + ", ".join(missing)


def _rule(
    name: str,
    description: str,
    types: Iterable[str],
    check: Callable[[Resource], Iterator[str]],
    checkov: str | None = None,
) -> Rule:
    return Rule(name, description, frozenset(types), check, checkov)


RULES: tuple[Rule, ...] = (
    _rule(
        "eks-control-plane-logging",
        "EKS sends every control-plane log type to CloudWatch",
        [EKS_CLUSTER],
        _control_plane_logging,
        "CKV_AWS_37",
    ),
    _rule(
        "eks-public-endpoint-cidrs",
        "A public EKS endpoint is never open to 0.0.0.0/0",
        [EKS_CLUSTER],
        _public_endpoint_cidrs,
        "CKV_AWS_38",
    ),
    _rule(
        "eks-public-endpoint-disabled",
        "Production's EKS endpoint is private only",
        [EKS_CLUSTER],
        _public_endpoint_disabled,
        "CKV_AWS_39",
    ),
    _rule(
        "eks-private-endpoint",
        "Nodes reach the EKS API through the private endpoint",
        [EKS_CLUSTER],
        _private_endpoint,
    ),
    _rule(
        "eks-secrets-encryption",
        "EKS envelope-encrypts secrets with a customer KMS key",
        [EKS_CLUSTER],
        _secrets_encryption,
        "CKV_AWS_58",
    ),
    _rule(
        "eks-supported-version",
        "EKS runs a supported Kubernetes version",
        [EKS_CLUSTER],
        _supported_version,
        "CKV_AWS_339",
    ),
    _rule(
        "eks-access-entries",
        "EKS authenticates with access entries only",
        [EKS_CLUSTER],
        _api_authentication,
    ),
    _rule(
        "eks-node-group-no-ssh",
        "Managed nodes accept no SSH",
        [NODE_GROUP],
        _node_group_ssh,
        "CKV_AWS_100",
    ),
    _rule(
        "eks-node-group-launch-template",
        "Managed nodes use the hardened launch template",
        [NODE_GROUP],
        _node_group_launch_template,
    ),
    _rule(
        "imdsv1-disabled",
        "Instances require IMDSv2 session tokens",
        [LAUNCH_TEMPLATE, INSTANCE],
        _imdsv1_disabled,
        "CKV_AWS_79",
    ),
    _rule(
        "imds-hop-limit",
        "Pods cannot reach the node's metadata credentials",
        [LAUNCH_TEMPLATE],
        _imds_hop_limit,
        "CKV_AWS_341",
    ),
    _rule(
        "encrypted-gp3-root-volume",
        "Node root volumes are encrypted gp3",
        [LAUNCH_TEMPLATE],
        _encrypted_root_volume,
    ),
    _rule(
        "ecr-immutable-tags",
        "ECR tags are immutable",
        [ECR_REPOSITORY],
        _ecr_immutable,
        "CKV_AWS_51",
    ),
    _rule(
        "ecr-scan-on-push",
        "ECR scans every pushed image",
        [ECR_REPOSITORY],
        _ecr_scan_on_push,
        "CKV_AWS_163",
    ),
    _rule(
        "ecr-kms-encryption",
        "ECR repositories are encrypted with KMS",
        [ECR_REPOSITORY],
        _ecr_kms,
        "CKV_AWS_136",
    ),
    _rule(
        "ecr-policy-not-public",
        "No ECR repository policy admits anyone",
        [ECR_POLICY],
        _ecr_policy_not_public,
        "CKV_AWS_32",
    ),
    _rule(
        "kms-key-rotation", "Customer KMS keys rotate yearly", [KMS_KEY], _kms_rotation, "CKV_AWS_7"
    ),
    _rule(
        "rds-secure",
        "RDS is encrypted, private, and its password lives in Secrets Manager",
        [RDS_INSTANCE],
        _rds_secure,
        "CKV_AWS_16",
    ),
    _rule(
        "rds-production",
        "Production's RDS is Multi-AZ, protected and backed up",
        [RDS_INSTANCE],
        _rds_production,
        "CKV_AWS_157",
    ),
    _rule(
        "log-group-retention-kms",
        "Log groups expire and are KMS-encrypted",
        [LOG_GROUP],
        _log_group,
        "CKV_AWS_158",
    ),
    _rule(
        "subnet-no-public-ip",
        "No subnet hands out public IPs",
        [SUBNET],
        _subnet_no_public_ip,
        "CKV_AWS_130",
    ),
    _rule(
        "default-security-group-closed",
        "The default security group allows nothing",
        [DEFAULT_SECURITY_GROUP],
        _default_security_group_closed,
        "CKV2_AWS_12",
    ),
    _rule(
        "flow-logs-all-traffic",
        "VPC flow logs record all traffic",
        [FLOW_LOG],
        _flow_log_all_traffic,
    ),
    _rule(
        "vpc-endpoint-policy",
        "VPC endpoints serve this account's principals and resources only",
        [VPC_ENDPOINT],
        _endpoint_policy,
    ),
    _rule(
        "iam-documents-lint",
        "parliament finds nothing wrong in an IAM policy, trust, key or resource policy",
        IAM_DOCUMENTS,
        _iam_documents_lint,
    ),
    _rule(
        "required-tags", "Every taggable AWS resource names its environment and owner", [], _tagged
    ),
)


def evaluate(resources: Iterable[Resource], rules: Iterable[Rule] = RULES) -> list[Violation]:
    """Every violation of ``rules`` among ``resources``, in order."""
    selected = tuple(rules)
    return [
        Violation(rule, resource, message)
        for resource in resources
        for rule in selected
        for message in rule.violations(resource)
    ]
