"""uvicorn with the shutdown Kubernetes needs: on SIGTERM the pod stays up while it drains.

Kubernetes sends SIGTERM and removes the pod from the Service's endpoints at the same time;
load balancers and kube-proxy learn of it a few seconds later. So readiness fails at once,
requests keep being served for ``drain_seconds``, then uvicorn stops accepting and lets the
requests in flight finish (up to ``graceful_seconds``). Both together stay below the chart's
terminationGracePeriodSeconds (30 s), after which the kubelet kills the process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType

import uvicorn
from fastapi import APIRouter
from opentelemetry import trace
from starlette.types import ASGIApp

from service_template.app import Lifecycle, api, create_app
from service_template.logs import configure_logging
from service_template.tracing import tracer_provider

log = logging.getLogger("service_template")


@dataclass(frozen=True)
class Settings:
    """From the environment (the chart's ConfigMap); the defaults fit the chart's."""

    port: int = 8000
    drain_seconds: float = 5.0
    graceful_seconds: int = 20
    log_level: str = "info"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            port=int(env.get("PORT", cls.port)),
            drain_seconds=float(env.get("SHUTDOWN_DRAIN_SECONDS", cls.drain_seconds)),
            graceful_seconds=int(env.get("SHUTDOWN_GRACEFUL_SECONDS", cls.graceful_seconds)),
            log_level=env.get("LOG_LEVEL", cls.log_level),
        )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float):
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first SIGTERM of a ready server starts the drain; any other signal (or a
        second SIGTERM) goes to uvicorn at once."""
        if sig != signal.SIGTERM or not self.lifecycle.ready or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self.lifecycle.ready = False
        log.info("SIGTERM: not ready, draining for %gs", self.drain_seconds)
        timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()


def serve(settings: Settings, lifecycle: Lifecycle, app: ASGIApp) -> None:
    """Run ``app`` until SIGTERM/SIGINT; one process per pod (scale with replicas)."""
    config = uvicorn.Config(
        app,
        host="0.0.0.0",  # noqa: S104 - the pod's port, reached through its Service
        port=settings.port,
        log_config=None,
        access_log=False,  # MetricsMiddleware writes the access log, with trace ids
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_seconds,
    )
    DrainingServer(config, lifecycle, settings.drain_seconds).run()


def main(routers: tuple[APIRouter, ...] = (api,)) -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    provider = tracer_provider()
    trace.set_tracer_provider(provider)
    lifecycle = Lifecycle()
    app = create_app(routers=routers, lifecycle=lifecycle, tracer_provider=provider)
    serve(settings, lifecycle, app)
