"""Errors that point at the fix: findings name the values file, line and key; schema errors
are in words; positions count from 1; an exception that matches nothing says why."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest

from platformctl.errors import InputError
from platformctl.model import Release, Repo, load_repo
from platformctl.policy.findings import Finding
from platformctl.policy.sources import CHECKOV_DOCS, ValueSources
from platformctl.render import Renderer
from platformctl.verify import verify
from tests.conftest import PROJECT_ROOT, edit_yaml, git

TODAY = dt.date(2026, 11, 22)
Cli = Callable[..., Any]
SCHEMA = PROJECT_ROOT / "charts/service/values.schema.json"


def first_release(model: Repo, **policy: bool) -> Release:
    """The model's first release in an environment whose policy has these settings."""
    return next(
        release
        for release in model.releases.values()
        if all(getattr(release.environment.policy, k) == v for k, v in policy.items())
    )


def line_of(path: Path, pattern: str) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if re.search(pattern, line))


def finding(report: Any, target: str, check: str) -> Finding:
    found: list[Finding] = [f for f in report.failing if (f.target, f.check) == (target, check)]
    assert found, [(f.target, f.check) for f in report.failing]
    return found[0]


def verify_one(repo: Path, release: Release) -> Any:
    return verify(
        load_repo(repo),
        [release.environment.name],
        [release.service],
        use_cache=False,
        today=TODAY,
    )


# --- 1. a finding names the values file, line and key -------------------------------------


def test_checkov_finding_names_the_environment_file_line_and_key(repo: Path) -> None:
    release = first_release(load_repo(repo))
    path = release.values_file
    edit_yaml(path, lambda data: data.__setitem__("runAsUser", 100))
    found = finding(verify_one(repo, release), release.key, "CKV_K8S_40")
    assert found.message.startswith(f"{path}:{line_of(path, r'^runAsUser:')}: runAsUser: ")
    assert found.message.endswith(f"(CKV_K8S_40: {CHECKOV_DOCS})")


def test_rule_finding_names_the_chart_default_that_sets_the_value(repo: Path) -> None:
    release = first_release(load_repo(repo), require_digest=True)
    for path in (release.values_file, release.base_file):
        edit_yaml(path, lambda data: (data.get("image") or {}).pop("digest", None))
    found = finding(verify_one(repo, release), release.key, "PLAT001")
    chart_values = repo / "charts/service/values.yaml"
    line = line_of(chart_values, r"^  digest:")
    assert found.message.startswith(f"{chart_values}:{line}: image.digest: container ")


def test_rule_finding_names_the_base_file_when_it_sets_the_value(repo: Path) -> None:
    release = first_release(load_repo(repo), allow_load_balancer=False)
    base = release.base_file
    values = release.values_file
    edit_yaml(values, lambda data: (data.get("service") or {}).pop("type", None))
    edit_yaml(base, lambda data: data.setdefault("service", {}).__setitem__("type", "LoadBalancer"))
    found = finding(verify_one(repo, release), release.key, "PLAT005")
    assert found.message.startswith(
        f"{base}:{line_of(base, r'^  type: LoadBalancer')}: service.type: "
    )


def test_no_single_value_adds_nothing(repo: Path) -> None:
    model = load_repo(repo)
    release = next(iter(model.releases.values()))
    sources = ValueSources(model.service_chart, model.releases.values())
    several = Finding(
        release.key,
        "PLAT004",
        "Deployment/x",
        "container 'x' lacks limits.cpu, livenessProbe",
        "project",
    )
    template = Finding(
        release.key, "PLAT006", "Deployment/x", "kind Deployment is not allowed", "project"
    )
    addon = Finding(
        f"{release.environment.name}/addons/x", "PLAT001", "Deployment/x", "not pinned", "project"
    )
    assert [sources.pointed(f) for f in (several, template, addon)] == [several, template, addon]


# --- 2. schema errors in words; 3. positions from 1 -----------------------------------------


def load_error(repo: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_repo(repo).releases  # noqa: B018 (reading them validates every values file)
    return str(caught.value)


def set_in_first_values(repo: Path, change: Any) -> Path:
    release = next(iter(load_repo(repo).releases.values()))
    path = release.values_file
    edit_yaml(path, change)
    return path


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (
            lambda d: d.setdefault("resources", {}).setdefault("limits", {}).update(memory="128MB"),
            "resources.limits.memory",
            "'128MB' is not a Kubernetes quantity; did you mean 128Mi?",
        ),
        (
            lambda d: d.setdefault("resources", {}).setdefault("requests", {}).update(memory="1Gb"),
            "resources.requests.memory",
            "'1Gb' is not a Kubernetes quantity; did you mean 1Gi?",
        ),
        (
            lambda d: d.setdefault("resources", {}).setdefault("limits", {}).update(cpu=None),
            "resources.limits.cpu",
            "expected a string or a number, got an empty value",
        ),
        (
            lambda d: d.setdefault("resources", {}).setdefault("limits", {}).update(cpu=[1]),
            "resources.limits.cpu",
            "expected a string or a number, got a list",
        ),
        (
            lambda d: d.setdefault("service", {}).update(type="LoadBalancr"),
            "service.type",
            "'LoadBalancr' is not one of 'ClusterIP', 'NodePort' or 'LoadBalancer'; "
            "did you mean 'LoadBalancer'?",
        ),
        (
            lambda d: (
                d.setdefault("networkPolicy", {})
                .setdefault("egressTo", {})
                .update(
                    cidrs=[
                        {"cidr": "10.0.0.0/16", "ports": [443]},
                        {"cidr": "10.0.0.0", "ports": [0]},
                    ]
                )
            ),
            "networkPolicy.egressTo.cidrs #2.",
            "is not",
        ),
    ],
)
def test_schema_errors_in_words(repo: Path, change: Any, key: str, reason: str) -> None:
    path = set_in_first_values(repo, change)
    message = load_error(repo)
    assert re.match(rf"{re.escape(str(path))}:\d+: {re.escape(key)}", message), message
    assert reason in message
    assert "None" not in message, message
    assert "^" not in message, message


