"""The application: the probes and the metrics endpoint the chart expects, and your routes.

Add routes to ``api`` (an APIRouter); everything else here is the platform's contract:
``/healthz`` and ``/readyz`` are the chart's liveness and readiness probes, ``/metrics`` is
what its ServiceMonitor scrapes, all on the one container port (``containerPort``, 8000).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import Scope

from service_template.metrics import HttpMetrics, MetricsMiddleware

HEALTH, READY, METRICS = "/healthz", "/readyz", "/metrics"
# Not traffic: counting them would flatter the latency and error-ratio objectives.
PLATFORM_ROUTES = frozenset({HEALTH, READY, METRICS})

api = APIRouter()


@api.get("/")
def index() -> dict[str, str]:
    """An example route: replace it with the service's own."""
    return {"status": "ok"}


@dataclass
class Lifecycle:
    """Ready once startup is done, not ready again from SIGTERM on (see server.py)."""

    ready: bool = False


def create_app(
    *,
    routers: tuple[APIRouter, ...] = (api,),
    lifecycle: Lifecycle | None = None,
    metrics: HttpMetrics | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> FastAPI:
    state = lifecycle or Lifecycle()
    measured = metrics or HttpMetrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Open connection pools and warm caches here, before the first readiness probe passes.
        state.ready = True
        yield
        state.ready = False
        if isinstance(tracer_provider, TracerProvider):
            # uvicorn ends the process with the SIGTERM it caught: send the batched spans now
            tracer_provider.force_flush()

    def unobserved(scope: Scope) -> bool:
        return scope.get("path") in PLATFORM_ROUTES

    # FastAPI's own OpenTelemetry instrumentation: a server span per request, named by route,
    # continuing the caller's trace (W3C traceparent); probes and scrapes are not traced.
    telemetry: TelemetryConfig = {"exclude": unobserved, "metrics": False}
    if tracer_provider is not None:
        telemetry["tracer_provider"] = tracer_provider
    app = FastAPI(
        lifespan=lifespan, telemetry=telemetry, openapi_url=None, docs_url=None, redoc_url=None
    )
    for router in routers:
        app.include_router(router)

    @app.get(HEALTH, include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness: the event loop answers. Never checks dependencies (a restart cannot fix
        a database outage, and restarting every pod at once makes it worse)."""
        return {"status": "alive"}

    @app.get(READY, include_in_schema=False)
    def readyz() -> JSONResponse:
        """Readiness: fails while starting and while draining, so no new traffic arrives."""
        ready = state.ready
        return JSONResponse({"status": "ready" if ready else "draining"}, 200 if ready else 503)

    app.add_api_route(METRICS, measured.endpoint, methods=["GET"], include_in_schema=False)
    # Inside the request's span (FastAPI opens it around the middleware stack).
    app.add_middleware(MetricsMiddleware, metrics=measured, excluded=PLATFORM_ROUTES)
    return app
