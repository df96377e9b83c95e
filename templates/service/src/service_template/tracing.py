"""OpenTelemetry tracing configured by the standard OTEL_* variables the service chart sets.

The SDK reads them itself: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the resource),
OTEL_TRACES_SAMPLER(_ARG) (the sampler), OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT (the exporter).
Without an endpoint nothing is exported, but requests still get a trace id, or continue the
caller's from its ``traceparent``, so log lines correlate across services.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

# The exporter this service ships; the chart sets exactly this protocol.
PROTOCOL = "http/protobuf"


class TracingConfigError(ValueError):
    """An OTEL_* setting this service cannot honour: it refuses to start rather than drop
    every span silently."""


def tracer_provider() -> trace.TracerProvider:
    """The SDK's provider, exporting over OTLP when an endpoint is set (the no-op one when
    OTEL_SDK_DISABLED=true)."""
    environ = os.environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return trace.NoOpTracerProvider()
    provider = TracerProvider()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if endpoint:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", PROTOCOL
        )
        if protocol != PROTOCOL:
            raise TracingConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: set {PROTOCOL}"
            )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
