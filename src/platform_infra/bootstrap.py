"""The GitOps Bridge: Pulumi installs Argo CD and hands it this environment's root objects and
the cluster's metadata; from then on Argo CD owns every workload.

Ownership is split so nothing is owned by both: Pulumi owns the Argo CD release, the cluster
secret, the AppProject and the ApplicationSet (rendered from ``charts/gitops`` by the same code
as ``platform render``); Argo CD owns the Applications the ApplicationSet generates and
everything they deploy. Argo CD does not manage itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from platformctl.bridge import APPLICATION_HEALTH, APPLICATION_HEALTH_KEY, role_annotation
from platformctl.stacks import ArgoCDSettings, StackSettings
from platformctl.vendor import Lock

IN_CLUSTER = "https://kubernetes.default.svc"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi"}


@dataclass(frozen=True)
class GitOpsBootstrapArgs:
    cluster_name: str
    environment: str
    argocd: ArgoCDSettings
    kubeconfig: pulumi.Input[str]
    # The deployer's way in: 443 from the runners, its access entry and admin policy (the
    # API times out, then answers 401, before they exist).
    cluster_access: Sequence[pulumi.Resource]
    # The AppProject and ApplicationSet of the environment, as ``charts/gitops`` renders them.
    gitops_documents: Sequence[Mapping[str, Any]]
    # GitOps Bridge metadata: annotations ApplicationSets read with a cluster generator.
    cluster_annotations: pulumi.Input[Mapping[str, pulumi.Input[str]]]


def argocd_values(settings: ArgoCDSettings) -> dict[str, Any]:
    """Chart values: no local exec or Dex; SSO through the stack's OIDC issuer with the local
    admin off outside the first stage; HA replicas and Redis HA when asked; the UI and API on
    an internal ALB at ``argocd.<domain>`` (the certificate found by host, the record written
    by external-dns), which the gates and ``--wait`` call from inside the network."""
    replicas = 2 if settings.high_availability else 1
    cm: dict[str, Any] = {
        "exec.enabled": False,
        "admin.enabled": settings.local_admin,
        "timeout.reconciliation": "180s",
        # An Application is healthy when its resources are: the add-ons' sync waves
        # then wait for each wave's add-ons (Argo CD no longer assesses this itself).
        APPLICATION_HEALTH_KEY: APPLICATION_HEALTH,
    }
    rbac: dict[str, Any] = {"policy.default": "role:readonly", "scopes": "[groups]"}
    if settings.sso is not None:
        cm["oidc.config"] = json.dumps(
            {
                "name": "SSO",
                "issuer": settings.sso.issuer,
                "clientID": settings.sso.client_id,
                "enablePKCEAuthentication": True,
                "requestedScopes": ["openid", "profile", "email", "groups"],
            }
        )
        rbac["policy.csv"] = "".join(
            f"g, {group}, role:admin\n" for group in settings.sso.admin_groups
        )
    return {
        "global": {"domain": settings.hostname},
        # Uninstalling the chart must not delete the CRDs, and with them every Application.
        "crds": {"keep": True},
        "configs": {"cm": cm, "rbac": rbac, "params": {"server.insecure": False}},
        "dex": {"enabled": False},
        "redis-ha": {"enabled": settings.high_availability},
        "server": {
            "replicas": replicas,
            "ingress": {
                "enabled": True,
                "controller": "aws",
                "ingressClassName": "alb",
                "hostname": settings.hostname,
                "annotations": {
                    "alb.ingress.kubernetes.io/scheme": "internal",
                    "alb.ingress.kubernetes.io/target-type": "ip",
                    "alb.ingress.kubernetes.io/backend-protocol": "HTTPS",
                    "alb.ingress.kubernetes.io/listen-ports": '[{"HTTPS": 443}]',
                    "alb.ingress.kubernetes.io/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                    "external-dns.alpha.kubernetes.io/hostname": settings.hostname,
                },
                "aws": {"serviceType": "ClusterIP", "backendProtocolVersion": "GRPC"},
            },
        },
        "repoServer": {"replicas": replicas},
        "applicationSet": {"replicas": replicas},
    }


def vendored_argocd_chart(version: str, root: Path) -> str:
    """charts/vendor/argo-cd of the repository at ``root`` (the one the stack settings were
    read from, not whichever holds the working directory), relative to the program's
    directory so the state does not depend on where the checkout is; refused unless it is the
    version the stack pins."""
    lock = Lock.load(root)
    vendored = lock.get("argo-cd").version
    if vendored != version:
        raise ValueError(
            f"platform:argocd chartVersion is {version} but charts/vendor/argo-cd is {vendored}: "
            f"vendor it (platform vendor argo-cd --version {version}) or pin {vendored}"
        )
    return os.path.relpath(lock.chart_dir("argo-cd"), Path.cwd())


def _resource_name(document: Mapping[str, Any]) -> str:
    return f"{str(document['kind']).lower()}-{document['metadata']['name']}"


def _metadata(document: Mapping[str, Any]) -> dict[str, Any]:
    metadata = dict(document.get("metadata", {}))
    metadata["labels"] = {**metadata.get("labels", {}), **MANAGED_BY}
    return metadata


class GitOpsBootstrap(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    # For what else runs in the cluster at deploy time (the database users' Job).
    provider: k8s.Provider
    namespace: k8s.core.v1.Namespace

    def __init__(
        self, name: str, args: GitOpsBootstrapArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:GitOpsBootstrap", name, None, opts)
        kinds = {str(document.get("kind")) for document in args.gitops_documents}
        if kinds != {"AppProject", "ApplicationSet"}:
            raise ValueError(
                f"charts/gitops must render AppProjects and ApplicationSets, not {sorted(kinds)}"
            )
        provider = self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=args.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.cluster_access)),
        )
        within = pulumi.ResourceOptions(parent=self, provider=provider)

        namespace = self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.argocd.namespace,
                "labels": {
                    **MANAGED_BY,
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=within,
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-argocd",
            name="argocd",
            chart=vendored_argocd_chart(args.argocd.chart_version, args.argocd.root),
            namespace=namespace.metadata.name,
            values=argocd_values(args.argocd),
            atomic=True,
            cleanup_on_fail=True,
            timeout=900,
            opts=pulumi.ResourceOptions.merge(
                within, pulumi.ResourceOptions(depends_on=[namespace])
            ),
        )
        # Everything below needs the CRDs and the controllers the chart installs.
        after_argocd = pulumi.ResourceOptions.merge(
            within, pulumi.ResourceOptions(depends_on=[self.release])
        )
        k8s.core.v1.Secret(
            f"{name}-cluster",
            metadata={
                "name": args.cluster_name,
                "namespace": args.argocd.namespace,
                "labels": {
                    **MANAGED_BY,
                    "argocd.argoproj.io/secret-type": "cluster",
                    "environment": args.environment,
                },
                "annotations": args.cluster_annotations,
            },
            string_data={
                "name": args.cluster_name,
                "server": IN_CLUSTER,
                "config": json.dumps({"tlsClientConfig": {"insecure": False}}),
            },
            opts=after_argocd,
        )
        for document in sorted(args.gitops_documents, key=_resource_name):
            k8s.apiextensions.CustomResource(
                f"{name}-{_resource_name(document)}",
                api_version=document["apiVersion"],
                kind=document["kind"],
                metadata=_metadata(document),
                spec=document["spec"],
                opts=after_argocd,
            )
        self.register_outputs({"argocdHostname": args.argocd.hostname})


def bridge_annotations(
    settings: StackSettings,
    account_id: str,
    vpc_id: pulumi.Input[str],
    hosted_zone_id: pulumi.Input[str],
    role_arns: Mapping[str, pulumi.Input[str]],
) -> pulumi.Output[dict[str, str]]:
    """The cluster secret's annotations (``platformctl.bridge`` names them): the GitOps Bridge's
    own, the DNS zone, and one ``<owner>_iam_role_arn`` per service and add-on role."""
    fixed = {
        "aws_account_id": account_id,
        "aws_region": settings.region,
        "aws_cluster_name": settings.cluster.name,
        "environment": settings.environment,
        "workload_repo_url": settings.repository_url,
        "workload_repo_revision": settings.revision,
        "platform_domain": settings.domain,
    }
    roles = {role_annotation(owner): arn for owner, arn in role_arns.items()}
    return pulumi.Output.all(vpc_id, hosted_zone_id, roles).apply(
        lambda values: {
            **fixed,
            "aws_vpc_id": values[0],
            "platform_hosted_zone_id": values[1],
            **values[2],
        }
    )
