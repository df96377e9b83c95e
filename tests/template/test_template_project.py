"""The service template agrees with the chart that deploys it and with this repository's
lock: the values a team would otherwise have to keep in step by hand."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser
from service_template.app import HEALTH, METRICS, READY
from service_template.server import Settings
from service_template.tracing import PROTOCOL

from tests.chart.test_service_chart import one, render
from tests.conftest import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "templates/service"


def locked(path: Path) -> dict[str, str]:
    packages = tomllib.loads(path.read_text())["package"]
    return {p["name"]: p["version"] for p in packages if "version" in p}


def test_the_template_pins_what_this_repository_tests_it_with() -> None:
    ours = locked(PROJECT_ROOT / "uv.lock")
    pins = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in pins:
        name, _, version = pin.partition("==")
        assert ours.get(name) == version, f"{pin}: this repository's uv.lock has {ours.get(name)}"
    shared = {name: v for name, v in locked(TEMPLATE / "uv.lock").items() if name in ours}
    differ = {name: (v, ours[name]) for name, v in shared.items() if v != ours[name]}
    assert not differ, (
        f"templates/service/uv.lock differs from uv.lock: {differ}; "
        "in templates/service run: uv lock -P name==version"
    )


def pod(docs: list[Any]) -> Any:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def test_the_app_answers_where_the_chart_probes_and_scrapes() -> None:
    docs = render({"serviceMonitor": {"enabled": True}})
    container = pod(docs)["containers"][0]
    [port] = container["ports"]
    assert port["containerPort"] == Settings().port
    assert container["livenessProbe"]["httpGet"] == {"path": HEALTH, "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": READY, "port": port["name"]}
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], METRICS)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == PROTOCOL


def test_the_image_runs_as_the_charts_user_and_drains_within_its_grace_period() -> None:
    spec = pod(render())
    context = spec["securityContext"]
    dockerfile = DockerfileParser(str(TEMPLATE / "Dockerfile"))
    users = [i["value"] for i in dockerfile.structure if i["instruction"] == "USER"]
    assert users[-1] == f"{context['runAsUser']}:{context['runAsGroup']}"
    exposed = [i["value"] for i in dockerfile.structure if i["instruction"] == "EXPOSE"]
    assert exposed == [str(Settings().port)]
    # the root filesystem is read-only; /tmp is the one writable mount the image may rely on
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    # SIGTERM: drain, then finish in-flight requests, before the kubelet's SIGKILL
    settings = Settings()
    assert (
        settings.drain_seconds + settings.graceful_seconds < spec["terminationGracePeriodSeconds"]
    )


def test_checkov_finds_nothing_in_the_dockerfile_but_the_healthcheck_it_omits() -> None:
    """checkov's own dockerfile checks (non-root user, pinned tags, no apt upgrade, ...)."""
    from checkov.dockerfile.runner import Runner
    from checkov.runner_filter import RunnerFilter

    report = Runner().run(
        root_folder=None,
        files=[str(TEMPLATE / "Dockerfile")],
        runner_filter=RunnerFilter(framework=["dockerfile"]),
    )
    assert report.passed_checks
    # CKV_DOCKER_2 wants a HEALTHCHECK: Kubernetes ignores it; the kubelet's probes decide
    assert {check.check_id for check in report.failed_checks} == {"CKV_DOCKER_2"}
