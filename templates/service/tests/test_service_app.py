"""The probes, the metrics and the logs, through a real uvicorn."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from service_testing import TEST_ROUTERS, running

from service_template.app import Lifecycle, create_app
from service_template.logs import configure_logging
from service_template.metrics import BUCKETS, UNMATCHED
from service_template.tracing import tracer_provider

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def samples(base: str, name: str) -> list[Sample]:
    text = httpx.get(f"{base}/metrics").text
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_probes_follow_the_lifecycle() -> None:
    lifecycle = Lifecycle()
    with running(create_app(routers=TEST_ROUTERS, lifecycle=lifecycle)) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
        lifecycle.ready = False  # what SIGTERM does (test_service_shutdown.py)
        ready = httpx.get(f"{base}/readyz")
        assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
        assert httpx.get(f"{base}/healthz").status_code == 200
    assert not lifecycle.ready


def test_requests_are_counted_by_route_template_method_and_status() -> None:
    with running(create_app(routers=TEST_ROUTERS)) as base, httpx.Client(base_url=base) as client:
        # one keep-alive connection: a request that raised does not close it under the next
        answered = [
            client.get(path).status_code
            for path in ("/", "/fail", "/", "/nowhere/42", "/healthz", "/readyz")
        ]
        assert answered == [200, 500, 200, 404, 200, 200]
        counts = {
            (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for s in samples(base, "http_requests_total")
        }
    # probes and scrapes are not traffic: they would flatter the latency and error objectives
    assert counts == {
        ("GET", "/", "200"): 2,
        ("GET", "/fail", "500"): 1,
        ("GET", UNMATCHED, "404"): 1,
    }


def test_latency_buckets_put_200_ms_on_a_boundary() -> None:
    assert 0.2 in BUCKETS
    with running(create_app(routers=TEST_ROUTERS)) as base:
        httpx.get(f"{base}/sleep", params={"seconds": 0.21})
        httpx.get(f"{base}/sleep", params={"seconds": 0})
        buckets = {
            s.labels["le"]: s.value
            for s in samples(base, "http_request_duration_seconds_bucket")
            if s.labels["route"] == "/sleep"
        }
    assert [float(le) for le in buckets] == [*BUCKETS, float("inf")]
    assert buckets["0.2"] == 1  # the quick one; the 210 ms one is above the boundary
    assert buckets["+Inf"] == 2


def test_no_series_carries_a_label_prometheus_sets_from_the_target() -> None:
    with running(create_app(routers=TEST_ROUTERS)) as base:
        httpx.get(base)
        text = httpx.get(f"{base}/metrics").text
    labels = {
        name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for name in sample.labels
    }
    # the ServiceMonitor sets these; an exported one would become exported_namespace & co.
    assert not labels & {"namespace", "service", "pod", "job", "instance", "container"}


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    stream = io.StringIO()
    configure_logging("info", stream)
    yield stream
    logging.getLogger().handlers.clear()


def test_logs_are_one_json_object_per_line_with_the_callers_trace(
    log_lines: io.StringIO,
) -> None:
    # as in main(): the SDK without an exporter (no OTLP endpoint set)
    app = create_app(routers=TEST_ROUTERS, tracer_provider=tracer_provider())
    with running(app) as base:
        httpx.get(base, headers={"traceparent": TRACEPARENT})
        httpx.get(f"{base}/fail")
    records = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "service_template.access"]
    assert [(r["route"], r["status"], r["level"]) for r in access] == [
        ("/", 200, "info"),
        ("/fail", 500, "error"),
    ]
    assert access[0]["trace_id"] == TRACE_ID
    assert access[1]["trace_id"] != TRACE_ID  # a request without a caller starts a trace
    assert "RuntimeError: boom" in access[1]["exception"]
    # logged once, by the middleware that answered it; uvicorn's own lines are JSON too
    assert [r for r in records if "exception" in r] == [access[1]]
    assert "uvicorn.error" in {r["logger"] for r in records}
