"""The add-ons' side of the GitOps Bridge: what the program writes on the cluster secret is
exactly what charts/addons reads, and each add-on's role trusts only where the chart runs it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_infra.addons import AddonIdentityArgs
from platform_infra.iam import (
    UPSTREAM,
    _upstream_text,
    load_balancer_controller_policy,
    upstream_policy,
    vendored,
)
from platform_infra.identity import OidcProvider
from platformctl.bridge import (
    ADDON_ROLES,
    AUTOSCALER,
    AUTOSCALER_ROLE,
    addon_cluster_values,
    cluster_log_group,
    fill,
    placeholder_annotations,
)
from platformctl.model import load_repo
from platformctl.render import Renderer
from platformctl.vendor import VENDOR_DIR, Lock
from tests.infra.conftest import HOSTED_ZONE, ISSUER, ROOT, VPC_ID, Program, stack_config


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
    assert annotations["platform_domain"] == stack_config(program.stack)["platform:domain"]
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
        # the autoscaler's chart keeps its account under rbac
        account_values = (values["rbac"] if owner == AUTOSCALER else values)["serviceAccount"]
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


def _document(program: Program, name: str) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(
        next(
            r.inputs["policy"]
            for r in program.of_type("aws:iam/rolePolicy:RolePolicy")
            if r.name == name
        )
    )
    return policy


def test_addon_policies_name_their_own_resources(program: Program) -> None:
    logs = _policy(program, "addons-fluent-bit")["ShipContainerLogs"]["Resource"]
    assert all(f"/platform/platform-{program.stack}/containers" in arn for arn in logs)
    grafana = _policy(program, "addons-grafana")
    assert f":secret:platform-{program.stack}/grafana" in grafana["ReadOwnSecret"]["Resource"]


def test_the_load_balancer_controller_gets_upstreams_policy_as_published(
    program: Program,
) -> None:
    """Finding 6: the hand-condensed policy put two services' CreateAction keys in one
    StringEquals (never both present), allowed ingress only on tagged groups and lacked six
    actions of v2.13.3."""
    document = _document(program, "addons-aws-load-balancer-controller")
    assert document == load_balancer_controller_policy()
    statements = document["Statement"]
    ingress = [
        s
        for s in statements
        if "ec2:AuthorizeSecurityGroupIngress" in s["Action"] and "Condition" not in s
    ]
    assert ingress, "the controller must open the untagged cluster security group"
    for statement in statements:
        keys = {k.split(":")[0] for k in statement.get("Condition", {}).get("StringEquals", {})}
        assert len(keys & {"ec2", "elasticloadbalancing"}) <= 1
    actions = {a for s in statements for a in _list(s["Action"])}
    for action in (
        "elasticloadbalancing:SetRulePriorities",
        "ec2:DescribeRouteTables",
        "elasticloadbalancing:ModifyListenerAttributes",
    ):
        assert action in actions


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_external_dns_changes_records_only_in_its_own_zone(program: Program) -> None:
    document = _document(program, "addons-external-dns")
    upstream = upstream_policy("external-dns")
    zone = f"arn:aws:route53:::hostedzone/{HOSTED_ZONE}"
    assert document["Statement"][0] == {**upstream["Statement"][0], "Resource": [zone]}
    assert document["Statement"][1:] == upstream["Statement"][1:]


def _vendored_chart(source: dict[str, Any]) -> dict[str, Any]:
    """The Chart.yaml an Application's source deploys: a path in this repository, locked."""
    assert "chart" not in source, "add-ons deploy the vendored charts, not a Helm repository"
    path = Path(source["path"])
    assert path.parent == VENDOR_DIR
    chart: dict[str, Any] = yaml.safe_load((ROOT / path / "Chart.yaml").read_text())
    locked = Lock.load(ROOT).get(path.name)
    assert (chart["name"], chart["version"]) == (path.name, locked.version)
    return chart


