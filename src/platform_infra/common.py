"""What every component shares: tags, child options and IAM policy documents."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

MANAGED_BY = "pulumi"
PROJECT = "platform"


def tags(environment: str, name: str | None = None, **extra: str) -> dict[str, str]:
    """The tags every taggable resource carries (the ``required-tags`` rule checks them)."""
    base = {"environment": environment, "managed-by": MANAGED_BY, "project": PROJECT}
    if name:
        base["Name"] = name
    return {**base, **extra}


def recovery_window(deletion_protection: bool) -> int:
    """Days a deleted secret stays recoverable. 0 deletes at once: an unprotected stack (dev)
    can be destroyed and rebuilt the same day, where a 7-day window would block the names."""
    return 30 if deletion_protection else 0


def child(parent: pulumi.Resource, **options: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **options)


def policy_document(statements: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def assume_role_policy(service: str, condition: Mapping[str, Any] | None = None) -> str:
    """Trust policy that lets an AWS service (``eks.amazonaws.com``) assume a role; a service
    that acts for a resource of this account gets ``aws:SourceAccount``/``aws:SourceArn``
    (the confused-deputy guard) where it documents them."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    if condition:
        statement["Condition"] = dict(condition)
    return policy_document([statement])


def endpoint_policy(account_id: str, *statements: Mapping[str, Any]) -> str:
    """A VPC endpoint that serves this account only: callers of this account, or calls on
    its resources (STS's AssumeRoleWithWebIdentity, which IRSA uses, has no caller account)."""
    own = [
        {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": "*",
            "Action": "*",
            "Resource": "*",
            "Condition": {"StringEquals": {key: account_id}},
        }
        for sid, key in (
            ("CallersOfThisAccount", "aws:PrincipalAccount"),
            ("ResourcesOfThisAccount", "aws:ResourceAccount"),
        )
    ]
    return policy_document([*statements, *own])


def managed_policy(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"


def log_group(
    resource_name: str,
    log_name: str,
    retention_days: int,
    kms_key_arn: pulumi.Input[str],
    environment: str,
    parent: pulumi.Resource,
) -> aws.cloudwatch.LogGroup:
    """A log group created before the service that writes to it: left to the service, it
    would be created without retention or encryption."""
    return aws.cloudwatch.LogGroup(
        resource_name,
        name=log_name,
        retention_in_days=retention_days,
        kms_key_id=kms_key_arn,
        tags=tags(environment, log_name),
        opts=child(parent),
    )