def test_schema_names_defs_and_describes_every_property() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert {"quantity", "resourceList", "dnsLabel", "duration"} <= set(schema["$defs"])

    def properties(node: Any, at: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for name, child in (node.get("properties") or {}).items():
                yield f"{at}.{name}", child
            for key, child in node.items():
                if key != "description":
                    yield from properties(child, f"{at}.{key}")
        elif isinstance(node, list):
            for child in node:
                yield from properties(child, at)

    undescribed = [at for at, child in properties(schema) if not child.get("description")]
    assert not undescribed
    patterns = [n for _, n in properties(schema) if "pattern" in n and "title" not in n]
    assert not patterns, "every pattern has a title to explain it in words"


def test_the_repositorys_own_schemas_explain_every_pattern() -> None:
    for path in (PROJECT_ROOT / "src/platformctl/schemas").glob("*.schema.json"):

        def untitled(node: Any) -> Iterator[Any]:
            if isinstance(node, dict):
                if isinstance(node.get("pattern"), str) and "title" not in node:
                    yield node
                for child in node.values():
                    yield from untitled(child)
            elif isinstance(node, list):
                for child in node:
                    yield from untitled(child)

        assert not list(untitled(json.loads(path.read_text()))), path


def test_environment_file_errors_in_words(repo: Path) -> None:
    environment = next(iter(load_repo(repo).releases.values())).environment
    edit_yaml(
        environment.settings_file,
        lambda data: data["cluster"].__setitem__("kubernetesVersion", "1.3x"),
    )
    message = load_error(repo)
    assert "cluster.kubernetesVersion: '1.3x' is not a Kubernetes minor version such as 1.31" in (
        message
    )


def test_manifest_schema_findings_count_positions_from_one() -> None:
    from platformctl.schemas import SchemaValidator

    document = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "a", "image": "b", "ports": [{"containerPort": "80"}]}]},
    }
    (found,) = SchemaValidator("1.31").check(document)
    assert found.path == "spec.containers #1.ports #1.containerPort"
    assert found.message == "expected a whole number, got a string"


def test_helm_still_refuses_a_bad_quantity_through_the_ref() -> None:
    chart = helm_python.Chart.load(PROJECT_ROOT / "charts/service")
    with pytest.raises(helm_python.HelmValuesError, match="memory"):
        chart.render({"resources": {"limits": {"memory": "128MB"}}}, name="svc", namespace="a")


def test_schema_error_from_the_cli_is_one_line_exit_two(repo: Path, cli: Cli) -> None:
    set_in_first_values(
        repo, lambda d: d.setdefault("resources", {}).setdefault("limits", {}).update(memory="1GB")
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a bad quantity")
    before = git(repo, "status", "--porcelain")
    result = cli(repo, "verify")
    assert result.exit_code == 2
    assert "'1GB' is not a Kubernetes quantity; did you mean 1Gi?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert git(repo, "status", "--porcelain") == before


# --- 4. an exception that matches nothing says why ------------------------------------------


def test_unused_exceptions_say_why(repo: Path) -> None:
    model = load_repo(repo)
    release = next(iter(model.releases.values()))
    env, service = release.environment.name, release.service
    addon = next(
        job.name.split("/", 1)[1] for job in Renderer(model).addon_chart_jobs(release.environment)
    )
    entries = {
        "PLAT0O1": f"{env}/{service}",
        "CKV_K8S_8": f"{env}/{service}",
        "CKV_K8S_9": f"{env}x/{service}",
        "CKV_K8S_10": f"{env}/{service}x",
        "CKV_K8S_11": f"{env}/addons/{addon}x",
        "CKV_K8S_43": f"{env}/{service}",
    }

    def add(data: Any) -> None:
        for check, target in entries.items():
            data["exceptions"].append(
                {
                    "check": check,
                    "target": target,
                    "reason": "a test of why",
                    "expires": "2026-12-31",
                }
            )

    edit_yaml(repo / "environments/policy-exceptions.yaml", add)
    report = verify(load_repo(repo), [env], [service], use_cache=False, today=TODAY)
    why = {u.check: u.why for u in report.unused_exceptions if u.check in entries}
    assert why == {
        "PLAT0O1": "check PLAT0O1 does not exist (did you mean PLAT001?)",
        "CKV_K8S_8": f"CKV_K8S_8 no longer fires on {env}/{service}",
        "CKV_K8S_9": f"environment '{env}x' does not exist (did you mean {env}?)",
        "CKV_K8S_10": f"service '{service}x' does not exist in {env} (did you mean {service}?)",
        "CKV_K8S_11": f"add-on '{addon}x' does not exist in {env} (did you mean {addon}?)",
        "CKV_K8S_43": "check CKV_K8S_43 is not run: PLAT001 (digest required per environment) "
        "replaces it",
    }
    where = next(u.where for u in report.unused_exceptions if u.check == "PLAT0O1")
    assert re.search(r"policy-exceptions\.yaml:\d+: check PLAT0O1 does not exist", where)
