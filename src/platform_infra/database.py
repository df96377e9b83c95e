"""RDS PostgreSQL in the private subnets: encrypted with the stack's key, TLS only, IAM
authentication for the services, the master password kept by RDS in Secrets Manager."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from platform_infra.common import child, log_group, tags
from platformctl.stacks import DatabaseSettings


@dataclass(frozen=True)
class DatabaseArgs:
    name: str
    environment: str
    settings: DatabaseSettings
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    # Who may connect: the cluster's security group (every pod on the nodes).
    client_security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int


LOG_EXPORTS = ("postgresql", "upgrade")


class Database(pulumi.ComponentResource):
    instance: aws.rds.Instance

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:Database", name, None, opts)
        settings = args.settings
        env = args.environment
        major = settings.engine_version.split(".")[0]

        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name=args.name,
            subnet_ids=args.subnet_ids,
            tags=tags(env, args.name),
            opts=child(self),
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"PostgreSQL of {args.name}: from the nodes only",
            tags=tags(env, f"{args.name}-db"),
            opts=child(self),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-nodes",
            security_group_id=group.id,
            referenced_security_group_id=args.client_security_group_id,
            ip_protocol="tcp",
            from_port=5432,
            to_port=5432,
            description="PostgreSQL from the EKS nodes (and their pods)",
            tags=tags(env),
            opts=child(self),
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            name=f"{args.name}-postgres{major}",
            family=f"postgres{major}",
            description=f"{args.name}: TLS only, slow statements logged",
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "log_min_duration_statement", "value": "500"},
                {"name": "log_connections", "value": "1"},
            ],
            tags=tags(env, args.name),
            opts=child(self),
        )
        log_groups = [
            log_group(
                f"{name}-logs-{export}",
                f"/aws/rds/instance/{args.name}/{export}",
                args.log_retention_days,
                args.kms_key_arn,
                env,
                self,
            )
            for export in LOG_EXPORTS
        ]
        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=args.name,
            engine="postgres",
            engine_version=settings.engine_version,
            instance_class=settings.instance_class,
            allocated_storage=settings.allocated_storage_gib,
            max_allocated_storage=settings.max_allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[group.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            username="platform_admin",
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.kms_key_arn,
            iam_database_authentication_enabled=True,
            multi_az=settings.multi_az,
            deletion_protection=settings.deletion_protection,
            backup_retention_period=settings.backup_retention_days,
            backup_window="02:00-03:00",
            maintenance_window="sun:03:30-sun:04:30",
            copy_tags_to_snapshot=True,
            # A protected database leaves a final snapshot; an unprotected one (dev) does not.
            skip_final_snapshot=not settings.deletion_protection,
            final_snapshot_identifier=f"{args.name}-final"
            if settings.deletion_protection
            else None,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=args.kms_key_arn,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            tags=tags(env, args.name),
            opts=child(self, depends_on=log_groups),
        )
        # The secret RDS keeps the master user's password in (the users' Job reads it).
        self.master_secret_arn: pulumi.Output[str] = self.instance.master_user_secrets.apply(
            lambda secrets: str(secrets[0].secret_arn) if secrets else ""
        )
        self.register_outputs(
            {
                "address": self.instance.address,
                "resourceId": self.instance.resource_id,
                "masterSecretArn": self.master_secret_arn,
            }
        )
