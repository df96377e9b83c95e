"""IAM documents: the policies upstream controllers publish (vendored verbatim in
``upstream/``, checked against ``upstream/lock.yaml``) and parliament's lint of every policy
and trust document the program writes.

Hand-condensing an upstream policy broke the Load Balancer Controller (two context keys in one
``StringEquals``, ingress only on tagged groups, six actions short): the program now takes the
published document as it is and only narrows what upstream documents as narrowable.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

UPSTREAM = Path(__file__).parent / "upstream"
# Parliament knows SAML and four web identity providers as federation sources, not the OIDC
# providers that IRSA trusts.
EKS_OIDC_PROVIDER = re.compile(
    r"^arn:aws:iam::[0-9]{12}:oidc-provider/oidc\.eks\.[a-z0-9-]+\.amazonaws\.com/id/[0-9A-F]+$"
)
# Findings that say a document is wrong (severity MEDIUM and up), plus the two LOW ones that
# name something AWS does not have. RESOURCE_STAR and the like only say "could be narrower".
BLOCKING_LOW = frozenset({"UNKNOWN_ACTION", "UNKNOWN_PREFIX"})
BLOCKING_SEVERITIES = frozenset({"CRITICAL", "HIGH", "MEDIUM"})


@dataclass(frozen=True)
class Vendored:
    name: str
    repository: str
    tag: str
    path: str
    sha256: str
    chart: Mapping[str, str] | None


@cache
def _lock() -> dict[str, Any]:
    lock: dict[str, Any] = yaml.safe_load((UPSTREAM / "lock.yaml").read_text())
    return lock


def vendored() -> dict[str, Vendored]:
    return {
        name: Vendored(
            name,
            entry["repository"],
            entry["tag"],
            entry["path"],
            entry["sha256"],
            entry.get("chart"),
        )
        for name, entry in _lock()["policies"].items()
    }


@cache
def _upstream_text(name: str) -> bytes:
    entry = vendored()[name]
    text = (UPSTREAM / f"{name}.json").read_bytes()
    if hashlib.sha256(text).hexdigest() != entry.sha256:
        raise ValueError(
            f"upstream/{name}.json is not {entry.repository} {entry.tag} {entry.path}: re-vendor "
            "it with scripts/vendor-iam-policies"
        )
    return text


def upstream_policy(name: str) -> dict[str, Any]:
    """The document as upstream publishes it (a fresh copy: callers may narrow it)."""
    document: dict[str, Any] = json.loads(_upstream_text(name))
    return copy.deepcopy(document)


def load_balancer_controller_policy() -> dict[str, Any]:
    return upstream_policy("aws-load-balancer-controller")


def external_dns_policy(zone_arn: str) -> dict[str, Any]:
    """Upstream's policy with record changes limited to the environment's own zone, which its
    tutorial suggests ("permit updates only to explicit Hosted Zone IDs")."""
    document = upstream_policy("external-dns")
    for statement in document["Statement"]:
        if statement["Resource"] == ["arn:aws:route53:::hostedzone/*"]:
            statement["Resource"] = [zone_arn]
    return document


def cluster_autoscaler_policy(cluster_name: str) -> dict[str, Any]:
    """Upstream's recommended policy with the scaling actions limited to this cluster's node
    groups, the restriction its README asks for: EKS tags each managed node group's Auto
    Scaling group ``k8s.io/cluster-autoscaler/<cluster>: owned``."""
    document = upstream_policy("cluster-autoscaler")
    for statement in document["Statement"]:
        if "autoscaling:SetDesiredCapacity" in statement["Action"]:
            statement["Condition"] = {
                "StringEquals": {
                    f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"
                }
            }
    return document


def _accepted(issue: str, detail: Any, trust: bool) -> bool:
    gaps = _lock()["parliament"]
    text = str(detail)
    if issue == "UNKNOWN_ACTION":
        return any(text == f"Unknown action {action}" for action in gaps["actions"])
    if issue == "UNKNOWN_CONDITION_FOR_ACTION":
        return any(
            text == f"Unknown condition {gap['key']} for action {gap['action']}"
            for gap in gaps["conditions"]
        )
    if issue == "UNKNOWN_FEDERATION_SOURCE":
        return bool(EKS_OIDC_PROVIDER.match(text))
    # A trust policy is attached to its role: it has a Principal and no Resource.
    return trust and issue == "MALFORMED" and "neither Resource nor NotResource" in text


def lint(document: str, *, trust: bool = False) -> list[str]:
    """parliament's findings that make ``document`` wrong, as ``ISSUE: detail`` lines."""
    with warnings.catch_warnings():
        # parliament imports pkg_resources, which warns on import.
        warnings.simplefilter("ignore")
        from parliament import analyze_policy_string, enhance_finding

    findings = []
    for finding in analyze_policy_string(document).findings:
        severity = enhance_finding(finding).severity
        if severity not in BLOCKING_SEVERITIES and finding.issue not in BLOCKING_LOW:
            continue
        if not _accepted(finding.issue, finding.detail, trust):
            findings.append(f"{finding.issue}: {finding.detail}")
    return findings
