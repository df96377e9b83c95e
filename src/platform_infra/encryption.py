"""One customer-managed KMS key per stack, rotated yearly, for secrets, disks, logs and RDS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from platform_infra.common import child, policy_document, tags

# Auto Scaling launches the nodes with the key's encrypted volumes; its service-linked role
# exists only after an account's first Auto Scaling group.
AUTO_SCALING_SERVICE_ROLE = (
    "aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
)


@dataclass(frozen=True)
class EncryptionArgs:
    name: str
    environment: str
    account_id: str
    region: str
    # Days a deleted key can still be recovered (7..30): production keeps the longest.
    deletion_window_days: int
    # The service-linked roles the key policy names: KMS refuses a policy whose principal
    # does not exist yet.
    service_roles: Sequence[pulumi.Resource] = ()


class Encryption(pulumi.ComponentResource):
    key: aws.kms.Key

    def __init__(
        self, name: str, args: EncryptionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:Encryption", name, None, opts)
        if not 7 <= args.deletion_window_days <= 30:
            raise ValueError("deletion_window_days must be between 7 and 30")
        account = f"arn:aws:iam::{args.account_id}"
        auto_scaling = f"{account}:role/{AUTO_SCALING_SERVICE_ROLE}"
        statements = [
            # The account administers the key through IAM, as AWS's default key policy does.
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            # CloudWatch Logs encrypts this stack's log groups (and only those). Describe* is
            # left out: DescribeKey carries no encryption context, so the condition never held.
            {
                "Sid": "CloudWatchLogsEncrypts",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{args.region}.amazonaws.com"},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                ],
                "Resource": "*",
                "Condition": {
                    # A string key: StringLike matches the same log-group ARNs as ArnLike.
                    "StringLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:aws:logs:{args.region}:{args.account_id}:log-group:*"
                        )
                    }
                },
            },
            # Auto Scaling launches the nodes, so it must open their encrypted root volumes.
            {
                "Sid": "AutoScalingUsesForNodeVolumes",
                "Effect": "Allow",
                "Principal": {"AWS": auto_scaling},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
            },
            # ... and hands EC2 a grant for each volume it attaches, never one of its own.
            {
                "Sid": "AutoScalingGrantsForNodeVolumes",
                "Effect": "Allow",
                "Principal": {"AWS": auto_scaling},
                "Action": "kms:CreateGrant",
                "Resource": "*",
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
        ]
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.name}: EKS secrets, node volumes, logs, RDS and Secrets Manager",
            enable_key_rotation=True,
            rotation_period_in_days=365,
            deletion_window_in_days=args.deletion_window_days,
            policy=policy_document(statements),
            tags=tags(args.environment, args.name),
            opts=child(self, depends_on=list(args.service_roles)),
        )
        aws.kms.Alias(
            f"{name}-alias",
            name=f"alias/{args.name}",
            target_key_id=self.key.key_id,
            opts=child(self),
        )
        self.register_outputs({"keyArn": self.key.arn})
