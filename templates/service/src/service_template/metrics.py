"""The request metrics the platform's gates read (names, labels and buckets are a contract).

The ``slo`` gate (platformctl's DEFAULT_OBJECTIVES), the chart's AnalysisTemplate and its
PrometheusRule query ``http_requests_total`` by ``status`` and the buckets of
``http_request_duration_seconds``; Prometheus adds ``namespace``, ``service`` and ``pod`` from
the ServiceMonitor, so the service must not export labels of those names itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# 0.2 s is a bucket boundary, so "p95 < 200 ms" is read off a bucket, not interpolated across
# (0.1, 0.5] as with prometheus_client's defaults; the neighbours give resolution around it.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
LABELS = ("method", "route", "status")
# Requests that match no route share one label value: paths would make unbounded series.
UNMATCHED = "unmatched"

access_log = logging.getLogger("service_template.access")


class HttpMetrics:
    """The service's own registry: one per app, so several apps can run in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template and status code.",
            LABELS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from receiving a request to the end of its response.",
            LABELS,
            buckets=BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.duration.labels(*labels).observe(seconds)

    def endpoint(self, _request: Request) -> Response:
        """The text exposition format Prometheus scrapes."""
        return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4")


def route_of(scope: Scope) -> str:
    """The matched route's template (``/items/{item_id}``), set in the scope by the router."""
    route = scope.get("route")
    path = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Counts and times every request but the excluded routes (probes, scrapes), writes one
    access log line per request inside its trace span, and answers an unhandled exception
    with a 500 itself: logged once with its trace id, and the connection stays open (uvicorn
    closes a keep-alive connection under the next request when the exception reaches it).

    Plain ASGI rather than BaseHTTPMiddleware: the duration covers the streamed body.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, excluded: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.excluded = frozenset(excluded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        failure: Exception | None = None
        try:
            await self.app(scope, receive, send_status)
        except Exception as error:
            failure = error
            if status is not None:
                raise  # the response is under way: only the server can end it
            await PlainTextResponse("Internal Server Error", 500)(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - start
            route = route_of(scope)
            answered = 500 if status is None else status
            if route not in self.excluded:
                self.metrics.observe(scope["method"], route, answered, seconds)
                access_log.log(
                    logging.ERROR if answered >= 500 else logging.INFO,
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    answered,
                    exc_info=failure,
                    extra={"route": route, "status": answered, "duration_ms": seconds * 1000},
                )
