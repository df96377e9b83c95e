"""`pulumi up -s <stack>`: the stack's settings and the repo model, wired into the components.

Everything that decides anything lives in ``platform_infra``; this file only connects
outputs to inputs, so the tests run it unchanged under Pulumi's mocks.
"""

from pathlib import Path

import pulumi
import pulumi_aws as aws

from platform_infra.addons import AddonIdentity, AddonIdentityArgs
from platform_infra.bootstrap import GitOpsBootstrap, GitOpsBootstrapArgs, bridge_annotations
from platform_infra.cluster import Cluster, ClusterArgs, kubeconfig
from platform_infra.database import Database, DatabaseArgs
from platform_infra.dbusers import DatabaseUsers, DatabaseUsersArgs
from platform_infra.encryption import Encryption, EncryptionArgs
from platform_infra.engine import engine_settings
from platform_infra.identity import WorkloadIdentity, WorkloadIdentityArgs, database_user
from platform_infra.network import Network, NetworkArgs
from platform_infra.preflight import auto_scaling_role, check, read_account
from platform_infra.registry import Registry, RegistryArgs
from platformctl.model import find_root, load_repo
from platformctl.render import Renderer

repo = load_repo(find_root(Path(__file__).resolve().parent))
settings = engine_settings(repo, pulumi.get_stack())
environment = repo.environment(settings.environment)
account_id = aws.get_caller_identity().account_id
name = settings.cluster.name
account = read_account(
    settings.region, settings.environment, pulumi.get_stack(), settings.dns_zone_id
)
check(account, settings)

encryption = Encryption(
    "encryption",
    EncryptionArgs(
        name=name,
        environment=settings.environment,
        account_id=account_id,
        region=settings.region,
        deletion_window_days=30 if settings.deletion_protection else 7,
        service_roles=auto_scaling_role(account, settings.environment),
    ),
)
network = Network(
    "network",
    NetworkArgs(
        name=name,
        environment=settings.environment,
        region=settings.region,
        account_id=account_id,
        cidr=settings.network.cidr,
        availability_zones=settings.network.availability_zones,
        nat_gateways=settings.network.nat_gateways,
        flow_log_retention_days=settings.network.flow_log_retention_days,
        kms_key_arn=encryption.key.arn,
    ),
)
cluster = Cluster(
    "cluster",
    ClusterArgs(
        settings=settings.cluster,
        environment=settings.environment,
        region=settings.region,
        vpc_id=network.vpc.id,
        subnet_ids=network.private_subnet_ids,
        kms_key_arn=encryption.key.arn,
        deletion_protection=settings.deletion_protection,
    ),
)
database = Database(
    "database",
    DatabaseArgs(
        name=name,
        environment=settings.environment,
        settings=settings.database,
        vpc_id=network.vpc.id,
        subnet_ids=network.private_subnet_ids,
        # Pods share their node's network interfaces, so the nodes' group is the client.
        client_security_group_id=cluster.node_security_group.id,
        kms_key_arn=encryption.key.arn,
        log_retention_days=settings.cluster.log_retention_days,
    ),
)
cluster_kubeconfig = kubeconfig(cluster.cluster, settings.region)
identity = WorkloadIdentity(
    "identity",
    WorkloadIdentityArgs(
        cluster_name=name,
        environment=settings.environment,
        region=settings.region,
        account_id=account_id,
        namespace=environment.namespace,
        services=settings.services,
        provider=cluster.oidc,
        kms_key_arn=encryption.key.arn,
        deletion_protection=settings.deletion_protection,
        database_resource_id=database.instance.resource_id,
    ),
)
addon_identity = AddonIdentity(
    "addons",
    AddonIdentityArgs(
        cluster_name=name,
        environment=settings.environment,
        region=settings.region,
        account_id=account_id,
        domain=settings.domain,
        zone_id=settings.dns_zone_id,
        provider=cluster.oidc,
        kms_key_arn=encryption.key.arn,
        log_retention_days=settings.cluster.log_retention_days,
        deletion_protection=settings.deletion_protection,
    ),
)
if settings.registry.owned:
    registry = Registry(
        "registry",
        RegistryArgs(
            settings=settings.registry,
            environment=settings.environment,
            account_id=account_id,
            existing=account.repositories,
        ),
    )
    pulumi.export("repositoryUrls", registry.repository_urls)

gitops = GitOpsBootstrap(
    "gitops",
    GitOpsBootstrapArgs(
        cluster_name=name,
        environment=settings.environment,
        argocd=settings.argocd,
        kubeconfig=cluster_kubeconfig,
        cluster_access=cluster.api_access,
        gitops_documents=Renderer(repo).gitops(environment).documents,
        cluster_annotations=bridge_annotations(
            settings,
            account_id,
            network.vpc.id,
            addon_identity.hosted_zone_id,
            {**identity.role_arns, **addon_identity.role_arns},
        ),
    ),
    opts=pulumi.ResourceOptions(depends_on=[cluster]),
)

DatabaseUsers(
    "database-users",
    DatabaseUsersArgs(
        cluster_name=name,
        environment=settings.environment,
        region=settings.region,
        users=[database_user(service) for service in settings.services],
        address=database.instance.address,
        master_secret_arn=database.master_secret_arn,
        kms_key_arn=encryption.key.arn,
        provider=cluster.oidc,
        namespace=settings.argocd.namespace,
        kubernetes=gitops.provider,
        ready=[gitops.namespace],
    ),
)

pulumi.export("clusterName", cluster.cluster.name)
pulumi.export("clusterEndpoint", cluster.cluster.endpoint)
pulumi.export("kubeconfig", cluster_kubeconfig)
pulumi.export("oidcIssuer", cluster.oidc.issuer_url)
pulumi.export("vpcId", network.vpc.id)
pulumi.export("databaseAddress", database.instance.address)
pulumi.export("serviceRoleArns", identity.role_arns)
pulumi.export("addonRoleArns", addon_identity.role_arns)
pulumi.export("certificateArn", addon_identity.certificate_arn)
pulumi.export("argocdUrl", f"https://{settings.argocd.hostname}")
