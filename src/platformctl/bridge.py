"""The GitOps Bridge contract: what the infra program writes on the Argo CD cluster secret, and
what the add-ons read from it.

Facts only the infrastructure knows (account, VPC, hosted zone, the add-ons' IAM roles) reach
the cluster as annotations of the cluster secret; the add-ons' ApplicationSet reads them with
Argo CD's cluster generator. Both sides use the names defined here, and ``platform verify``
refuses an add-on value that reads an annotation the infra program does not write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from platformctl.model import Environment, Repo

# The cluster autoscaler: node groups leave their desired size to it.
AUTOSCALER = "cluster-autoscaler"
AUTOSCALER_ROLE = ("kube-system", "cluster-autoscaler")

# Add-ons that call AWS, each with an IRSA role of its own made by the infra program, trusted
# only by this (namespace, service account); charts/addons runs them exactly there.
ADDON_ROLES: Mapping[str, tuple[str, str]] = {
    "aws-load-balancer-controller": ("kube-system", "aws-load-balancer-controller"),
    AUTOSCALER: AUTOSCALER_ROLE,
    "external-dns": ("external-dns", "external-dns"),
    "fluent-bit": ("logging", "fluent-bit"),
    "grafana": ("monitoring", "kube-prometheus-stack-grafana"),
    "opentelemetry-collector": ("observability", "opentelemetry-collector"),
}

PLACEHOLDER_ACCOUNT = "000000000000"
# The Argo CD setting the bootstrap writes that the sync order depends on: an Application is
# Healthy when its resources are, so a wave of Applications (app of apps) waits for them. Argo
# CD has no such assessment of its own since 1.8; the sync twin models the waves with it.
APPLICATION_HEALTH_KEY = "resource.customizations.health.argoproj.io_Application"
APPLICATION_HEALTH = """hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
return hs
"""

_REFERENCE = re.compile(r"\{\{\s*\.metadata\.annotations\.([A-Za-z0-9_]+)\s*\}\}")
_ANY_TEMPLATE = re.compile(r"\{\{.*?\}\}")


def service_role_name(cluster_name: str, service: str) -> str:
    """``<cluster>-<service>``: the IRSA role the infra program makes for a service (and for an
    add-on), and the one its values file names."""
    return f"{cluster_name}-{service}"


def service_role_arn(account_id: str, cluster_name: str, service: str) -> str:
    return f"arn:aws:iam::{account_id}:role/{service_role_name(cluster_name, service)}"


def role_annotation(owner: str) -> str:
    """``<owner>_iam_role_arn``, as the GitOps Bridge names role annotations."""
    return f"{owner.replace('-', '_')}_iam_role_arn"


def reference(annotation: str) -> str:
    """A value the cluster generator fills in from the cluster secret."""
    return f"{{{{ .metadata.annotations.{annotation} }}}}"


def cluster_log_group(cluster_name: str) -> str:
    """Where Fluent Bit ships the containers' logs (created, encrypted, by the infra program)."""
    return f"/platform/{cluster_name}/containers"


def addon_secret_name(cluster_name: str, owner: str) -> str:
    """The Secrets Manager secret of an add-on (e.g. Grafana's admin login)."""
    return f"{cluster_name}/{owner}"


def addon_cluster_values() -> dict[str, Any]:
    """The add-ons chart's ``cluster`` values, each a reference to a cluster-secret annotation:
    the add-ons' ApplicationSet passes them as ``helm.valuesObject``."""
    return {
        "cluster": {
            "environment": reference("environment"),
            "name": reference("aws_cluster_name"),
            "region": reference("aws_region"),
            "accountId": reference("aws_account_id"),
            "vpcId": reference("aws_vpc_id"),
            "domain": reference("platform_domain"),
            "hostedZoneId": reference("platform_hosted_zone_id"),
            "roles": {owner: reference(role_annotation(owner)) for owner in ADDON_ROLES},
        }
    }


def _domain(environment: Environment) -> str:
    """The environment's DNS domain: Argo CD answers at ``argocd.<domain>`` (the infra program
    refuses a stack whose platform:domain disagrees)."""
    host = urlsplit(environment.argocd.url).hostname if environment.argocd else None
    if host and host.startswith("argocd."):
        return host.removeprefix("argocd.")
    return f"{environment.name}.platform.example"


def placeholder_annotations(repo: Repo, environment: Environment) -> dict[str, str]:
    """The cluster secret as the infra program would write it, with the facts that only AWS
    knows replaced by placeholders: enough to render and check everything offline."""
    roles = {
        role_annotation(owner): service_role_arn(
            PLACEHOLDER_ACCOUNT, environment.cluster_name, owner
        )
        for owner in (*ADDON_ROLES, *repo.services)
    }
    return {
        "aws_account_id": PLACEHOLDER_ACCOUNT,
        "aws_region": environment.region,
        "aws_cluster_name": environment.cluster_name,
        "aws_vpc_id": "vpc-00000000000000000",
        "environment": environment.name,
        "workload_repo_url": repo.repository_url,
        "workload_repo_revision": repo.revision,
        "platform_domain": _domain(environment),
        "platform_hosted_zone_id": "Z0000000000000000000",
        **roles,
    }


class UnknownAnnotation(ValueError):
    """A value reads an annotation that the cluster secret does not carry."""


def fill(value: object, annotations: Mapping[str, str]) -> object:
    """``value`` with every cluster-generator reference replaced, as Argo CD would; any other
    template expression is refused, because only plain references are checked here."""
    if isinstance(value, dict):
        return {key: fill(item, annotations) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, annotations) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match[1]
        if name not in annotations:
            raise UnknownAnnotation(name)
        return annotations[name]

    filled = _REFERENCE.sub(substitute, value)
    leftover = _ANY_TEMPLATE.search(filled)
    if leftover:
        raise UnknownAnnotation(leftover[0])
    return filled
