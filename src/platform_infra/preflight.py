"""What the account must have before anything is created, read through the provider's own
data sources (so ``pulumi preview`` sees it too), with one line naming the fix.

* Elastic IPs: one per NAT gateway, and the default quota is 5 per region; three stacks in one
  region (1 + 3 + 3 NAT gateways) need 7. The check counts the addresses this stack already
  holds as its own, so a second ``pulumi up`` does not trip over them.
* The environment's public hosted zone (``platform:dnsZoneId``): it must exist and carry
  ``platform:domain``. ACM validates the certificate there and external-dns writes the hosts
  into it; the zone's delegation from the parent domain is the account owner's step.
* The Auto Scaling service-linked role: the KMS key policy names it (Auto Scaling opens the
  nodes' encrypted volumes), and KMS refuses a policy naming a principal that does not exist.
  It exists only after an account's first Auto Scaling group, so a stack creates it when it
  is missing, tags it as its own, keeps it on destroy (the account's other stacks use it) and
  adopts it again when rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from platform_infra.common import tags
from platformctl.stacks import StackSettings, nat_gateway_count

AUTO_SCALING = "autoscaling.amazonaws.com"
AUTO_SCALING_ROLE = "AWSServiceRoleForAutoScaling"
# Service Quotas: EC2, "EC2-VPC Elastic IPs".
ELASTIC_IP_QUOTA = ("ec2", "L-0263D0A3")
# Tag on a service-linked role this project created, naming the stack that owns it.
OWNER_TAG = "platform-stack"


@dataclass(frozen=True)
class Account:
    """What the preflight read of the account and region."""

    elastic_ip_quota: int
    elastic_ips_of_others: int
    auto_scaling_role_owner: str | None  # None: missing; "": exists, not ours; else the stack
    auto_scaling_role_arn: str | None
    stack: str
    # The configured hosted zone as Route 53 has it: (name, private), or None when missing.
    zone: tuple[str, bool] | None
    # ECR repositories that exist (kept by an earlier stack on destroy): adopted, not created.
    repositories: frozenset[str]

    @property
    def creates_auto_scaling_role(self) -> bool:
        return self.auto_scaling_role_owner in (None, self.stack)


def _own(environment: str) -> dict[str, str]:
    own = tags(environment)
    return {key: own[key] for key in ("environment", "managed-by")}


def read_account(region: str, environment: str, stack: str, zone_id: str) -> Account:
    service_code, quota_code = ELASTIC_IP_QUOTA
    quota = aws.servicequotas.get_service_quota(
        service_code=service_code, quota_code=quota_code, region=region
    )
    every = aws.ec2.get_eips(region=region)
    ours = aws.ec2.get_eips(region=region, tags=_own(environment))
    service_roles = aws.iam.get_roles(path_prefix=f"/aws-service-role/{AUTO_SCALING}/")
    owner: str | None = None
    arn: str | None = None
    if AUTO_SCALING_ROLE in service_roles.names:
        role = aws.iam.get_role(name=AUTO_SCALING_ROLE)
        owner, arn = (role.tags or {}).get(OWNER_TAG, ""), role.arn
    zone: tuple[str, bool] | None = None
    if zone_id in aws.route53.get_zones().ids:
        found = aws.route53.get_zone(zone_id=zone_id)
        zone = (found.name.rstrip("."), bool(found.private_zone))
    return Account(
        repositories=frozenset(aws.ecr.get_repositories(region=region).names),
        zone=zone,
        elastic_ip_quota=int(quota.value),
        elastic_ips_of_others=len(set(every.allocation_ids) - set(ours.allocation_ids)),
        auto_scaling_role_owner=owner,
        auto_scaling_role_arn=arn,
        stack=stack,
    )


def problems(account: Account, settings: StackSettings) -> list[str]:
    """Each missing prerequisite, as the line that says how to fix it."""
    found = []
    region, domain, zone_id = settings.region, settings.domain, settings.dns_zone_id
    nat_gateways = nat_gateway_count(settings.network)
    if account.zone is None:
        found.append(
            f"hosted zone {zone_id} does not exist in this account: create the public zone "
            f"{domain}, delegate it from its parent, and set platform:dnsZoneId to its ID"
        )
    elif account.zone != (domain, False):
        name, private = account.zone
        found.append(
            f"hosted zone {zone_id} is the {'private' if private else 'public'} zone {name}, "
            f"not the public zone {domain}: set platform:dnsZoneId to {domain}'s public zone"
        )
    free = account.elastic_ip_quota - account.elastic_ips_of_others
    if nat_gateways > free:
        found.append(
            f"{region} has {free} of {account.elastic_ip_quota} Elastic IPs free and this stack "
            f"needs {nat_gateways} (one per NAT gateway): request more under Service Quotas, "
            f"EC2 quota {ELASTIC_IP_QUOTA[1]}"
        )
    return found


def check(account: Account, settings: StackSettings) -> None:
    """Stops the program before it declares anything (``RunError`` prints one line)."""
    found = problems(account, settings)
    if found:
        raise pulumi.RunError("preflight: " + "; ".join(found))


def auto_scaling_role(account: Account, environment: str) -> list[pulumi.Resource]:
    """The service-linked role when this stack owns it (created if missing, adopted if it made
    it before): what the key waits for."""
    if not account.creates_auto_scaling_role:
        return []
    role = aws.iam.ServiceLinkedRole(
        "auto-scaling-service-role",
        aws_service_name=AUTO_SCALING,
        tags={**tags(environment), OWNER_TAG: account.stack},
        opts=pulumi.ResourceOptions(retain_on_delete=True, import_=account.auto_scaling_role_arn),
    )
    return [role]
