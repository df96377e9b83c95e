"""The program of every stack, run under Pulumi's mocks: what it declares and how."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from platform_infra.rules import (
    CONTROL_PLANE_LOG_TYPES,
    ECR_REPOSITORY,
    EKS_CLUSTER,
    LAUNCH_TEMPLATE,
    NODE_GROUP,
    RDS_INSTANCE,
    evaluate,
    taggable,
)
from platformctl.model import load_repo
from tests.infra.conftest import (
    ACCOUNT,
    ISSUER,
    REGION,
    ROOT,
    VPC_ID,
    AwsMocks,
    Program,
    run_program,
    stack_config,
)

REQUIRED = {
    "aws:ec2/vpc:Vpc": 1,
    "aws:ec2/flowLog:FlowLog": 1,
    "aws:kms/key:Key": 1,
    EKS_CLUSTER: 1,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": 1,
    RDS_INSTANCE: 1,
    "kubernetes:helm.sh/v3:Release": 1,
    # services and add-ons
    "kubernetes:argoproj.io/v1alpha1:AppProject": 2,
    "kubernetes:argoproj.io/v1alpha1:ApplicationSet": 2,
    "aws:acm/certificateValidation:CertificateValidation": 1,
}


def test_every_stack_declares_the_platform(program: Program) -> None:
    for type_token, count in REQUIRED.items():
        assert len(program.of_type(type_token)) == count, type_token
    assert len(program.of_type("aws:ec2/subnet:Subnet")) == 6
    prefix = f"com.amazonaws.{REGION}."
    endpoints = {
        r.inputs["serviceName"].removeprefix(prefix)
        for r in program.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert endpoints == {"ecr.api", "ecr.dkr", "sts", "logs", "s3"}


def test_every_stack_passes_every_rule(program: Program) -> None:
    assert [str(v) for v in evaluate(program.resources())] == []


def test_every_taggable_resource_is_tagged(program: Program) -> None:
    tagged = [r for r in program.registered if taggable(r.type)]
    assert len(tagged) > 50
    for resource in tagged:
        assert resource.inputs.get("tags", {}).get("environment") == program.stack, resource.name
        assert resource.inputs["tags"]["managed-by"] == "pulumi"


def test_the_cluster_is_private_encrypted_and_logged(program: Program) -> None:
    cluster = program.one(EKS_CLUSTER).inputs
    key = program.one("aws:kms/key:Key")
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"] == AwsMocks._arn(key.type, key.name)
    assert set(cluster["enabledClusterLogTypes"]) == set(CONTROL_PLANE_LOG_TYPES)
    assert cluster["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    assert cluster["version"] == load_repo(ROOT).environment(program.stack).kubernetes_version
    assert key.inputs["enableKeyRotation"] is True
    # The control-plane log group exists before the cluster, with retention and the key.
    group = next(
        r
        for r in program.of_type("aws:cloudwatch/logGroup:LogGroup")
        if r.inputs["name"].startswith("/aws/eks/")
    )
    assert group.inputs["retentionInDays"] > 0
    assert group.inputs["kmsKeyId"]
    oidc = program.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert oidc["url"] == ISSUER
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]


def test_nodes_are_private_imdsv2_encrypted_and_without_ssh(program: Program) -> None:
    private = {
        r.name + "-id"
        for r in program.of_type("aws:ec2/subnet:Subnet")
        if r.inputs["tags"]["tier"] == "private"
    }
    template = program.one(LAUNCH_TEMPLATE).inputs
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    volume = template["blockDeviceMappings"][0]["ebs"]
    assert (volume["encrypted"], volume["volumeType"]) == ("true", "gp3")
    assert volume["kmsKeyId"]
    assert "keyName" not in template
    for group in program.of_type(NODE_GROUP):
        assert "remoteAccess" not in group.inputs
        assert set(group.inputs["subnetIds"]) == private
        assert (
            group.inputs["launchTemplate"]["id"] == f"{program.of_type(LAUNCH_TEMPLATE)[0].name}-id"
        )
    for subnet in program.of_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs["mapPublicIpOnLaunch"] is False


def test_core_addons_are_pinned_and_use_their_own_roles(program: Program) -> None:
    addons = {r.inputs["addonName"]: r.inputs for r in program.of_type("aws:eks/addon:Addon")}
    assert set(addons) == {
        "vpc-cni",
        "coredns",
        "kube-proxy",
        "eks-pod-identity-agent",
        "aws-ebs-csi-driver",
    }
    assert all(a["addonVersion"].startswith("v") for a in addons.values())
    assert addons["vpc-cni"]["serviceAccountRoleArn"].endswith("-vpc-cni")
    node_policies = {
        r.inputs["policyArn"].rsplit("/", 1)[-1]
        for r in program.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.name.startswith("cluster-nodes-")
    }
    assert "AmazonEKS_CNI_Policy" not in node_policies
    assert "AmazonEC2ContainerRegistryPullOnly" in node_policies


def test_the_database_is_private_encrypted_and_keeps_its_password_in_secrets_manager(
    program: Program,
) -> None:
    db = program.one(RDS_INSTANCE).inputs
    assert db["storageEncrypted"] is True
    assert db["kmsKeyId"]
    assert db["publiclyAccessible"] is False
    assert db["manageMasterUserPassword"] is True
    assert "password" not in db
    assert db["iamDatabaseAuthenticationEnabled"] is True
    ingress = [
        r.inputs
        for r in program.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("fromPort") == 5432
    ]
    assert len(ingress) == 1
    # Finding 10: from the nodes' own group, not the cluster group everything shares.
    assert ingress[0]["referencedSecurityGroupId"] == "cluster-nodes-id"
    assert "cidrIpv4" not in ingress[0]


def test_nodes_have_their_own_security_group_with_the_recommended_rules(
    program: Program,
) -> None:
    """Finding 10: nodes shared the cluster security group (anything in it reaches anything).
    terraform-aws-eks v21's node group: control plane to 443, 10250 and webhook ports; nodes
    to each other on DNS and ephemeral ports; the API open to the nodes on 443."""
    node_group = program.named("aws:ec2/securityGroup:SecurityGroup", "cluster-nodes")
    name = f"platform-{program.stack}"
    assert node_group.inputs["tags"][f"kubernetes.io/cluster/{name}"] == "owned"
    for template in program.of_type(LAUNCH_TEMPLATE):
        assert template.inputs["vpcSecurityGroupIds"] == ["cluster-nodes-id"]
    rules = program.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    into_nodes = {
        (r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["referencedSecurityGroupId"])
        for r in rules
        if r.inputs["securityGroupId"] == "cluster-nodes-id"
    }
    for port in (443, 10250, 4443, 6443, 8443, 9443):
        assert ("tcp", port, "sg-0cluster") in into_nodes
    assert {("tcp", 53, "cluster-nodes-id"), ("udp", 53, "cluster-nodes-id")} <= into_nodes
    assert ("tcp", 1025, "cluster-nodes-id") in into_nodes
    api = [
        r.inputs
        for r in rules
        if r.inputs["securityGroupId"] == "sg-0cluster"
        and r.inputs.get("referencedSecurityGroupId") == "cluster-nodes-id"
    ]
    assert [(r["fromPort"], r["toPort"]) for r in api] == [(443, 443)]


def test_production_is_stricter_than_dev(programs: dict[str, Program]) -> None:
    dev, production = programs["dev"], programs["production"]
    nat = "aws:ec2/natGateway:NatGateway"
    assert (len(dev.of_type(nat)), len(production.of_type(nat))) == (1, 3)
    assert dev.one(EKS_CLUSTER).inputs["vpcConfig"]["endpointPublicAccess"] is True
    assert production.one(EKS_CLUSTER).inputs["vpcConfig"]["endpointPublicAccess"] is False
    assert production.one(EKS_CLUSTER).inputs["deletionProtection"] is True
    prod_db, dev_db = production.one(RDS_INSTANCE).inputs, dev.one(RDS_INSTANCE).inputs
    assert (prod_db["multiAz"], prod_db["deletionProtection"], prod_db["skipFinalSnapshot"]) == (
        True,
        True,
        False,
    )
    assert (dev_db["multiAz"], dev_db["deletionProtection"]) == (False, False)
    assert prod_db["backupRetentionPeriod"] > dev_db["backupRetentionPeriod"]
    assert production.one("aws:kms/key:Key").inputs["deletionWindowInDays"] == 30

    def retention(p):
        return min(
            r.inputs["retentionInDays"] for r in p.of_type("aws:cloudwatch/logGroup:LogGroup")
        )

    assert retention(production) >= 365 > retention(dev)
    release = lambda p: p.one("kubernetes:helm.sh/v3:Release").inputs["values"]  # noqa: E731
    assert release(production)["redis-ha"]["enabled"] is True
    assert release(dev)["redis-ha"]["enabled"] is False


def test_the_first_stage_owns_one_ecr_repository_per_service(programs: dict[str, Program]) -> None:
    repo = load_repo(ROOT)
    dev = programs["dev"]
    repositories = {r.inputs["name"]: r.inputs for r in dev.of_type(ECR_REPOSITORY)}
    expected = {release.image.repository.split("/", 1)[1] for release in repo.releases.values()}
    assert set(repositories) == expected == set(repo.services)
    for repository in repositories.values():
        assert repository["imageTagMutability"] == "IMMUTABLE"
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repository["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    assert dev.exports["repositoryUrls"] == {
        service: f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{service}" for service in repo.services
    }
    # Later stages pull from the same repositories and create none.
    assert (
        programs["staging"].of_type(ECR_REPOSITORY)
        == programs["production"].of_type(ECR_REPOSITORY)
        == []
    )


def test_each_service_role_is_the_one_its_values_file_names(program: Program) -> None:
    repo = load_repo(ROOT)
    assert set(program.exports["roleArns"]) == set(repo.services)
    for service in repo.services:
        values = repo.release(service, program.stack).values
        assert values["serviceAccount"]["roleArn"] == program.exports["roleArns"][service]


def test_service_roles_trust_only_their_service_account_and_read_only_their_secret(
    program: Program,
) -> None:
    repo = load_repo(ROOT)
    namespace = repo.environment(program.stack).namespace
    roles = {
        r.inputs["name"]: r.inputs
        for r in program.of_type("aws:iam/role:Role")
        if "name" in r.inputs
    }
    issuer = ISSUER.removeprefix("https://")
    for service in repo.services:
        trust = json.loads(roles[f"platform-{program.stack}-{service}"]["assumeRolePolicy"])
        assert trust["Statement"][0]["Condition"]["StringEquals"] == {
            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service}",
            f"{issuer}:aud": "sts.amazonaws.com",
        }
        policy = next(
            r.inputs["policy"]
            for r in program.of_type("aws:iam/rolePolicy:RolePolicy")
            if r.name == f"identity-{service}"
        )
        statements = {s["Sid"]: s for s in json.loads(policy)["Statement"]}
        secret = f":secret:platform-{program.stack}/{service}-"
        assert secret in statements["ReadOwnSecret"]["Resource"]
        user = service.replace("-", "_")
        assert statements["ConnectAsOwnDatabaseUser"]["Resource"].endswith(f"/{user}")
        assert all("*" not in json.dumps(s["Resource"]) for s in statements.values())


def test_argocd_is_bootstrapped_from_a_pinned_chart_and_watches_this_repository(
    program: Program,
) -> None:
    repo = load_repo(ROOT)
    release = program.one("kubernetes:helm.sh/v3:Release").inputs
    assert Path(release["chart"]).resolve() == (ROOT / "charts/vendor/argo-cd").resolve()
    assert "repositoryOpts" not in release
    assert (
        release["values"]["global"]["domain"]
        == "argocd." + stack_config(program.stack)["platform:domain"]
    )
    appsets = {
        r.inputs["metadata"]["name"]: r.inputs
        for r in program.of_type("kubernetes:argoproj.io/v1alpha1:ApplicationSet")
    }
    services = appsets[f"{program.stack}-services"]
    assert services["spec"]["generators"][0]["git"]["repoURL"] == repo.repository_url
    assert services["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pulumi"
    addons = appsets[f"{program.stack}-addons"]
    selector = addons["spec"]["generators"][0]["clusters"]["selector"]["matchLabels"]
    assert selector == {"argocd.argoproj.io/secret-type": "cluster", "environment": program.stack}
    projects = {
        r.inputs["metadata"]["name"]
        for r in program.of_type("kubernetes:argoproj.io/v1alpha1:AppProject")
    }
    assert projects == {program.stack, f"{program.stack}-platform"}


def test_the_cluster_secret_carries_the_gitops_bridge_metadata(program: Program) -> None:
    secret = program.one("kubernetes:core/v1:Secret").inputs
    labels, annotations = secret["metadata"]["labels"], secret["metadata"]["annotations"]
    assert labels["argocd.argoproj.io/secret-type"] == "cluster"
    assert labels["environment"] == program.stack
    assert annotations["aws_account_id"] == ACCOUNT
    assert annotations["aws_cluster_name"] == f"platform-{program.stack}"
    assert annotations["aws_vpc_id"] == VPC_ID
    services = load_repo(ROOT).services
    assert services
    for service in services:  # the GitOps Bridge's name: <owner>_iam_role_arn, "_" for "-"
        role = program.exports["roleArns"][service]
        assert annotations[f"{service.replace('-', '_')}_iam_role_arn"] == role
    # The provider marks the secret's data as a Pulumi secret: encrypted in the state.
    data = secret["stringData"]
    assert data[rpc._special_sig_key] == rpc._special_secret_sig
    assert data["value"]["server"] == "https://kubernetes.default.svc"


def test_the_kubeconfig_gets_tokens_from_aws_and_holds_no_credentials(program: Program) -> None:
    config = json.loads(program.exports["kubeconfig"])
    user = config["users"][0]["user"]
    assert user["exec"]["command"] == "aws"
    assert "token" not in user
    assert config["clusters"][0]["cluster"]["server"].startswith("https://")


def test_dev_is_rebuildable_and_production_keeps_what_it_deletes(
    programs: dict[str, Program],
) -> None:
    """Finding 9: a destroyed dev could not be rebuilt - its secrets sat in a 7-day recovery
    window under the same names, and its kept ECR repositories already existed."""
    for stack, days in (("dev", 0), ("production", 30)):
        secrets = programs[stack].of_type("aws:secretsmanager/secret:Secret")
        assert secrets
        assert {s.inputs["recoveryWindowInDays"] for s in secrets} == {days}


def test_a_rebuilt_first_stage_adopts_the_repositories_it_kept() -> None:
    repo = load_repo(ROOT)
    kept = sorted(
        repo.release(s, repo.environments[0].name).image.repository for s in repo.services
    )
    paths = [image.partition("/")[2] for image in kept]
    program = run_program(repo.environments[0].name, mocks=AwsMocks(repositories=paths[:1]))
    imports = {
        r.inputs["name"]: r.import_id for r in program.of_type("aws:ecr/repository:Repository")
    }
    assert imports[paths[0]] == paths[0]
    assert all(imports[path] == "" for path in paths[1:])


def test_only_this_accounts_flow_logs_assume_the_flow_log_role(program: Program) -> None:
    role = next(
        r
        for r in program.of_type("aws:iam/role:Role")
        if "vpc-flow-logs.amazonaws.com" in r.inputs["assumeRolePolicy"]
    )
    condition = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert condition["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert condition["ArnLike"]["aws:SourceArn"].startswith(f"arn:aws:ec2:{REGION}:{ACCOUNT}:")


def test_every_vpc_endpoint_serves_this_account_only(program: Program) -> None:
    endpoints = program.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert len(endpoints) == 5
    for endpoint in endpoints:
        statements = json.loads(endpoint.inputs["policy"])["Statement"]
        wildcard = [s for s in statements if s["Action"] == "*"]
        assert {json.dumps(s["Condition"]) for s in wildcard} == {
            json.dumps({"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}),
            json.dumps({"StringEquals": {"aws:ResourceAccount": ACCOUNT}}),
        }


def _argocd_values(program: Program) -> dict[str, Any]:
    values: dict[str, Any] = program.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    return values


def test_argocd_logs_in_through_sso_with_the_local_admin_off_outside_the_first_stage(
    programs: dict[str, Program],
) -> None:
    """Finding 10: the local admin was on everywhere and there was no SSO."""
    first = load_repo(ROOT).environments[0].name
    for stack, program in programs.items():
        cm = _argocd_values(program)["configs"]["cm"]
        assert cm["admin.enabled"] is (stack == first)
        sso = stack_config(stack)["platform:argocd"].get("sso")
        if stack != first:
            assert sso is not None
        if sso:
            oidc = json.loads(cm["oidc.config"])
            assert (oidc["issuer"], oidc["clientID"]) == (sso["issuer"], sso["clientId"])
            assert oidc["enablePKCEAuthentication"] is True
            rbac = _argocd_values(program)["configs"]["rbac"]
            assert rbac["policy.default"] == "role:readonly"
            for group in sso["adminGroups"]:
                assert f"g, {group}, role:admin" in rbac["policy.csv"]


def test_argocd_answers_at_its_url_on_an_internal_load_balancer(program: Program) -> None:
    """Finding 7: `https://argocd.<domain>` was exported and called by the gates and --wait,
    but nothing made it: no ingress, no DNS record."""
    url = load_repo(ROOT).environment(program.stack).argocd
    assert url is not None
    ingress = _argocd_values(program)["server"]["ingress"]
    host = url.url.removeprefix("https://")
    assert (ingress["enabled"], ingress["ingressClassName"], ingress["hostname"]) == (
        True,
        "alb",
        host,
    )
    annotations = ingress["annotations"]
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert annotations["external-dns.alpha.kubernetes.io/hostname"] == host


@pytest.mark.parametrize(
    ("stack", "edit", "message"),
    [
        ("staging", {"localAdmin": True}, "the local admin login is for the first stage only"),
        ("production", {"sso": None}, "no way to log in: set sso"),
    ],
)
def test_argocd_login_settings_that_lock_people_out_or_leave_admin_on_are_refused(
    stack: str, edit: dict[str, Any], message: str
) -> None:
    config = stack_config(stack)
    argocd = {**config["platform:argocd"], **edit}
    config["platform:argocd"] = {k: v for k, v in argocd.items() if v is not None}
    with pytest.raises(pulumi.RunError, match=message):
        run_program(stack, config)
