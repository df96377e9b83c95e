"""What the platform add-ons need from AWS: an IRSA role each (trusted only by the add-on's own
service account), the containers' log group, Grafana's admin secret, and the environment's
TLS certificate for the ALB. Names and trust come from ``platformctl.bridge``, which the
add-ons chart reads too."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import pulumi
import pulumi_aws as aws

from platform_infra.common import child, log_group, recovery_window, tags
from platform_infra.iam import (
    cluster_autoscaler_policy,
    external_dns_policy,
    load_balancer_controller_policy,
)
from platform_infra.identity import OidcProvider, irsa_role
from platformctl.bridge import (
    ADDON_ROLES,
    AUTOSCALER,
    addon_secret_name,
    cluster_log_group,
)

Document = dict[str, Any]


@dataclass(frozen=True)
class AddonIdentityArgs:
    cluster_name: str
    environment: str
    region: str
    account_id: str
    domain: str
    # The environment's public hosted zone (checked by the preflight).
    zone_id: str
    provider: OidcProvider
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    deletion_protection: bool

    def __post_init__(self) -> None:
        if not self.domain or self.domain.startswith(".") or "." not in self.domain:
            raise ValueError(f"domain '{self.domain}' is not a DNS domain")


def load_balancer_controller(_: Mapping[str, str]) -> Document:
    """Upstream's policy at the controller version the add-ons chart pins, as published."""
    return load_balancer_controller_policy()


def external_dns(resources: Mapping[str, str]) -> Document:
    return external_dns_policy(resources["zone"])


def _document(statements: list[dict[str, Any]]) -> Document:
    return {"Version": "2012-10-17", "Statement": statements}


def fluent_bit(resources: Mapping[str, str]) -> Document:
    return _document(
        [
            {
                "Sid": "ShipContainerLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [resources["log_group"], f"{resources['log_group']}:log-stream:*"],
            }
        ]
    )


def opentelemetry_collector(_: Mapping[str, str]) -> Document:
    # X-Ray's write and sampling actions have no resource-level permissions.
    return _document(
        [
            {
                "Sid": "SendTraces",
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": "*",
            }
        ]
    )


def grafana(resources: Mapping[str, str]) -> Document:
    return _document(
        [
            {
                "Sid": "ReadOwnSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": resources["grafana_secret"],
            },
            {
                "Sid": "DecryptThroughSecretsManager",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": resources["key"],
                "Condition": {"StringEquals": {"kms:ViaService": resources["secretsmanager"]}},
            },
            {
                "Sid": "ReadMetricsAndTraces",
                "Effect": "Allow",
                "Action": [
                    "cloudwatch:DescribeAlarms",
                    "cloudwatch:GetMetricData",
                    "cloudwatch:ListMetrics",
                    "xray:BatchGetTraces",
                    "xray:GetTraceSummaries",
                    "xray:GetTraceGraph",
                    "xray:GetServiceGraph",
                    "xray:GetGroups",
                    "xray:GetTimeSeriesServiceStatistics",
                    "xray:GetInsightSummaries",
                ],
                "Resource": "*",
            },
            {
                "Sid": "QueryContainerLogs",
                "Effect": "Allow",
                "Action": [
                    "logs:StartQuery",
                    "logs:GetLogEvents",
                    "logs:FilterLogEvents",
                    "logs:DescribeLogStreams",
                ],
                "Resource": [resources["log_group"], f"{resources['log_group']}:log-stream:*"],
            },
            {
                "Sid": "QueryResults",
                "Effect": "Allow",
                "Action": ["logs:GetQueryResults", "logs:StopQuery", "logs:DescribeLogGroups"],
                "Resource": "*",
            },
        ]
    )


def cluster_autoscaler(resources: Mapping[str, str]) -> Document:
    return cluster_autoscaler_policy(resources["cluster"])


POLICIES: Mapping[str, Callable[[Mapping[str, str]], Document]] = {
    AUTOSCALER: cluster_autoscaler,
    "aws-load-balancer-controller": load_balancer_controller,
    "external-dns": external_dns,
    "fluent-bit": fluent_bit,
    "grafana": grafana,
    "opentelemetry-collector": opentelemetry_collector,
}


def _policy(
    document: Callable[[Mapping[str, str]], Document],
    region: str,
    cluster: str,
    found: Mapping[str, str],
) -> str:
    resources = {
        **found,
        "cluster": cluster,
        "secretsmanager": f"secretsmanager.{region}.amazonaws.com",
    }
    return json.dumps(document(resources), sort_keys=True)


class AddonIdentity(pulumi.ComponentResource):
    role_arns: dict[str, pulumi.Output[str]]
    hosted_zone_id: pulumi.Output[str]
    certificate_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: AddonIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:AddonIdentity", name, None, opts)
        owners = ADDON_ROLES
        if set(POLICIES) != set(owners):
            raise ValueError("every add-on role in platformctl.bridge needs a policy here")
        zone = aws.route53.get_zone_output(zone_id=args.zone_id)
        self.hosted_zone_id = zone.zone_id
        logs = log_group(
            f"{name}-containers",
            cluster_log_group(args.cluster_name),
            args.log_retention_days,
            args.kms_key_arn,
            args.environment,
            self,
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-grafana",
            name=addon_secret_name(args.cluster_name, "grafana"),
            description=f"Grafana admin login of {args.environment} (admin-user, admin-password)",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=recovery_window(args.deletion_protection),
            tags=tags(args.environment, f"{args.cluster_name}-grafana"),
            opts=child(self),
        )
        self.certificate_arn = self._certificate(name, args, zone.zone_id)
        resources = pulumi.Output.all(
            zone=zone.arn,
            log_group=logs.arn,
            grafana_secret=secret.arn,
            key=args.kms_key_arn,
        )
        self.role_arns = {}
        for owner, (namespace, account) in owners.items():
            role = irsa_role(
                f"{name}-{owner}",
                f"{args.cluster_name}-{owner}",
                args.provider,
                namespace,
                account,
                tags(args.environment, f"{args.cluster_name}-{owner}", addon=owner),
                self,
            )
            aws.iam.RolePolicy(
                f"{name}-{owner}",
                role=role.id,
                policy=resources.apply(
                    partial(_policy, POLICIES[owner], args.region, args.cluster_name)
                ),
                opts=child(self),
            )
            self.role_arns[owner] = role.arn
        self.register_outputs({"roleArns": self.role_arns, "certificateArn": self.certificate_arn})

    def _certificate(
        self, name: str, args: AddonIdentityArgs, zone_id: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        """``*.<domain>`` (and the apex) from ACM, validated through DNS in the zone: the ALB
        finds it by the ingresses' hosts and ACM renews it."""
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=f"*.{args.domain}",
            subject_alternative_names=[args.domain],
            validation_method="DNS",
            key_algorithm="EC_prime256v1",
            tags=tags(args.environment, f"*.{args.domain}"),
            opts=child(self, protect=args.deletion_protection),
        )
        # The wildcard and the apex share one validation record.
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-certificate-validation",
            zone_id=zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=300,
            allow_overwrite=True,
            opts=child(self),
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=child(self),
        )
        return validation.certificate_arn
