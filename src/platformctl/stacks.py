"""Typed, validated settings of one stack (``Pulumi.<stack>.yaml``), checked before any
resource is declared - by the Pulumi program (``platform_infra.engine``, from the engine's
config) and by ``platform verify`` (``Repo.stack``, from the file) alike.

The Kubernetes version and the repository URL are not stack settings: they come from the repo
model (``environments/<env>/environment.yaml`` and ``environments/pipeline.yaml``), which the
gitops chart and ``platform verify`` read too, so they cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from platformctl.documents import check_document, key_text, packaged_schema
from platformctl.errors import InputError
from platformctl.model import Environment, Repo
from platformctl.policy.findings import Finding
from platformctl.support import ARGOCD_CHART, Calendar, Verdict, argocd_verdict
from platformctl.yamlio import display_path, located, read_mapping

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

NAMESPACE = "platform"
INSTANCE_TYPE = re.compile(
    r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(-[0-9]+xl)?)$"
)
DB_INSTANCE_CLASS = re.compile(
    r"^db\.[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(micro|small|medium|large|xlarge|[1-9][0-9]*xlarge)$"
)
ECR_HOST = re.compile(r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")


@dataclass(frozen=True)
class NetworkSettings:
    cidr: ipaddress.IPv4Network
    availability_zones: int
    nat_gateways: Literal["single", "perZone"]
    flow_log_retention_days: int


class _Zoned(Protocol):
    @property
    def availability_zones(self) -> int: ...
    @property
    def nat_gateways(self) -> Literal["single", "perZone"]: ...


def nat_gateway_count(network: _Zoned) -> int:
    """One per zone, or one for the VPC: each takes an Elastic IP."""
    return network.availability_zones if network.nat_gateways == "perZone" else 1


@dataclass(frozen=True)
class NodeGroupSettings:
    name: str
    instance_types: tuple[str, ...]
    min_size: int
    desired_size: int
    max_size: int
    disk_size_gib: int
    capacity_type: Literal["ON_DEMAND", "SPOT"]


@dataclass(frozen=True)
class ClusterSettings:
    name: str
    kubernetes_version: str
    # The VPC CNI's own network-policy agent (``enableNetworkPolicy``): without it the
    # cluster ignores every NetworkPolicy the charts render.
    network_policy: bool
    public_access_cidrs: tuple[str, ...]
    # Who reaches the private endpoint (443 on the cluster security group): CI runners, VPN.
    api_access_cidrs: tuple[str, ...]
    log_retention_days: int
    admin_role_arns: tuple[str, ...]
    addons: Mapping[str, str]
    node_groups: tuple[NodeGroupSettings, ...]


@dataclass(frozen=True)
class DatabaseSettings:
    engine_version: str
    instance_class: str
    allocated_storage_gib: int
    max_allocated_storage_gib: int
    multi_az: bool
    deletion_protection: bool
    backup_retention_days: int


@dataclass(frozen=True)
class RegistrySettings:
    """The ECR repositories the images of every stage live in (one set, shared by all stages)."""

    account_id: str
    repositories: Mapping[str, str]
    owned: bool
    pull_account_ids: tuple[str, ...]
    keep_images: int


@dataclass(frozen=True)
class SsoSettings:
    """Argo CD's OIDC login (a public client with PKCE: no client secret to hand over)."""

    issuer: str
    client_id: str
    # Members of these groups (the ``groups`` claim) are Argo CD admins; others read only.
    admin_groups: tuple[str, ...]


