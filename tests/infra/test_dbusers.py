"""Finding 9: roles may `rds-db:connect` as per-service users that nothing created. A Job in
the cluster (the only place that reaches the private database) creates them with rds_iam."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from platform_infra.dbusers import SERVICE_ACCOUNT, grant_sql
from platform_infra.identity import database_user
from platformctl.model import load_repo
from tests.infra.conftest import ISSUER, ROOT, Program

JOB = "kubernetes:batch/v1:Job"


def test_the_grants_create_each_user_once_and_give_it_rds_iam() -> None:
    sql = grant_sql(["orders", "billing", "orders"])
    assert sql.count("CREATE ROLE") == 2
    assert sql.index('"billing"') < sql.index('"orders"')
    assert "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders')" in sql
    assert 'GRANT rds_iam TO "orders";' in sql


@pytest.mark.parametrize("user", ["Orders", "orders;drop", "1st", ""])
def test_a_name_that_is_not_a_plain_identifier_is_refused(user: str) -> None:
    with pytest.raises(ValueError, match="is not a PostgreSQL identifier"):
        grant_sql([user])


def _env(container: Mapping[str, Any], name: str) -> Any:
    return next(e["value"] for e in container["env"] if e["name"] == name)


def test_every_service_gets_its_database_user_before_the_update_ends(program: Program) -> None:
    repo = load_repo(ROOT)
    job = program.one(JOB)
    spec = job.inputs["spec"]["template"]["spec"]
    grants = str(_env(spec["containers"][0], "GRANTS"))
    assert grants == grant_sql([database_user(s) for s in repo.services])
    database = program.one("aws:rds/instance:Instance")
    assert (
        _env(spec["containers"][0], "PGHOST")
        == f"{database.inputs['identifier']}.abcdefghijkl.eu-west-1.rds.amazonaws.com"
    )
    assert program.waits_for(job, database)
    policy = program.named("aws:iam/rolePolicy:RolePolicy", "database-users-role")
    assert program.waits_for(job, policy)
    for container in [*spec["initContainers"], *spec["containers"]]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True


def test_the_jobs_role_reads_the_master_secret_and_nothing_else(program: Program) -> None:
    role = program.named("aws:iam/role:Role", "database-users-role")
    namespace = load_repo(ROOT).environment(program.stack).argocd_namespace
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert trust["StringEquals"][f"{ISSUER.removeprefix('https://')}:sub"] == (
        f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
    )
    statements = json.loads(
        program.named("aws:iam/rolePolicy:RolePolicy", "database-users-role").inputs["policy"]
    )["Statement"]
    secret = next(s for s in statements if s["Action"] == "secretsmanager:GetSecretValue")
    assert secret["Resource"].endswith(":secret:rds!platform-" + program.stack + "-AbCdEf")
