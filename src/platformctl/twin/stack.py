"""The three stack settings the twin and PLAT011 read: domain, VPC CIDR, network policy.

They come from the stack settings model (``platformctl.stacks``), read as ``pulumi up`` reads
them. A fork without a stack file for an environment has no stack facts there, and the checks
that need them are not run (the README says so); a stack file that does not load is reported
by verify's stack findings, so the twin then has no facts either.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from platformctl.errors import InputError
from platformctl.model import Environment, Repo
from platformctl.stacks import read_stack, stack_file


@dataclass(frozen=True)
class StackFacts:
    domain: str
    vpc_cidr: ipaddress.IPv4Network
    network_policy: bool
    source: str  # the stack file, for messages

    def as_key(self) -> list[Any]:
        return [self.domain, str(self.vpc_cidr), self.network_policy]


def stack_facts(
    repo: Repo, environment: Environment, today: dt.date | None = None
) -> StackFacts | None:
    path = stack_file(repo.root, environment.name)
    if not path.is_file():
        return None
    try:
        settings = read_stack(repo, environment.name, today)
    except InputError:
        return None
    return StackFacts(
        domain=settings.domain,
        vpc_cidr=settings.network.cidr,
        network_policy=settings.cluster.network_policy,
        source=path.name,
    )