@dataclass(frozen=True)
class ArgoCDSettings:
    chart_version: str
    high_availability: bool
    hostname: str
    namespace: str
    # The repository the stack is read from: the bootstrap installs its charts/vendor/argo-cd.
    root: Path
    # The built-in ``admin`` login: the first stage only; elsewhere people log in with SSO.
    local_admin: bool = False
    sso: SsoSettings | None = None


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs about one stack, from its file and from the repo model."""

    environment: str
    region: str
    # The DNS zone of the environment: argocd.<domain>, grafana.<domain>, the services' hosts.
    domain: str
    # Its public hosted zone, delegated from the parent domain (a prerequisite, checked).
    dns_zone_id: str
    deletion_protection: bool
    repository_url: str
    revision: str
    services: tuple[str, ...]
    network: NetworkSettings
    cluster: ClusterSettings
    database: DatabaseSettings
    registry: RegistrySettings
    argocd: ArgoCDSettings
    # What the support calendar says is due soon (a version within 90 days of its end).
    warnings: tuple[str, ...] = ()


@cache
def _validator() -> Draft202012Validator:
    # imported here: every command imports this module, few read a stack file
    from jsonschema import Draft202012Validator

    return Draft202012Validator(packaged_schema("stack"))


def stack_file(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.yaml"


class _Checker:
    """Raises ``file:line: key: reason`` for the semantic checks the schema cannot express,
    and collects the calendar's warnings for the day it checks on."""

    def __init__(self, source: Path, today: dt.date) -> None:
        self.source = source
        self.today = today
        self.warnings: list[str] = []

    def warn(self, verdict: Verdict) -> None:
        if verdict.warning:
            self.warnings.append(f"{display_path(self.source)}: {verdict.warning}")

    def fail(self, key_path: Sequence[str | int], reason: str) -> InputError:
        where = located(self.source, ["config", *key_path])
        return InputError(f"{where}: {key_text(key_path)}: {reason}")

    def cidr(self, value: str, key_path: Sequence[str | int]) -> ipaddress.IPv4Network:
        try:
            network = ipaddress.IPv4Network(value)
        except ValueError as error:
            raise self.fail(key_path, f"'{value}' is not an IPv4 CIDR block ({error})") from None
        return network


