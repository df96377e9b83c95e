"""IRSA: an IAM role per Kubernetes service account, trusted only through the cluster's OIDC
provider and only for that one namespace/name, with a policy that names its own resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from platform_infra.common import child, policy_document, recovery_window, tags
from platformctl.bridge import service_role_name


@dataclass(frozen=True)
class OidcProvider:
    """What a trust policy needs of the cluster's identity provider."""

    arn: pulumi.Input[str]
    issuer_url: pulumi.Input[str]


def irsa_trust_policy(provider_arn: str, issuer_url: str, namespace: str, account: str) -> str:
    issuer = issuer_url.removeprefix("https://")
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
                        f"{issuer}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ]
    )


def irsa_role(
    name: str,
    role_name: str,
    provider: OidcProvider,
    namespace: str,
    service_account: str,
    resource_tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> aws.iam.Role:
    return aws.iam.Role(
        name,
        name=role_name,
        assume_role_policy=pulumi.Output.all(provider.arn, provider.issuer_url).apply(
            lambda values: irsa_trust_policy(values[0], values[1], namespace, service_account)
        ),
        max_session_duration=3600,
        tags=dict(resource_tags),
        opts=child(parent),
    )


@dataclass(frozen=True)
class WorkloadIdentityArgs:
    cluster_name: str
    environment: str
    region: str
    account_id: str
    namespace: str
    services: Sequence[str]
    provider: OidcProvider
    kms_key_arn: pulumi.Input[str]
    # Deleted secrets stay recoverable for 30 days (instead of being deleted at once).
    deletion_protection: bool
    # ``rds-db:connect`` is granted per database user, named after the service.
    database_resource_id: pulumi.Input[str]


def database_user(service: str) -> str:
    return service.replace("-", "_")


def role_name(cluster_name: str, service: str) -> str:
    """``<cluster>-<service>``: the name each service's values file refers to (one definition,
    in the bridge, that ``platform new service`` writes too)."""
    return service_role_name(cluster_name, service)


class WorkloadIdentity(pulumi.ComponentResource):
    """Per service: a Secrets Manager secret for its own settings and an IRSA role that can read
    that secret (and nothing else's) and log in to the database as its own user."""

    role_arns: dict[str, pulumi.Output[str]]
    secret_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:WorkloadIdentity", name, None, opts)
        if not args.services:
            raise ValueError("no services: the repo model lists none")
        self.role_arns = {}
        self.secret_arns = {}
        for service in args.services:
            resource_tags = tags(
                args.environment, role_name(args.cluster_name, service), service=service
            )
            secret = aws.secretsmanager.Secret(
                f"{name}-{service}",
                name=f"{args.cluster_name}/{service}",
                description=f"Settings of {service} in {args.environment}",
                kms_key_id=args.kms_key_arn,
                recovery_window_in_days=recovery_window(args.deletion_protection),
                tags=resource_tags,
                opts=child(self),
            )
            role = irsa_role(
                f"{name}-{service}",
                role_name(args.cluster_name, service),
                args.provider,
                args.namespace,
                service,
                resource_tags,
                self,
            )
            aws.iam.RolePolicy(
                f"{name}-{service}",
                role=role.id,
                policy=self._policy(args, service, secret.arn),
                opts=child(self),
            )
            self.role_arns[service] = role.arn
            self.secret_arns[service] = secret.arn
        self.register_outputs({"roleArns": self.role_arns})

    @staticmethod
    def _policy(
        args: WorkloadIdentityArgs, service: str, secret_arn: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        def document(values: list[str]) -> str:
            secret, key, db_resource_id = values
            return policy_document(
                [
                    {
                        "Sid": "ReadOwnSecret",
                        "Effect": "Allow",
                        "Action": [
                            "secretsmanager:GetSecretValue",
                            "secretsmanager:DescribeSecret",
                        ],
                        "Resource": secret,
                    },
                    {
                        "Sid": "DecryptThroughSecretsManager",
                        "Effect": "Allow",
                        "Action": "kms:Decrypt",
                        "Resource": key,
                        "Condition": {
                            "StringEquals": {
                                "kms:ViaService": f"secretsmanager.{args.region}.amazonaws.com"
                            }
                        },
                    },
                    {
                        "Sid": "ConnectAsOwnDatabaseUser",
                        "Effect": "Allow",
                        "Action": "rds-db:connect",
                        "Resource": (
                            f"arn:aws:rds-db:{args.region}:{args.account_id}:dbuser:"
                            f"{db_resource_id}/{database_user(service)}"
                        ),
                    },
                ]
            )

        return pulumi.Output.all(secret_arn, args.kms_key_arn, args.database_resource_id).apply(
            document
        )
