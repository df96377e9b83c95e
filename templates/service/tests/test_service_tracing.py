"""Tracing from the chart's OTEL_* variables: spans reach an OTLP/HTTP receiver, decoded with
the OpenTelemetry protobuf definitions, carrying the chart's resource attributes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from service_testing import TEST_ROUTERS, running

from service_template.app import create_app
from service_template.tracing import TracingConfigError, tracer_provider

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP receiver on a loopback port: what the chart's collector Service listens as."""
    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def chart_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """The variables charts/service/templates/_helpers.tpl (service.otelEnv) sets."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.namespace=apps,service.version=1.2.3,deployment.environment.name=dev,"
        "k8s.namespace.name=apps,k8s.pod.name=orders-7d9f-abcde",
    )


def test_a_request_exports_a_server_span_continuing_the_callers_trace(
    monkeypatch: pytest.MonkeyPatch, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    url, received = collector
    chart_environment(monkeypatch, url)
    provider = tracer_provider()
    assert isinstance(provider, TracerProvider)
    with running(create_app(routers=TEST_ROUTERS, tracer_provider=provider)) as base:
        # sampled by the caller: parentbased_traceidratio keeps it whatever the ratio
        httpx.get(
            f"{base}/sleep",
            params={"seconds": 0},
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"},
        )
        httpx.get(f"{base}/healthz")
    provider.shutdown()
    spans = [
        (resource_spans.resource, span)
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    servers = [(r, s) for r, s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert len(servers) == 1  # the probe is not traced
    resource, span = servers[0]
    assert span.name == "GET /sleep"
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["service.name"] == "orders"
    assert attributes["deployment.environment.name"] == "dev"
    assert attributes["k8s.pod.name"] == "orders-7d9f-abcde"
    assert attributes["service.version"] == "1.2.3"


def test_an_unsampled_trace_is_not_exported(
    monkeypatch: pytest.MonkeyPatch, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    url, received = collector
    chart_environment(monkeypatch, url)
    provider = tracer_provider()
    assert isinstance(provider, TracerProvider)
    with running(create_app(routers=TEST_ROUTERS, tracer_provider=provider)) as base:
        httpx.get(base, headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-00"})
    provider.shutdown()
    assert received == []


def test_other_protocols_and_the_disabled_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    chart_environment(monkeypatch, "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(TracingConfigError, match="set http/protobuf"):
        tracer_provider()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(tracer_provider(), trace.NoOpTracerProvider)
