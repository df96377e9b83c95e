"""The add-ons' side of the GitOps Bridge: what the program writes on the cluster secret is
exactly what charts/addons reads, and each add-on's role trusts only where the chart runs it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from platformctl.bridge import (
    ADDON_ROLES,
    addon_cluster_values,
    cluster_log_group,
    fill,
    placeholder_annotations,
)
from platformctl.infra.addons import AddonIdentityArgs
from platformctl.infra.identity import OidcProvider
from platformctl.model import load_repo
from platformctl.render import Renderer
from tests.infra.conftest import HOSTED_ZONE, ISSUER, ROOT, VPC_ID, Program


def _annotations(program: Program) -> dict[str, str]:
    annotations: dict[str, str] = program.one("kubernetes:core/v1:Secret").inputs["metadata"][
        "annotations"
    ]
    return annotations


def _policy(program: Program, name: str) -> dict[str, Any]:
    policy = next(
        r.inputs["policy"]
        for r in program.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.name == name
    )
    return {s["Sid"]: s for s in json.loads(policy)["Statement"]}


def test_the_cluster_secret_carries_every_fact_the_addons_read(program: Program) -> None:
    annotations = _annotations(program)
    fill(addon_cluster_values(), annotations)  # raises on an annotation the secret lacks
    # the offline renders stand in for exactly what the program writes
    repo = load_repo(ROOT)
    assert set(placeholder_annotations(repo, repo.environment(program.stack))) == set(annotations)
    assert annotations["platform_hosted_zone_id"] == HOSTED_ZONE
    assert annotations["platform_domain"] == f"{program.stack}.platform.acme-corp.example"
    for owner in ADDON_ROLES:
        key = f"{owner.replace('-', '_')}_iam_role_arn"
        assert annotations[key] == program.exports["addonRoleArns"][owner]


def test_the_addons_render_from_what_the_program_wrote(program: Program) -> None:
    repo = load_repo(ROOT)
    rendered = Renderer(repo).addons(repo.environment(program.stack), _annotations(program))
    applications = {
        d["metadata"]["name"]: d for d in rendered.documents if d["kind"] == "Application"
    }
    for owner, (namespace, account) in ADDON_ROLES.items():
        application = applications["kube-prometheus-stack" if owner == "grafana" else owner]
        assert application["spec"]["destination"]["namespace"] == namespace
        values = application["spec"]["source"]["helm"]["valuesObject"]
        if owner == "grafana":
            # charts/addons makes Grafana's account (a wave before the monitoring stack)
            assert values["grafana"]["serviceAccount"] == {"create": False, "name": account}
            (values,) = [
                {"serviceAccount": {**d["metadata"]}}
                for d in rendered.documents
                if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account
            ]
            assert values["serviceAccount"]["namespace"] == namespace
        account_values = values["serviceAccount"]
        assert account_values["name"] == account
        assert (
            account_values["annotations"]["eks.amazonaws.com/role-arn"]
            == program.exports["addonRoleArns"][owner]
        )
    load_balancer = applications["aws-load-balancer-controller"]["spec"]["source"]["helm"]
    assert load_balancer["valuesObject"]["vpcId"] == VPC_ID
    fluent_bit = applications["fluent-bit"]["spec"]["source"]["helm"]["valuesObject"]
    assert cluster_log_group(f"platform-{program.stack}") in fluent_bit["config"]["outputs"]


def test_each_addon_role_trusts_only_its_service_account(program: Program) -> None:
    roles = {
        r.inputs["name"]: r.inputs
        for r in program.of_type("aws:iam/role:Role")
        if "name" in r.inputs
    }
    issuer = ISSUER.removeprefix("https://")
    for owner, (namespace, account) in ADDON_ROLES.items():
        trust = json.loads(roles[f"platform-{program.stack}-{owner}"]["assumeRolePolicy"])
        assert trust["Statement"][0]["Condition"]["StringEquals"] == {
            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
            f"{issuer}:aud": "sts.amazonaws.com",
        }


def test_addon_policies_name_their_own_resources(program: Program) -> None:
    dns = _policy(program, "addons-external-dns")
    assert dns["ChangeOwnZone"]["Resource"] == f"arn:aws:route53:::hostedzone/{HOSTED_ZONE}"
    logs = _policy(program, "addons-fluent-bit")["ShipContainerLogs"]["Resource"]
    assert all(f"/platform/platform-{program.stack}/containers" in arn for arn in logs)
    grafana = _policy(program, "addons-grafana")
    assert grafana["ReadOwnSecret"]["Resource"].endswith(f"platform-{program.stack}/grafana")
    changes = _policy(program, "addons-aws-load-balancer-controller")["ChangeOwn"]
    assert changes["Condition"] == {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}


def test_the_certificate_covers_the_domain_and_is_validated_in_its_zone(program: Program) -> None:
    certificate = program.one("aws:acm/certificate:Certificate").inputs
    domain = f"{program.stack}.platform.acme-corp.example"
    assert certificate["domainName"] == f"*.{domain}"
    assert certificate["subjectAlternativeNames"] == [domain]
    record = program.one("aws:route53/record:Record").inputs
    assert record["zoneId"] == HOSTED_ZONE
    assert program.exports["certificateArn"].startswith("arn:aws:acm:")


@pytest.mark.parametrize("domain", ["", "localhost", ".example.com"])
def test_a_domain_that_is_not_one_is_refused_at_construction(domain: str) -> None:
    with pytest.raises(ValueError, match="is not a DNS domain"):
        AddonIdentityArgs(
            cluster_name="platform-dev",
            environment="dev",
            region="eu-west-1",
            account_id="123456789012",
            domain=domain,
            provider=OidcProvider(arn="arn", issuer_url=ISSUER),
            kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/x",
            log_retention_days=90,
            deletion_protection=False,
        )
