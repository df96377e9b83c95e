"""The three stack settings the twin and PLAT011 read: domain, VPC CIDR, network policy.

A stopgap accessor until the repo model exposes the stack settings (the infra package is an
optional extra the CLI may not import): it reads ``Pulumi.<env>.yaml`` through the model's YAML
reader and nothing else of it. A fork without a stack file for an environment has no stack
facts there, and the checks that need them are not run (the README says so).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from platformctl.errors import InputError
from platformctl.model import Environment, Repo
from platformctl.yamlio import display_path, read_mapping

# Where the VPC CNI add-on's network policy agent is switched on (EKS: the add-on's
# ``enableNetworkPolicy`` configuration value). Missing means not enabled.
NETWORK_POLICY_KEY = ("platform:cluster", "networkPolicy")


@dataclass(frozen=True)
class StackFacts:
    domain: str
    vpc_cidr: ipaddress.IPv4Network
    network_policy: bool
    source: str  # the stack file, for messages

    def as_key(self) -> list[Any]:
        return [self.domain, str(self.vpc_cidr), self.network_policy]


def stack_facts(repo: Repo, environment: Environment) -> StackFacts | None:
    path = repo.root / f"Pulumi.{environment.name}.yaml"
    if not path.is_file():
        return None
    config = read_mapping(path).get("config") or {}
    try:
        section, key = NETWORK_POLICY_KEY
        return StackFacts(
            domain=str(config["platform:domain"]),
            vpc_cidr=ipaddress.IPv4Network(str((config["platform:network"] or {})["cidr"])),
            network_policy=bool((config.get(section) or {}).get(key, False)),
            source=path.name,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"{display_path(path)}: platform:domain or platform:network.cidr missing or "
            f"invalid ({error})",
            hint="set both (see the stack schema)",
        ) from None
