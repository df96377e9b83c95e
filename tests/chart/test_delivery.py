"""Delivery strategies and observability of the service chart: each strategy renders, the
analysis measures the service's own series exactly as the slo gate does, and the alerts are
valid PromQL that fire on bad metrics (checked by promtool, Prometheus' own rule tester)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from string import Template

import helm_python
import pytest
import yaml

from platformctl.gates.config import DEFAULT_OBJECTIVES
from tests.chart.test_service_chart import EVERYTHING, NAME, kinds, one, render
from tests.support.components import require

CANARY = {"delivery": {"strategy": "canary"}}
BLUE_GREEN = {"delivery": {"strategy": "blueGreen"}}


def test_rolling_is_a_deployment_and_nothing_of_argo_rollouts() -> None:
    docs = render()
    assert "Deployment" in kinds(docs)
    assert not {"Rollout", "AnalysisTemplate"} & set(kinds(docs))


@pytest.mark.parametrize("strategy", ["canary", "blueGreen"])
def test_progressive_strategies_replace_the_deployment_with_the_same_pods(strategy: str) -> None:
    rolling = one(render(EVERYTHING), "Deployment")
    docs = render({**EVERYTHING, "delivery": {"strategy": strategy}})
    assert "Deployment" not in kinds(docs)
    rollout = one(docs, "Rollout")
    assert rollout["spec"]["template"] == rolling["spec"]["template"]
    assert rollout["spec"]["selector"] == rolling["spec"]["selector"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": NAME,
    }


def test_canary_steps_weights_and_runs_the_analysis_from_the_first_pause() -> None:
    rollout = one(
        render({"delivery": {"strategy": "canary", "canary": {"weights": [5, 50]}}}), "Rollout"
    )
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["steps"] == [
        {"setWeight": 5},
        {"pause": {"duration": "120s"}},
        {"setWeight": 50},
        {"pause": {"duration": "120s"}},
    ]
    analysis = canary["analysis"]
    assert analysis["startingStep"] == 1
    assert analysis["templates"] == [{"templateName": NAME}]
    assert analysis["args"] == [
        {"name": "pod-template-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}
    ]


def test_blue_green_keeps_the_old_pods_through_the_analysis_after_the_switch() -> None:
    docs = render(BLUE_GREEN)
    blue_green = one(docs, "Rollout")["spec"]["strategy"]["blueGreen"]
    assert blue_green["activeService"] == one(docs, "Service")["metadata"]["name"]
    assert blue_green["postPromotionAnalysis"]["templates"] == [{"templateName": NAME}]
    metrics = one(docs, "AnalysisTemplate")["spec"]["metrics"]
    assert all(metric["count"] == 5 for metric in metrics)
    # the analysis lasts count x interval = 300 s; the old pods stay 600 s
    assert blue_green["scaleDownDelaySeconds"] >= 300
    with pytest.raises(helm_python.HelmError, match="must cover the analysis"):
        render({"delivery": {"strategy": "blueGreen", "blueGreen": {"scaleDownDelaySeconds": 60}}})


def test_the_analysis_asks_the_slo_gates_questions_of_the_new_pods_only() -> None:
    metrics = {m["name"]: m for m in one(render(CANARY), "AnalysisTemplate")["spec"]["metrics"]}
    names = {"namespace": "apps", "service": NAME, "environment": "dev", "window": "120s"}
    for objective in DEFAULT_OBJECTIVES:
        metric = metrics[objective.name]
        query = metric["provider"]["prometheus"]["query"]
        gate_query = Template(objective.query).substitute(names)
        hash_filter = ', rollouts_pod_template_hash="{{args.pod-template-hash}}"'
        if objective.name == "throughput":
            assert hash_filter not in query  # the whole service's traffic
        else:
            assert query.count(hash_filter) >= 1
        assert query.replace(hash_filter, "") == gate_query
        sign = "<" if objective.below else ">"
        assert metric["successCondition"] == (
            f"len(result) == 1 && result[0] {sign} {objective.threshold:g}"
        )
        assert metric["failureLimit"] == 1


def test_the_service_monitor_labels_series_with_the_rollouts_pod_hash() -> None:
    monitor = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert monitor["spec"]["podTargetLabels"] == ["rollouts-pod-template-hash"]


def test_pods_send_traces_to_the_collector_with_resource_attributes() -> None:
    docs = render()
    env = {
        e["name"]: e
        for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == (
        "http://opentelemetry-collector.observability.svc:4318"
    )
    attributes = dict(
        item.split("=", 1) for item in env["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(",")
    )
    assert attributes["deployment.environment.name"] == "dev"
    assert attributes["k8s.cluster.name"] == "platform-dev"
    assert attributes["service.version"] == "$(SERVICE_VERSION)"
    assert env["SERVICE_VERSION"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['app.kubernetes.io/version']"
    )
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    assert {
        "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
        ],
        "ports": [{"port": 4318, "protocol": "TCP"}],
    } in egress
    assert (
        "env"
        not in one(render({"tracing": {"enabled": False}}), "Deployment")["spec"]["template"][
            "spec"
        ]["containers"][0]
    )


def test_the_dashboard_is_grafana_json_for_this_service() -> None:
    config = one(
        [
            d
            for d in render({"dashboard": {"enabled": True}})
            if d["metadata"]["name"].endswith("-dashboard")
        ],
        "ConfigMap",
    )
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"][f"{NAME}.json"])
    constants = {v["name"]: v.get("query") for v in dashboard["templating"]["list"]}
    assert constants["service"] == NAME
    assert constants["namespace"] == "apps"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_secrets_come_from_the_services_own_secret_with_its_own_role() -> None:
    docs = render(EVERYTHING)
    store = one(docs, "SecretStore")["spec"]["provider"]["aws"]
    assert (
        store["auth"]["jwt"]["serviceAccountRef"]["name"]
        == one(docs, "ServiceAccount")["metadata"]["name"]
    )
    assert store["region"] == "eu-west-1"
    external = one(docs, "ExternalSecret")["spec"]
    # with the fields the CRD defaults written out (see tests/twin: drift)
    defaults = {
        "conversionStrategy": "Default",
        "decodingStrategy": "None",
        "metadataPolicy": "None",
    }
    assert external["dataFrom"] == [{"extract": {"key": f"platform-dev/{NAME}", **defaults}}]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert {
        "name": "secrets",
        "secret": {"secretName": NAME, "defaultMode": 0o400},
    } in pod["volumes"]
    with pytest.raises(helm_python.HelmError, match=r"needs serviceAccount\.roleArn"):
        render({"secrets": {"enabled": True}})


def test_alerts_need_the_scraped_series() -> None:
    with pytest.raises(helm_python.HelmError, match=r"needs serviceMonitor\.enabled"):
        render({"alerts": {"enabled": True}})


def _rule_file(tmp_path: Path) -> Path:
    rule = one(
        render({"serviceMonitor": {"enabled": True}, "alerts": {"enabled": True}}), "PrometheusRule"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool", "prometheus"), *args], capture_output=True, text=True, check=False
    )


def test_the_alert_rules_are_valid_prometheus_rules(tmp_path: Path) -> None:
    result = _promtool("check", "rules", str(_rule_file(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def _series(per_minute: int, errors_per_minute: int, slow: bool) -> list[dict[str, str]]:
    labels = f'namespace="apps", service="{NAME}"'
    fast_bucket = 0 if slow else per_minute
    return [
        {"series": f"up{{{labels}}}", "values": "1+0x120"},
        {
            "series": f'http_requests_total{{{labels}, status="200"}}',
            "values": f"0+{per_minute - errors_per_minute}x120",
        },
        {
            "series": f'http_requests_total{{{labels}, status="500"}}',
            "values": f"0+{errors_per_minute}x120",
        },
        {
            "series": f'http_request_duration_seconds_bucket{{{labels}, le="0.1"}}',
            "values": f"0+{fast_bucket}x120",
        },
        {
            "series": f'http_request_duration_seconds_bucket{{{labels}, le="0.5"}}',
            "values": f"0+{per_minute}x120",
        },
        {
            "series": f'http_request_duration_seconds_bucket{{{labels}, le="+Inf"}}',
            "values": f"0+{per_minute}x120",
        },
    ]


def fired(alert: str, severity: str, summary: str, description: str) -> dict[str, object]:
    labels = {"severity": severity, "service": NAME}
    annotations = {"summary": summary, "description": description}
    return {
        "eval_time": "90m",
        "alertname": alert,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
    }


def test_burn_rate_and_latency_alerts_fire_on_bad_metrics_only(tmp_path: Path) -> None:
    rules = _rule_file(tmp_path)
    good = _series(per_minute=1200, errors_per_minute=2, slow=False)
    bad = _series(per_minute=1200, errors_per_minute=300, slow=True)
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": good,
                "alert_rule_test": [
                    {"eval_time": "90m", "alertname": name, "exp_alerts": []}
                    for name in (
                        "ErrorBudgetBurnCritical",
                        "ErrorRatioAboveObjective",
                        "LatencyP95AboveObjective",
                        "Unavailable",
                    )
                ],
            },
            {
                "interval": "1m",
                "input_series": bad,
                "alert_rule_test": [
                    fired(
                        "ErrorBudgetBurnCritical",
                        "critical",
                        f"{NAME} burns its error budget 14.4x too fast",
                        "Error ratio above 14.4x the objective over both 1h and 5m.",
                    ),
                    fired(
                        "ErrorRatioAboveObjective",
                        "warning",
                        f"{NAME} answers more than 0.01 of requests with 5xx",
                        "Error ratio over 5 minutes is 25%.",
                    ),
                    fired(
                        "LatencyP95AboveObjective",
                        "warning",
                        f"{NAME} p95 latency is above 0.2s",
                        "p95 latency over 5 minutes is 480ms.",
                    ),
                ],
            },
        ],
    }
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
