"""The VPC: private subnets for nodes and databases, small public ones for load balancers and
NAT, flow logs, and VPC endpoints so image pulls, STS and logs never leave AWS's network."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from platform_infra.common import (
    assume_role_policy,
    child,
    endpoint_policy,
    log_group,
    policy_document,
    tags,
)
from platformctl.stacks import nat_gateway_count

INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts", "logs")


@dataclass(frozen=True)
class NetworkArgs:
    name: str
    environment: str
    region: str
    account_id: str
    cidr: ipaddress.IPv4Network
    availability_zones: int
    # One NAT gateway per zone survives a zone outage; one in all is cheaper (dev).
    nat_gateways: Literal["single", "perZone"]
    flow_log_retention_days: int
    kms_key_arn: pulumi.Input[str]


def subnet_blocks(
    cidr: ipaddress.IPv4Network, zones: int
) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network]]:
    """Private and public blocks per zone: the VPC in eighths, a private eighth per zone (a /19
    of a /16) and the last eighth cut in eight again for the public subnets (a /22 each)."""
    eighths = list(cidr.subnets(prefixlen_diff=3))
    if zones > len(eighths) - 1:
        raise ValueError(f"{cidr} has room for {len(eighths) - 1} zones, not {zones}")
    public = list(eighths[-1].subnets(prefixlen_diff=3))
    return eighths[:zones], public[:zones]


class Network(pulumi.ComponentResource):
    vpc: aws.ec2.Vpc
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:Network", name, None, opts)
        env = args.environment
        zones = aws.get_availability_zones(state="available").names[: args.availability_zones]
        if len(zones) < args.availability_zones:
            raise ValueError(
                f"{args.region} has {len(zones)} available zones, fewer than the "
                f"{args.availability_zones} asked for"
            )
        private_blocks, public_blocks = subnet_blocks(args.cidr, len(zones))

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(args.cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags(env, args.name),
            opts=child(self),
        )
        # The default security group would let anything attached to it talk; close it.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            tags=tags(env, f"{args.name}-default"),
            opts=child(self),
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=tags(env, args.name), opts=child(self)
        )

        public_table = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            tags=tags(env, f"{args.name}-public"),
            opts=child(self),
        )
        aws.ec2.Route(
            f"{name}-public-internet",
            route_table_id=public_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child(self),
        )
        public_subnets = [
            self._subnet(name, args, "public", zone, block, public_table.id)
            for zone, block in zip(zones, public_blocks, strict=True)
        ]

        nat_zones = zones[: nat_gateway_count(args)]
        nats = [
            self._nat_gateway(name, args, zone, subnet, gateway)
            for zone, subnet in zip(nat_zones, public_subnets, strict=False)
        ]
        private_subnets: list[aws.ec2.Subnet] = []
        private_tables: list[aws.ec2.RouteTable] = []
        for index, (zone, block) in enumerate(zip(zones, private_blocks, strict=True)):
            table = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=self.vpc.id,
                tags=tags(env, f"{args.name}-private-{zone}"),
                opts=child(self),
            )
            aws.ec2.Route(
                f"{name}-private-{zone}-nat",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[min(index, len(nats) - 1)].id,
                opts=child(self),
            )
            private_tables.append(table)
            private_subnets.append(self._subnet(name, args, "private", zone, block, table.id))

        self._flow_logs(name, args)
        self._endpoints(name, args, private_subnets, private_tables)

        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.register_outputs(
            {
                "vpcId": self.vpc.id,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
            }
        )

    def _subnet(
        self,
        name: str,
        args: NetworkArgs,
        tier: Literal["public", "private"],
        zone: str,
        block: ipaddress.IPv4Network,
        route_table_id: pulumi.Input[str],
    ) -> aws.ec2.Subnet:
        # The AWS Load Balancer Controller finds its subnets by these role tags.
        role = "kubernetes.io/role/elb" if tier == "public" else "kubernetes.io/role/internal-elb"
        subnet = aws.ec2.Subnet(
            f"{name}-{tier}-{zone}",
            vpc_id=self.vpc.id,
            cidr_block=str(block),
            availability_zone=zone,
            # Nothing gets a public IP by default: NAT gateways and load balancers bring their own.
            map_public_ip_on_launch=False,
            tags=tags(args.environment, f"{args.name}-{tier}-{zone}", **{role: "1", "tier": tier}),
            opts=child(self),
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-{tier}-{zone}",
            subnet_id=subnet.id,
            route_table_id=route_table_id,
            opts=child(self),
        )
        return subnet

    def _nat_gateway(
        self,
        name: str,
        args: NetworkArgs,
        zone: str,
        subnet: aws.ec2.Subnet,
        gateway: aws.ec2.InternetGateway,
    ) -> aws.ec2.NatGateway:
        # AWS: an Elastic IP for a VPC and a public NAT gateway need its internet gateway.
        address = aws.ec2.Eip(
            f"{name}-nat-{zone}",
            domain="vpc",
            tags=tags(args.environment, f"{args.name}-nat-{zone}"),
            opts=child(self, depends_on=[gateway]),
        )
        return aws.ec2.NatGateway(
            f"{name}-nat-{zone}",
            allocation_id=address.id,
            subnet_id=subnet.id,
            tags=tags(args.environment, f"{args.name}-nat-{zone}"),
            opts=child(self, depends_on=[gateway]),
        )

    def _flow_logs(self, name: str, args: NetworkArgs) -> None:
        env = args.environment
        group = log_group(
            f"{name}-flow-logs",
            f"/aws/vpc/{args.name}/flow-logs",
            args.flow_log_retention_days,
            args.kms_key_arn,
            env,
            self,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            # AWS's documented guard: only flow logs of this account's VPCs assume the role.
            assume_role_policy=assume_role_policy(
                "vpc-flow-logs.amazonaws.com",
                {
                    "StringEquals": {"aws:SourceAccount": args.account_id},
                    "ArnLike": {
                        "aws:SourceArn": (
                            f"arn:aws:ec2:{args.region}:{args.account_id}:vpc-flow-log/*"
                        )
                    },
                },
            ),
            tags=tags(env, f"{args.name}-flow-logs"),
            opts=child(self),
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=group.arn.apply(
                lambda arn: policy_document(
                    [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": [arn, f"{arn}:*"],
                        }
                    ]
                )
            ),
            opts=child(self),
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=tags(env, f"{args.name}-flow-logs"),
            opts=child(self),
        )

    def _endpoints(
        self,
        name: str,
        args: NetworkArgs,
        subnets: Sequence[aws.ec2.Subnet],
        tables: Sequence[aws.ec2.RouteTable],
    ) -> None:
        env = args.environment
        group = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            vpc_id=self.vpc.id,
            description="HTTPS from inside the VPC to the AWS service endpoints",
            tags=tags(env, f"{args.name}-endpoints"),
            opts=child(self),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https",
            security_group_id=group.id,
            cidr_ipv4=str(args.cidr),
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="HTTPS from the VPC",
            tags=tags(env),
            opts=child(self),
        )
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[subnet.id for subnet in subnets],
                security_group_ids=[group.id],
                policy=endpoint_policy(args.account_id),
                tags=tags(env, f"{args.name}-{service}"),
                opts=child(self),
            )
        # Image layers come from S3: a gateway endpoint keeps them off the NAT gateways' bill.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in tables],
            # ECR serves image layers from its own bucket, fetched with URLs ECR signs.
            policy=endpoint_policy(
                args.account_id,
                {
                    "Sid": "EcrImageLayers",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::prod-{args.region}-starport-layer-bucket/*",
                },
            ),
            tags=tags(env, f"{args.name}-s3"),
            opts=child(self),
        )
