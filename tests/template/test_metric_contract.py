"""The metric contract end to end: the service template's own app, scraped by a real
Prometheus the way the chart's ServiceMonitor has it scraped, answers the ``slo`` gate's
queries and the chart's AnalysisTemplate queries with what known traffic made them.

Two pods of one service: a stable one (good traffic) and a canary (slow and failing). The gate
measures the whole service, the analysis the canary's pods only, by their pod-template hash.

Exact values, not approximations: each series exists at zero before its traffic and every
query is evaluated at the timestamp of its pod's last scrape. Prometheus then has nothing to
extrapolate (a counter that starts at 0 is not extended before its first sample, a range
that ends on a sample not after it), so rate() over a window is increase / window.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_template.app import create_app
from service_template.metrics import BUCKETS, HttpMetrics
from service_testing import TEST_ROUTERS, running

from platformctl.gates.config import SloGate
from platformctl.gates.health import check_slo, slo_queries
from platformctl.gates.results import Verdict
from platformctl.model import Endpoint, Release, load_repo
from platformctl.prometheus import Prometheus
from platformctl.render import Renderer
from tests.conftest import edit_yaml
from tests.release.fleet import make_fleet
from tests.support.prometheus import prometheus_scraping

SERVICE = "orders"
WINDOW = 30  # the chart's smallest analysis window (values.schema.json); the gate's too
SLOW = 0.205  # seconds: above the 0.2 boundary, well within the bucket above it
HASH_LABEL = "{{args.pod-template-hash}}"  # what Argo Rollouts substitutes in the query


@dataclass(frozen=True)
class Traffic:
    fast: int
    slow: int
    errors: int

    @property
    def total(self) -> int:
        return self.fast + self.slow + self.errors

    def paths(self) -> list[tuple[str, int]]:
        return (
            [("/", 200)] * self.fast
            + [(f"/sleep?seconds={SLOW}", 200)] * self.slow
            + [("/fail", 500)] * self.errors
        )


STABLE = Traffic(fast=194, slow=5, errors=1)  # 2.5 % slow, 0.5 % errors
CANARY = Traffic(fast=80, slow=15, errors=5)  # 15 % slow, 5 % errors


@dataclass(frozen=True)
class Pod:
    name: str
    template_hash: str
    url: str
    metrics: HttpMetrics


def zeroed() -> HttpMetrics:
    """The app's metrics with the series the traffic will touch already at zero."""
    metrics = HttpMetrics()
    for route, status in (("/", "200"), ("/sleep", "200"), ("/fail", "500")):
        labels = {"method": "GET", "route": route, "status": status}
        metrics.requests.labels(**labels)
        metrics.duration.labels(**labels)
    return metrics


def service_monitor_scrape(monitor: dict[str, Any], pod: Pod, namespace: str) -> dict[str, Any]:
    """What the Prometheus Operator makes of the rendered ServiceMonitor for one pod: its
    target labels (namespace, service, pod, the podTargetLabels sanitised), the endpoint's
    path, no honor_labels. Every second instead of the chart's 30 s, to keep the test short."""
    endpoint = monitor["spec"]["endpoints"][0]
    pod_labels = {"rollouts-pod-template-hash": pod.template_hash}
    labels = {
        "namespace": namespace,
        "service": SERVICE,
        "pod": pod.name,
        "container": SERVICE,
        "endpoint": endpoint["port"],
        **{k.replace("-", "_"): pod_labels[k] for k in monitor["spec"]["podTargetLabels"]},
    }
    return {
        "job_name": f"{pod.name}",
        "honor_labels": False,
        "metrics_path": endpoint["path"],
        "static_configs": [{"targets": [pod.url.removeprefix("http://")], "labels": labels}],
    }


@pytest.fixture
def release(tmp_path: Path) -> Release:
    """A fixture repository whose last stage runs the service as a canary with a
    ServiceMonitor, its analysis over ``WINDOW``."""
    fleet = make_fleet(tmp_path / "repo", [SERVICE])
    stage = fleet.stages[-1]

    def canary(values: Any) -> None:
        values["serviceMonitor"] = {"enabled": True}
        values["delivery"] = {"strategy": "canary", "analysis": {"windowSeconds": WINDOW}}

    edit_yaml(fleet.values(stage, SERVICE), canary)
    return load_repo(fleet.root).release(SERVICE, stage)


def rendered(release: Release, kind: str) -> dict[str, Any]:
    """The release's object of ``kind``, as the repository renders it for Argo CD."""
    renderer = Renderer(load_repo(release.base_file.parents[2]))
    documents = renderer.render(renderer.release_job(release)).documents
    [document] = [d for d in documents if d["kind"] == kind]
    return document