def test_the_vendored_policies_are_upstreams_at_the_pinned_versions() -> None:
    """Each file hashes to its lock entry, and the lock's tag is the controller version of the
    chart the add-ons deploy (a chart bump without re-vendoring fails here)."""
    repo = load_repo(ROOT)
    rendered = Renderer(repo).addons(repo.environment(repo.environments[0].name))
    sources = {
        d["metadata"]["name"]: d["spec"]["source"]
        for d in rendered.documents
        if d["kind"] == "Application"
    }
    for name, entry in vendored().items():
        text = (UPSTREAM / f"{name}.json").read_bytes()
        assert hashlib.sha256(text).hexdigest() == entry.sha256
        upstream_policy(name)  # the same check, as the program makes it
        if entry.chart is not None:
            # The Application deploys the chart vendored in this repository at source.path.
            chart = _vendored_chart(sources[entry.chart["name"]])
            assert chart["name"] == entry.chart["name"]
            assert chart["version"] == entry.chart["version"]
            assert chart["appVersion"].removeprefix("v") == entry.tag.removeprefix("v")


def test_a_vendored_policy_edited_by_hand_is_refused(tmp_path: Path) -> None:
    text = (UPSTREAM / "external-dns.json").read_text()
    edited = tmp_path / "external-dns.json"
    edited.write_text(text.replace("route53:ListHostedZones", "route53:*"))
    _upstream_text.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("platform_infra.iam.UPSTREAM", tmp_path)
        (tmp_path / "lock.yaml").write_text((UPSTREAM / "lock.yaml").read_text())
        with pytest.raises(ValueError, match="re-vendor it with scripts/vendor-iam-policies"):
            upstream_policy("external-dns")
    _upstream_text.cache_clear()


def test_the_certificate_covers_the_domain_and_is_validated_in_its_zone(program: Program) -> None:
    certificate = program.one("aws:acm/certificate:Certificate").inputs
    domain = stack_config(program.stack)["platform:domain"]
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
            zone_id=HOSTED_ZONE,
            provider=OidcProvider(arn="arn", issuer_url=ISSUER),
            kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/x",
            log_retention_days=90,
            deletion_protection=False,
        )


def test_the_cluster_autoscaler_gets_its_own_role_with_upstreams_policy(program: Program) -> None:
    """Finding 9: node groups leave their desired size to an autoscaler that had no role.
    Upstream's recommended policy, its scaling actions limited to this cluster's groups."""
    namespace, account = AUTOSCALER_ROLE
    name = f"platform-{program.stack}"
    role = program.named("aws:iam/role:Role", f"addons-{AUTOSCALER}")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert trust["StringEquals"][f"{ISSUER.removeprefix('https://')}:sub"] == (
        f"system:serviceaccount:{namespace}:{account}"
    )
    document = _document(program, f"addons-{AUTOSCALER}")
    upstream = upstream_policy("cluster-autoscaler")
    assert document["Statement"][0] == upstream["Statement"][0]
    scaling = document["Statement"][1]
    assert {k: v for k, v in scaling.items() if k != "Condition"} == upstream["Statement"][1]
    assert scaling["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{name}": "owned"}
    }
    annotation = _annotations(program)["cluster_autoscaler_iam_role_arn"]
    assert annotation == program.exports["addonRoleArns"][AUTOSCALER]


def test_the_cluster_autoscaler_runs_as_its_role_and_finds_this_clusters_groups(
    program: Program,
) -> None:
    """The vendored chart, rendered with what the program wrote: the account the role trusts,
    annotated with that role, discovering exactly the tags every node group carries."""
    namespace, account = AUTOSCALER_ROLE
    repo = load_repo(ROOT)
    renderer = Renderer(repo)
    environment = repo.environment(program.stack)
    (job,) = [
        j
        for j in renderer.addon_chart_jobs(environment, _annotations(program))
        if j.name == f"addons/{AUTOSCALER}"
    ]
    documents = renderer.render(job).documents
    (service_account,) = [d for d in documents if d["kind"] == "ServiceAccount"]
    assert (service_account["metadata"]["namespace"], service_account["metadata"]["name"]) == (
        namespace,
        account,
    )
    assert (
        service_account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == program.exports["addonRoleArns"][AUTOSCALER]
    )
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account
    (discovery,) = [
        a.removeprefix("--node-group-auto-discovery=asg:tag=")
        for a in pod["containers"][0]["command"]
        if a.startswith("--node-group-auto-discovery=")
    ]
    wanted = set(discovery.split(","))
    assert f"k8s.io/cluster-autoscaler/{environment.cluster_name}" in wanted
    groups = program.of_type("aws:eks/nodeGroup:NodeGroup")
    assert groups
    for group in groups:
        assert wanted <= set(group.inputs["tags"])
        # the tag the role's scaling statement is conditioned on
        assert group.inputs["tags"][f"k8s.io/cluster-autoscaler/{environment.cluster_name}"] == (
            "owned"
        )
