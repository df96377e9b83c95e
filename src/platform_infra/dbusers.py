"""The services' database users: each IRSA role may ``rds-db:connect`` as its own user, and
that user must exist with the ``rds_iam`` role or every login fails.

Nothing outside the VPC reaches the database, so a Kubernetes Job inside the cluster creates
them, as the RDS-managed master user (its password read from the secret RDS keeps in Secrets
Manager, through an IRSA role allowed that one secret). Pulumi runs the Job in the same
update that creates the services' roles, and waits for it: a user and its grant exist exactly
when its role does. The SQL is idempotent; a changed list of users replaces the Job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from platform_infra.common import child, policy_document, tags
from platform_infra.identity import OidcProvider, irsa_role

SERVICE_ACCOUNT = "db-users"
# Pin these by digest in a fork (`crane digest`): the Job runs as the database's master user.
AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.27.50"
PSQL_IMAGE = "public.ecr.aws/docker/library/postgres:17-alpine"
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def grant_sql(users: Sequence[str]) -> str:
    """Create each login role if missing and grant it ``rds_iam`` (IAM authentication only:
    such a role cannot log in with a password). Safe to run again."""
    statements = []
    for user in sorted(set(users)):
        if not IDENTIFIER.match(user):
            raise ValueError(f"'{user}' is not a PostgreSQL identifier this Job creates")
        statements.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{user}') THEN CREATE ROLE \"{user}\" LOGIN; END IF; END $$;\n"
            f'GRANT rds_iam TO "{user}";\n'
        )
    return "".join(statements)


def _container(name: str, image: str, script: str, **env: pulumi.Input[str]) -> dict[str, Any]:
    """A container of the Job: restricted, sharing the in-memory /work with the other."""
    return {
        "name": name,
        "image": image,
        "command": ["sh", "-ec", script],
        "env": [{"name": key, "value": value} for key, value in env.items()],
        "security_context": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volume_mounts": [{"name": "work", "mount_path": "/work"}],
    }


@dataclass(frozen=True)
class DatabaseUsersArgs:
    cluster_name: str
    environment: str
    region: str
    users: Sequence[str]
    address: pulumi.Input[str]
    master_secret_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    provider: OidcProvider
    # Where the Job runs (Argo CD's namespace, which the bootstrap creates), and the
    # Kubernetes provider that can reach the cluster.
    namespace: str
    kubernetes: k8s.Provider
    ready: Sequence[pulumi.Resource]


class DatabaseUsers(pulumi.ComponentResource):
    job: k8s.batch.v1.Job

    def __init__(
        self, name: str, args: DatabaseUsersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:DatabaseUsers", name, None, opts)
        sql = grant_sql(args.users)
        namespace = args.namespace
        role = irsa_role(
            f"{name}-role",
            f"{args.cluster_name}-{SERVICE_ACCOUNT}",
            args.provider,
            namespace,
            SERVICE_ACCOUNT,
            tags(args.environment, f"{args.cluster_name}-{SERVICE_ACCOUNT}"),
            self,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-role",
            role=role.id,
            policy=pulumi.Output.all(args.master_secret_arn, args.kms_key_arn).apply(
                lambda values: policy_document(
                    [
                        {
                            "Sid": "ReadTheMasterSecret",
                            "Effect": "Allow",
                            "Action": "secretsmanager:GetSecretValue",
                            "Resource": values[0],
                        },
                        {
                            "Sid": "DecryptThroughSecretsManager",
                            "Effect": "Allow",
                            "Action": "kms:Decrypt",
                            "Resource": values[1],
                            "Condition": {
                                "StringEquals": {
                                    "kms:ViaService": f"secretsmanager.{args.region}.amazonaws.com"
                                }
                            },
                        },
                    ]
                )
            ),
            opts=child(self),
        )
        within = pulumi.ResourceOptions(
            parent=self, provider=args.kubernetes, depends_on=list(args.ready)
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata={
                "name": SERVICE_ACCOUNT,
                "namespace": namespace,
                "annotations": {"eks.amazonaws.com/role-arn": role.arn},
            },
            opts=within,
        )
        fetch = (
            'aws secretsmanager get-secret-value --secret-id "$MASTER_SECRET" '
            "--query SecretString --output text > /work/master.json"
        )
        grant = (
            'PGUSER=$(sed -n \'s/.*"username": *"\\([^"]*\\)".*/\\1/p\' /work/master.json) '
            'PGPASSWORD=$(sed -n \'s/.*"password": *"\\([^"]*\\)".*/\\1/p\' /work/master.json) '
            'psql "host=$PGHOST dbname=postgres sslmode=require" -v ON_ERROR_STOP=1 -c "$GRANTS"'
        )
        spec: Any = {
            "backoff_limit": 3,
            "template": {
                "spec": {
                    "service_account_name": SERVICE_ACCOUNT,
                    "restart_policy": "Never",
                    "security_context": {"seccomp_profile": {"type": "RuntimeDefault"}},
                    "volumes": [{"name": "work", "empty_dir": {"medium": "Memory"}}],
                    "init_containers": [
                        _container(
                            "master-secret",
                            AWS_CLI_IMAGE,
                            fetch,
                            MASTER_SECRET=args.master_secret_arn,
                            AWS_REGION=args.region,
                            HOME="/work",
                        )
                    ],
                    "containers": [
                        _container("grant", PSQL_IMAGE, grant, PGHOST=args.address, GRANTS=sql)
                    ],
                }
            },
        }
        metadata: Any = {"generate_name": "db-users-", "namespace": namespace}
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata=metadata,
            spec=spec,
            opts=pulumi.ResourceOptions.merge(
                within, pulumi.ResourceOptions(depends_on=[*args.ready, account, policy])
            ),
        )
        self.register_outputs({"users": json.dumps(sorted(set(args.users)))})