def drive(pod: Pod, traffic: Traffic) -> None:
    with httpx.Client(base_url=pod.url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        answered = list(
            pool.map(lambda item: (client.get(item[0]).status_code, item[1]), traffic.paths())
        )
    assert all(got == expected for got, expected in answered)


def wait_for(check: Callable[[], float | None], what: str) -> float:
    """Poll Prometheus (bounded) until ``check`` gives a value."""
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    while dt.datetime.now(dt.UTC) < deadline:
        value = check()
        if value is not None:
            return value
        threading.Event().wait(0.2)  # a fifth of the scrape interval
    raise AssertionError(f"Prometheus never showed {what}")


def scraped(prometheus: Prometheus, pod: Pod, requests: int) -> dt.datetime:
    """The time of the first scrape of ``pod`` that counted ``requests`` requests."""
    selector = f'{{pod="{pod.name}"}}'

    def last_scrape() -> float | None:
        total = prometheus.value(f"sum(http_requests_total{selector})")
        if total != requests:
            return None
        return prometheus.value(f"max(timestamp(http_requests_total{selector}))")

    at = wait_for(last_scrape, f"{requests} requests of {pod.name}")
    return dt.datetime.fromtimestamp(at, dt.UTC)


@pytest.fixture
def pods() -> Iterator[tuple[Pod, Pod]]:
    with ExitStack() as stack:
        metrics = [zeroed() for _ in range(2)]
        urls = [
            stack.enter_context(running(create_app(routers=TEST_ROUTERS, metrics=each)))
            for each in metrics
        ]
        yield (
            Pod(f"{SERVICE}-5d8f7c9b4-stbl1", "5d8f7c9b4", urls[0], metrics[0]),
            Pod(f"{SERVICE}-6c4b8d7f5-cnry2", "6c4b8d7f5", urls[1], metrics[1]),
        )


def bucket_quantile(quantile: float, metrics: HttpMetrics) -> float:
    """histogram_quantile as Prometheus computes it (linear within the bucket the rank falls
    in), over the buckets the pod itself counted. The boundaries a request lands between depend
    on how long it really took, which a loaded machine stretches; the counts say where it went."""
    name = "http_request_duration_seconds_bucket"
    counts = [
        sum(
            sample.value
            for family in metrics.registry.collect()
            for sample in family.samples
            if sample.name == name and float(sample.labels["le"]) == bound
        )
        for bound in BUCKETS
    ]
    rank = quantile * sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "http_request_duration_seconds_count"
    )
    lower, below = 0.0, 0.0
    for bound, count in zip(BUCKETS, counts, strict=True):
        if count >= rank:
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    raise AssertionError(f"the {quantile} quantile lies above the last bucket")


def test_gate_and_analysis_measure_what_the_traffic_did(
    tmp_path: Path, release: Release, pods: tuple[Pod, Pod]
) -> None:
    stable, canary = pods
    monitor = rendered(release, "ServiceMonitor")
    analysis = {m["name"]: m for m in rendered(release, "AnalysisTemplate")["spec"]["metrics"]}
    namespace = release.environment.namespace
    scrapes = [service_monitor_scrape(monitor, pod, namespace) for pod in pods]
    with prometheus_scraping(tmp_path / "prometheus", scrapes) as url:
        prometheus = Prometheus(Endpoint(url))
        for pod in pods:  # every series at zero before any traffic
            scraped(prometheus, pod, 0)

        def analysed(pod: Pod, at: dt.datetime) -> dict[str, float | None]:
            return {
                name: prometheus.value(
                    metric["provider"]["prometheus"]["query"].replace(
                        HASH_LABEL, pod.template_hash
                    ),
                    at=at,
                )
                for name, metric in analysis.items()
            }

        drive(stable, STABLE)
        at = scraped(prometheus, stable, STABLE.total)
        gate = SloGate(dt.timedelta(seconds=WINDOW))
        measured = {o.name: prometheus.value(q, at=at) for o, q in slo_queries(gate, release)}
        results = check_slo(prometheus, gate, release, at)
        verdicts = {o.name: r.verdict for o, r in zip(gate.objectives, results, strict=True)}
        stable_analysis = analysed(stable, at)

        drive(canary, CANARY)
        canary_at = scraped(prometheus, canary, CANARY.total)
        canary_analysis = analysed(canary, canary_at)

    # 97.5 % of the stable pod's requests took under 200 ms: its p95 is below the boundary
    p95 = measured["p95-latency"]
    assert p95 is not None
    assert p95 < 0.2
    assert measured["error-ratio"] == pytest.approx(STABLE.errors / STABLE.total)
    assert measured["throughput"] == pytest.approx(STABLE.total / WINDOW * 60)
    assert verdicts == {
        "p95-latency": Verdict.passed,
        "error-ratio": Verdict.passed,
        "throughput": Verdict.failed,  # 400/min: below the objective's 1000/min
    }
    # the analysis asks the same of the stable pods' hash (the canary had no traffic yet)
    assert stable_analysis == pytest.approx(measured)
    # the canary: 85 of 100 requests under 200 ms and 15 slower, so its 95th lies above the
    # boundary; on an idle machine at 0.2 + width * (95 - 85) / 15, in the bucket above it
    assert canary_analysis["p95-latency"] == pytest.approx(bucket_quantile(0.95, canary.metrics))
    assert bucket_quantile(0.95, canary.metrics) > 0.2
    assert canary_analysis["error-ratio"] == pytest.approx(CANARY.errors / CANARY.total)
