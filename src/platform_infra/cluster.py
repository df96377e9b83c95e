"""EKS from ``pulumi_aws`` primitives, hardened the way terraform-aws-eks v21 is by default:
private endpoint, KMS envelope encryption, every control-plane log, IRSA, access entries,
IMDSv2-only nodes on encrypted gp3 disks without SSH, and pinned core add-ons.

``pulumi_eks.Cluster`` is not used: it is a remote component, so its children are invisible to
``set_mocks`` tests and to per-resource policies, and its defaults are the weak ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from platform_infra.common import assume_role_policy, child, log_group, managed_policy, tags
from platform_infra.identity import OidcProvider, irsa_role
from platformctl.stacks import ClusterSettings, NodeGroupSettings

ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Every control-plane log EKS can send to CloudWatch (the pack's eks-control-plane-logging,
# checkov's CKV_AWS_37, holds its own list of the ones it requires).
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
# Add-ons that call AWS APIs get an IRSA role of their own instead of borrowing the node's.
ADDON_ROLES = {
    "vpc-cni": ("aws-node", managed_policy("AmazonEKS_CNI_Policy")),
    "aws-ebs-csi-driver": (
        "ebs-csi-controller-sa",
        managed_policy("service-role/AmazonEBSCSIDriverPolicy"),
    ),
}
# Started once nodes exist: their pods would sit Pending (and the add-on fail) before.
NEEDS_NODES = ("coredns", "aws-ebs-csi-driver")
# The node security group's rules, as terraform-aws-eks v21 recommends them: (description,
# protocol, from, to, source) where source is "cluster" (the control plane) or "self".
NODE_INGRESS = (
    ("Control plane to webhooks and the metrics API", "tcp", 443, 443, "cluster"),
    ("Control plane to kubelets", "tcp", 10250, 10250, "cluster"),
    ("Control plane to webhooks on 4443", "tcp", 4443, 4443, "cluster"),
    ("Control plane to webhooks on 6443", "tcp", 6443, 6443, "cluster"),
    ("Control plane to webhooks on 8443", "tcp", 8443, 8443, "cluster"),
    ("Control plane to webhooks on 9443", "tcp", 9443, 9443, "cluster"),
    ("CoreDNS between nodes (TCP)", "tcp", 53, 53, "self"),
    ("CoreDNS between nodes (UDP)", "udp", 53, 53, "self"),
    ("Pods and nodes on ephemeral ports", "tcp", 1025, 65535, "self"),
)


def autoscaler_tags(cluster_name: str) -> dict[str, str]:
    """The tags the cluster autoscaler discovers its groups by (charts/addons' autoDiscovery)
    and its policy limits scaling to. EKS also puts them on the groups' Auto Scaling groups;
    stated here, a group the program makes is this cluster's whatever EKS does."""
    return {
        "k8s.io/cluster-autoscaler/enabled": "true",
        f"k8s.io/cluster-autoscaler/{cluster_name}": "owned",
    }


@dataclass(frozen=True)
class ClusterArgs:
    settings: ClusterSettings
    environment: str
    region: str
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    kms_key_arn: pulumi.Input[str]
    # Production's cluster cannot be deleted by a stray `pulumi destroy`.
    deletion_protection: bool


def ami_type(instance_types: Sequence[str]) -> str:
    """AL2023 for the instances' architecture (Graviton families carry a 'g': m7g, c8g)."""
    family = instance_types[0].split(".")[0]
    graviton = "g" in family[2:] or family.startswith(("a1", "t4g"))
    return "AL2023_ARM_64_STANDARD" if graviton else "AL2023_x86_64_STANDARD"


class Cluster(pulumi.ComponentResource):
    cluster: aws.eks.Cluster
    oidc: OidcProvider
    node_groups: list[aws.eks.NodeGroup]
    node_security_group: aws.ec2.SecurityGroup

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:Cluster", name, None, opts)
        settings = args.settings
        if not settings.admin_role_arns:
            raise ValueError("at least one admin role: the creator gets no implicit access")
        env = args.environment

        role = aws.iam.Role(
            f"{name}-control-plane",
            assume_role_policy=assume_role_policy("eks.amazonaws.com"),
            tags=tags(env, f"{settings.name}-control-plane"),
            opts=child(self),
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-control-plane",
            role=role.name,
            policy_arn=managed_policy("AmazonEKSClusterPolicy"),
            opts=child(self),
        )
        logs = log_group(
            f"{name}-control-plane-logs",
            f"/aws/eks/{settings.name}/cluster",
            settings.log_retention_days,
            args.kms_key_arn,
            env,
            self,
        )
        public = bool(settings.public_access_cidrs)
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=settings.name,
            version=settings.kubernetes_version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=public,
                public_access_cidrs=list(settings.public_access_cidrs) if public else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=args.kms_key_arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(LOG_TYPES),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            # Standard support only: extended support costs six times as much per hour.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=args.deletion_protection,
            tags=tags(env, settings.name),
            opts=child(self, depends_on=[attachment, logs]),
        )
        issuer = self.cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)  # type: ignore[index]
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc",
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=tags(env, f"{settings.name}-oidc"),
            opts=child(self),
        )
        self.oidc = OidcProvider(arn=provider.arn, issuer_url=issuer)

        # What a client of the API (the deployer's Kubernetes provider) must wait for: the
        # networks allowed to 443, its access entry and its admin policy.
        self.api_access: list[pulumi.Resource] = [
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-api-{index}",
                security_group_id=self.cluster.vpc_config.cluster_security_group_id,
                cidr_ipv4=cidr,
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                description="Kubernetes API from CI runners and the VPN",
                tags=tags(env),
                opts=child(self),
            )
            for index, cidr in enumerate(settings.api_access_cidrs)
        ]
        for index, principal in enumerate(settings.admin_role_arns):
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{index}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                type="STANDARD",
                tags=tags(env),
                opts=child(self),
            )
            association = aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{index}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                policy_arn=ADMIN_POLICY,
                access_scope={"type": "cluster"},
                opts=child(self, depends_on=[entry]),
            )
            self.api_access += [entry, association]

        node_role, node_policies = self._node_role(name, env, settings.name)
        self.node_security_group = self._node_security_group(name, args)
        # The add-ons nodes need to join and network (vpc-cni replaces the self-managed
        # aws-node EKS installs) come first; those that run pods (coredns) wait for nodes.
        before_nodes = self._addons(
            name, args, [a for a in sorted(settings.addons) if a not in NEEDS_NODES], []
        )
        self.node_groups = [
            self._node_group(name, args, group, node_role, [*node_policies, *before_nodes])
            for group in settings.node_groups
        ]
        self._addons(
            name, args, [a for a in sorted(settings.addons) if a in NEEDS_NODES], self.node_groups
        )
        self.register_outputs(
            {
                "name": self.cluster.name,
                "endpoint": self.cluster.endpoint,
                "oidcIssuer": issuer,
            }
        )

    def _node_security_group(self, name: str, args: ClusterArgs) -> aws.ec2.SecurityGroup:
        """The nodes' own group instead of the cluster's (which lets anything in it reach
        anything): the control plane reaches kubelets and webhooks, nodes reach each other on
        DNS and ephemeral ports, and the API accepts the nodes on 443. Tagged as the cluster's
        so the Load Balancer Controller opens it to its load balancers' targets."""
        env, cluster_name = args.environment, args.settings.name
        cluster_group = self.cluster.vpc_config.cluster_security_group_id
        group = aws.ec2.SecurityGroup(
            f"{name}-nodes",
            vpc_id=args.vpc_id,
            description=f"Nodes of {cluster_name}",
            tags=tags(
                env, f"{cluster_name}-nodes", **{f"kubernetes.io/cluster/{cluster_name}": "owned"}
            ),
            opts=child(self),
        )
        for index, (description, protocol, low, high, source) in enumerate(NODE_INGRESS):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-nodes-in-{index}",
                security_group_id=group.id,
                referenced_security_group_id=cluster_group if source == "cluster" else group.id,
                ip_protocol=protocol,
                from_port=low,
                to_port=high,
                description=description,
                tags=tags(env),
                opts=child(self),
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-nodes-out",
            security_group_id=group.id,
            cidr_ipv4="0.0.0.0/0",
            ip_protocol="-1",
            description="Nodes to the VPC endpoints, NAT and the API",
            tags=tags(env),
            opts=child(self),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-api-from-nodes",
            security_group_id=cluster_group,
            referenced_security_group_id=group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="Kubernetes API from the nodes",
            tags=tags(env),
            opts=child(self),
        )
        return group

    def _attach(
        self, name: str, role: aws.iam.Role, policy_arns: Sequence[str]
    ) -> list[aws.iam.RolePolicyAttachment]:
        """The role's managed policies: whatever assumes the role waits for these, since a
        role without them is refused (a node cannot join, the CNI cannot assign addresses)."""
        return [
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy_arn.rsplit('/', 1)[-1]}",
                role=role.name,
                policy_arn=policy_arn,
                opts=child(self),
            )
            for policy_arn in policy_arns
        ]

    def _node_role(
        self, name: str, env: str, cluster_name: str
    ) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
        role = aws.iam.Role(
            f"{name}-nodes",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
            tags=tags(env, f"{cluster_name}-nodes"),
            opts=child(self),
        )
        # Pull-only ECR and SSM (instead of SSH); the CNI's rights go to its own IRSA role.
        policies = [
            managed_policy(policy)
            for policy in (
                "AmazonEKSWorkerNodePolicy",
                "AmazonEC2ContainerRegistryPullOnly",
                "AmazonSSMManagedInstanceCore",
            )
        ]
        return role, self._attach(f"{name}-nodes", role, policies)

    def _node_group(
        self,
        name: str,
        args: ClusterArgs,
        group: NodeGroupSettings,
        role: aws.iam.Role,
        ready: Sequence[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        env = args.environment
        group_name = f"{args.settings.name}-{group.name}"
        template = aws.ec2.LaunchTemplate(
            f"{name}-{group.name}",
            description=f"Nodes of {group_name}: IMDSv2 only, encrypted gp3 root volume",
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                # 1 keeps pods (one hop further) away from the node role's credentials.
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": group.disk_size_gib,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "kms_key_id": args.kms_key_arn,
                        "delete_on_termination": "true",
                    },
                }
            ],
            tag_specifications=[
                {"resource_type": kind, "tags": tags(env, group_name)}
                for kind in ("instance", "volume")
            ],
            # Only the node group: with its own groups the template keeps EKS from adding the
            # cluster's, which would admit anything else in that group.
            vpc_security_group_ids=[self.node_security_group.id],
            update_default_version=True,
            tags=tags(env, group_name),
            opts=child(self),
        )
        return aws.eks.NodeGroup(
            f"{name}-{group.name}",
            cluster_name=self.cluster.name,
            node_group_name=group_name,
            node_role_arn=role.arn,
            subnet_ids=args.subnet_ids,
            version=args.settings.kubernetes_version,
            ami_type=ami_type(group.instance_types),
            capacity_type=group.capacity_type,
            instance_types=list(group.instance_types),
            scaling_config={
                "min_size": group.min_size,
                "desired_size": group.desired_size,
                "max_size": group.max_size,
            },
            update_config={"max_unavailable_percentage": 33},
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            labels={"platform.acme.io/node-group": group.name},
            tags=tags(env, group_name, **autoscaler_tags(args.settings.name)),
            # The cluster autoscaler owns the desired size once the group exists.
            opts=child(self, ignore_changes=["scalingConfig.desiredSize"], depends_on=ready),
        )

    @staticmethod
    def _configuration(addon: str, settings: ClusterSettings) -> str | None:
        """The add-on's configuration: the VPC CNI enforces NetworkPolicies itself (its
        node agent) when the stack asks for it, the default."""
        if addon == "vpc-cni":
            return json.dumps({"enableNetworkPolicy": str(settings.network_policy).lower()})
        return None

    def _addons(
        self,
        name: str,
        args: ClusterArgs,
        addons: Sequence[str],
        after: Sequence[pulumi.Resource],
    ) -> list[aws.eks.Addon]:
        created = []
        for addon in addons:
            role_arn: pulumi.Output[str] | None = None
            ready = list(after)
            if addon in ADDON_ROLES:
                account, policy = ADDON_ROLES[addon]
                role = irsa_role(
                    f"{name}-{addon}",
                    f"{args.settings.name}-{addon}",
                    self.oidc,
                    "kube-system",
                    account,
                    tags(args.environment, f"{args.settings.name}-{addon}"),
                    self,
                )
                role_arn = role.arn
                ready += self._attach(f"{name}-{addon}", role, [policy])
            created.append(
                aws.eks.Addon(
                    f"{name}-{addon}",
                    cluster_name=self.cluster.name,
                    addon_name=addon,
                    addon_version=args.settings.addons[addon],
                    service_account_role_arn=role_arn,
                    configuration_values=self._configuration(addon, args.settings),
                    resolve_conflicts_on_create="OVERWRITE",
                    resolve_conflicts_on_update="PRESERVE",
                    tags=tags(args.environment, f"{args.settings.name}-{addon}"),
                    opts=child(self, depends_on=ready),
                )
            )
        return created


def kubeconfig(cluster: aws.eks.Cluster, region: str) -> pulumi.Output[str]:
    """A kubeconfig that gets its token from ``aws eks get-token`` (no static credentials)."""

    def build(values: list[str]) -> str:
        name, endpoint, certificate = values
        user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "aws",
                "args": [
                    "eks",
                    "get-token",
                    "--cluster-name",
                    name,
                    "--region",
                    region,
                    "--output",
                    "json",
                ],
            }
        }
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": name,
                        "cluster": {"server": endpoint, "certificate-authority-data": certificate},
                    }
                ],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "current-context": name,
                "users": [{"name": name, "user": user}],
            }
        )

    certificate = cluster.certificate_authority.apply(lambda authority: authority.data or "")
    return pulumi.Output.secret(
        pulumi.Output.all(cluster.name, cluster.endpoint, certificate).apply(build)
    )