def _section(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(f"{NAMESPACE}:{key}", {})
    return dict(value) if isinstance(value, Mapping) else {}


def _network(config: Mapping[str, Any], check: _Checker) -> NetworkSettings:
    raw = _section(config, "network")
    key = f"{NAMESPACE}:network"
    cidr = check.cidr(raw["cidr"], [key, "cidr"])
    if not cidr.is_private:
        raise check.fail([key, "cidr"], f"{cidr} is not a private range (use 10.x, 172.16-31.x)")
    if not 16 <= cidr.prefixlen <= 20:
        raise check.fail(
            [key, "cidr"], f"/{cidr.prefixlen} does not fit the subnets; use a /16 to /20"
        )
    return NetworkSettings(
        cidr=cidr,
        availability_zones=raw["availabilityZones"],
        nat_gateways=raw["natGateways"],
        flow_log_retention_days=raw.get("flowLogRetentionDays", 365),
    )


def _node_groups(
    raw: Sequence[Mapping[str, Any]], check: _Checker
) -> tuple[NodeGroupSettings, ...]:
    groups: list[NodeGroupSettings] = []
    key = f"{NAMESPACE}:cluster"
    for index, group in enumerate(raw):
        for position, instance_type in enumerate(group["instanceTypes"]):
            if not INSTANCE_TYPE.match(instance_type):
                raise check.fail(
                    [key, "nodeGroups", index, "instanceTypes", position],
                    f"unknown size '{instance_type}': use an EC2 type such as m7i.large",
                )
        if not group["minSize"] <= group["desiredSize"] <= group["maxSize"]:
            raise check.fail(
                [key, "nodeGroups", index],
                "sizes must satisfy minSize <= desiredSize <= maxSize",
            )
        groups.append(
            NodeGroupSettings(
                name=group["name"],
                instance_types=tuple(group["instanceTypes"]),
                min_size=group["minSize"],
                desired_size=group["desiredSize"],
                max_size=group["maxSize"],
                disk_size_gib=group.get("diskSizeGiB", 50),
                capacity_type=group.get("capacityType", "ON_DEMAND"),
            )
        )
    names = [group.name for group in groups]
    if len(set(names)) != len(names):
        raise check.fail([key, "nodeGroups"], "node group names must be unique")
    return tuple(groups)


def _cluster(
    config: Mapping[str, Any], environment: Environment, calendar: Calendar, check: _Checker
) -> ClusterSettings:
    raw = _section(config, "cluster")
    key = f"{NAMESPACE}:cluster"
    for index, value in enumerate(raw.get("apiAccessCidrs", [])):
        if check.cidr(value, [key, "apiAccessCidrs", index]).prefixlen == 0:
            raise check.fail(
                [key, "apiAccessCidrs", index],
                "the API must not be open to every address; list your runners' or VPN's CIDRs",
            )
    for index, value in enumerate(raw.get("publicAccessCidrs", [])):
        network = check.cidr(value, [key, "publicAccessCidrs", index])
        if network.prefixlen == 0:
            raise check.fail(
                [key, "publicAccessCidrs", index],
                "the API endpoint must not be open to the internet; list your office or VPN CIDRs",
            )
    version = environment.kubernetes_version
    addons = dict(raw["addons"])
    verdict = calendar.kubernetes_version(version, check.today)
    if verdict.refused:
        where = located(environment.settings_file, ["cluster", "kubernetesVersion"])
        raise InputError(f"{where}: cluster.kubernetesVersion: {verdict.refused}")
    check.warn(verdict)
    for addon, build in sorted(addons.items()):
        problem = calendar.addon_version(version, addon, build)
        if problem:
            raise check.fail([key, "addons", addon], problem)
    return ClusterSettings(
        name=environment.cluster_name,
        kubernetes_version=version,
        network_policy=raw.get("networkPolicy", True),
        public_access_cidrs=tuple(raw.get("publicAccessCidrs", [])),
        api_access_cidrs=tuple(raw.get("apiAccessCidrs", [])),
        log_retention_days=raw.get("logRetentionDays", 365),
        admin_role_arns=tuple(raw.get("adminRoleArns", [])),
        addons=addons,
        node_groups=_node_groups(raw["nodeGroups"], check),
    )


def _database(config: Mapping[str, Any], calendar: Calendar, check: _Checker) -> DatabaseSettings:
    raw = _section(config, "database")
    key = f"{NAMESPACE}:database"
    if not DB_INSTANCE_CLASS.match(raw["instanceClass"]):
        raise check.fail(
            [key, "instanceClass"],
            f"unknown size '{raw['instanceClass']}': use an RDS class such as db.t4g.medium",
        )
    allocated = raw["allocatedStorageGiB"]
    maximum = raw.get("maxAllocatedStorageGiB", allocated)
    if maximum < allocated:
        raise check.fail([key, "maxAllocatedStorageGiB"], "must be at least allocatedStorageGiB")
    verdict = calendar.postgres_version(raw["engineVersion"], check.today)
    if verdict.refused:
        raise check.fail([key, "engineVersion"], verdict.refused)
    check.warn(verdict)
    return DatabaseSettings(
        engine_version=raw["engineVersion"],
        instance_class=raw["instanceClass"],
        allocated_storage_gib=allocated,
        max_allocated_storage_gib=maximum,
        multi_az=raw.get("multiAz", False),
        deletion_protection=config[f"{NAMESPACE}:deletionProtection"],
        backup_retention_days=raw.get("backupRetentionDays", 7),
    )


def _registry(config: Mapping[str, Any], repo: Repo, region: str, stack: str) -> RegistrySettings:
    """The repositories named by the images in the values files: one registry for all stages.

    The first stage's stack owns them (it is deployed first, and CI pushes there before any
    promotion); the others only read them.
    """
    raw = _section(config, "registry")
    repositories: dict[str, str] = {}
    hosts: set[str] = set()
    for (service, _environment), release in sorted(repo.releases.items()):
        host, _, path = release.image.repository.partition("/")
        if not ECR_HOST.match(host):
            raise InputError(
                f"{release.values_file.name} of {release.environment.name}: image repository "
                f"'{release.image.repository}' is not in ECR",
                hint="images must live in <account>.dkr.ecr.<region>.amazonaws.com",
            )
        hosts.add(host)
        known = repositories.setdefault(service, path)
        if known != path:
            raise InputError(
                f"{service}: its image lives in both '{known}' and '{path}'",
                hint="promotion moves one image between stages: use one repository per service",
            )
    if len(hosts) > 1:
        raise InputError(
            "images live in several registries: " + ", ".join(sorted(hosts)),
            hint="use one ECR registry for every stage",
        )
    match = ECR_HOST.match(hosts.pop()) if hosts else None
    account_id, registry_region = (match["account"], match["region"]) if match else ("", region)
    owned = stack == repo.environments[0].name
    if owned and registry_region != region:
        raise InputError(
            f"Pulumi.{stack}.yaml: aws:region is {region} but the images live in {registry_region}",
            hint="deploy the first stage to the registry's region, or move the images",
        )
    return RegistrySettings(
        account_id=account_id,
        repositories=repositories,
        owned=owned,
        pull_account_ids=tuple(raw.get("pullAccountIds", [])),
        keep_images=raw.get("keepImages", 200),
    )


def _argocd(
    config: Mapping[str, Any],
    environment: Environment,
    domain: str,
    first: bool,
    root: Path,
    check: _Checker,
) -> ArgoCDSettings:
    raw = _section(config, "argocd")
    key = f"{NAMESPACE}:argocd"
    hostname = f"argocd.{domain}"
    local_admin = raw.get("localAdmin", False)
    if local_admin and not first:
        raise check.fail(
            [key, "localAdmin"],
            "the local admin login is for the first stage only: log in with sso here",
        )
    sso = raw.get("sso")
    if sso is None and not local_admin:
        raise check.fail([key], "no way to log in: set sso (issuer, clientId, adminGroups)")
    if environment.argocd is not None:
        declared = urlsplit(environment.argocd.url).hostname
        if declared != hostname:
            raise InputError(
                f"Pulumi.{environment.name}.yaml: platform:domain puts Argo CD at {hostname} but "
                f"{environment.settings_file.name} of {environment.name} calls {declared}",
                hint="make endpoints.argocd.url and platform:domain agree",
            )
    return ArgoCDSettings(
        chart_version=raw["chartVersion"],
        high_availability=raw.get("highAvailability", False),
        hostname=hostname,
        namespace=environment.argocd_namespace,
        root=root,
        local_admin=local_admin,
        sso=SsoSettings(sso["issuer"], sso["clientId"], tuple(sso["adminGroups"])) if sso else None,
    )


def load_settings(
    stack: str,
    config: Mapping[str, Any],
    repo: Repo,
    source: Path,
    today: dt.date | None = None,
) -> StackSettings:
    """Check a stack's config (as the engine passes it) against the schema, the repo model
    and the support calendar on ``today``.

    ``source`` is the stack file, for ``file:line`` in errors. Raises InputError.
    """
    environment = repo.environment(stack)
    check_document({"config": dict(config)}, _validator(), source)
    check = _Checker(source, today or dt.date.today())
    region: str = config["aws:region"]
    if region != environment.region:
        raise InputError(
            f"{located(source, ['config', 'aws:region'])}: aws:region: {region}, but "
            f"{display_path(environment.settings_file)} puts the cluster in {environment.region}",
            hint="make aws:region and cluster.region agree",
        )
    domain: str = config[f"{NAMESPACE}:domain"]
    cluster = _cluster(config, environment, repo.support, check)
    database = _database(config, repo.support, check)
    return StackSettings(
        environment=environment.name,
        region=region,
        domain=domain,
        dns_zone_id=config[f"{NAMESPACE}:dnsZoneId"],
        deletion_protection=config[f"{NAMESPACE}:deletionProtection"],
        repository_url=repo.repository_url,
        revision=repo.revision,
        services=repo.services,
        network=_network(config, check),
        cluster=cluster,
        database=database,
        registry=_registry(config, repo, region, stack),
        argocd=_argocd(
            config, environment, domain, stack == repo.environments[0].name, repo.root, check
        ),
        warnings=tuple(check.warnings),
    )


def read_stack(repo: Repo, stack: str, today: dt.date | None = None) -> StackSettings:
    """``Pulumi.<stack>.yaml`` as ``platform verify`` reads it: the same checks as the program
    runs on the engine's config."""
    source = stack_file(repo.root, stack)
    config = read_mapping(source).get("config")
    return load_settings(stack, config if isinstance(config, Mapping) else {}, repo, source, today)


def stack_findings(
    repo: Repo, environments: Sequence[str], today: dt.date
) -> tuple[list[Finding], list[str]]:
    """What ``platform verify`` reports of the stacks: each environment's stack file checked as
    ``pulumi up`` checks it (the support calendar included) and the vendored Argo CD chart
    held to the calendar. Findings refuse; warnings are due soon. An environment without a
    stack file (deployed by other means) is skipped."""
    findings: list[Finding] = []
    warnings: list[str] = []
    checked = False
    for name in environments:
        source = stack_file(repo.root, name)
        if not source.is_file():
            continue
        checked = True
        try:
            warnings += read_stack(repo, name, today).warnings
        except InputError as error:
            findings.append(Finding(f"{name}/stack", "stack", source.name, str(error), "project"))
    if checked:
        verdict = argocd_verdict(repo.support, repo.root, today)
        if verdict.refused:
            findings.append(
                Finding("argocd", "support-calendar", str(ARGOCD_CHART), verdict.refused, "project")
            )
        if verdict.warning:
            warnings.append(verdict.warning)
    return findings, warnings


# RFC 2606/6761: names that never resolve publicly, so ACM can never validate them.
RESERVED_DOMAINS = (
    "example",
    "test",
    "invalid",
    "localhost",
    "example.com",
    "example.net",
    "example.org",
)
# RFC 5737: documentation ranges, never anyone's office or VPN.
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.IPv4Network(block) for block in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
PLACEHOLDER_ZONE = re.compile(r"^Z0+$")


def deployment_blockers(settings: StackSettings) -> list[str]:
    """Why this stack cannot be deployed as it stands: placeholders the template ships with
    and a cluster nothing could reach. Each line says what to set. ``platform verify`` does
    not refuse these (the template renders and verifies offline); ``pulumi up`` does."""
    stack = f"Pulumi.{settings.environment}.yaml"
    found = []
    domain = settings.domain
    if any(domain == r or domain.endswith(f".{r}") for r in RESERVED_DOMAINS):
        found.append(
            f"{stack}: platform:domain {domain} is a reserved name ACM can never validate: "
            "set your environment's delegated domain (and endpoints.argocd.url to match)"
        )
    if PLACEHOLDER_ZONE.match(settings.dns_zone_id):
        found.append(
            f"{stack}: platform:dnsZoneId is a placeholder: set the ID of {domain}'s public "
            "hosted zone"
        )
    sso = settings.argocd.sso
    issuer = urlsplit(sso.issuer).hostname or "" if sso else ""
    if any(issuer == r or issuer.endswith(f".{r}") for r in RESERVED_DOMAINS):
        found.append(
            f"{stack}: platform:argocd.sso.issuer {sso.issuer if sso else ''} is a placeholder: "
            "set your identity provider's OIDC issuer and Argo CD's client ID there"
        )
    cluster = settings.cluster
    for field_name, cidrs in (
        ("publicAccessCidrs", cluster.public_access_cidrs),
        ("apiAccessCidrs", cluster.api_access_cidrs),
    ):
        for cidr in cidrs:
            network = ipaddress.IPv4Network(cidr)
            if any(network.overlaps(doc) for doc in DOCUMENTATION_NETWORKS):
                found.append(
                    f"{stack}: platform:cluster.{field_name} {cidr} is a documentation range: "
                    "set your office, VPN or CI runners' CIDR"
                )
    if not cluster.api_access_cidrs:
        found.append(
            f"{stack}: platform:cluster.apiAccessCidrs is empty, so no CI runner or VPN reaches "
            "the API: set the CIDRs of the runners labelled platform-"
            f"{settings.environment} and of the VPN"
        )
    return found
