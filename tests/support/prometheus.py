"""A real Prometheus (Debian ``prometheus``) scraping a simulated service's HTTP metrics.

``Workload`` serves prometheus_client-style series (``http_requests_total`` by status and the
``http_request_duration_seconds`` histogram) with the ``namespace`` and ``service`` labels the
service chart's ServiceMonitor gives them. Counters are integrated over time from the state a
test sets (requests per second, error ratio, latency), so they stay monotonic when it changes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.components import free_port, require, running
from tests.support.http import Request, serve

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCRAPE_SECONDS = 1


@dataclass
class Traffic:
    per_second: float
    error_ratio: float
    latency: float  # every request takes this long (seconds)
    ok: float = 0.0
    errors: float = 0.0
    duration_sum: float = 0.0
    last: float = field(default_factory=time.monotonic)

    def advance(self, now: float) -> None:
        requests = self.per_second * (now - self.last)
        self.errors += requests * self.error_ratio
        self.ok += requests * (1 - self.error_ratio)
        self.duration_sum += requests * self.latency
        self.last = now


class Workload:
    def __init__(self, namespace: str = "apps") -> None:
        self.namespace = namespace
        self.services: dict[str, Traffic] = {}
        self.lock = threading.Lock()

    def set(self, service: str, per_second: float, error_ratio: float, latency: float) -> None:
        with self.lock:
            now = time.monotonic()
            current = self.services.get(service)
            if current is None:
                self.services[service] = Traffic(per_second, error_ratio, latency, last=now)
                return
            current.advance(now)
            current.per_second, current.error_ratio, current.latency = (
                per_second,
                error_ratio,
                latency,
            )

    def exposition(self) -> str:
        lines = [
            "# TYPE http_requests_total counter",
            "# TYPE http_request_duration_seconds histogram",
        ]
        with self.lock:
            now = time.monotonic()
            for service, traffic in sorted(self.services.items()):
                traffic.advance(now)
                labels = f'namespace="{self.namespace}",service="{service}"'
                lines.append(f'http_requests_total{{{labels},status="200"}} {traffic.ok:.3f}')
                lines.append(f'http_requests_total{{{labels},status="500"}} {traffic.errors:.3f}')
                total = traffic.ok + traffic.errors
                for bound in BUCKETS:
                    count = total if traffic.latency <= bound else 0.0
                    lines.append(
                        f'http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count:.3f}'
                    )
                lines.append(
                    f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total:.3f}'
                )
                lines.append(f"http_request_duration_seconds_count{{{labels}}} {total:.3f}")
                lines.append(
                    f"http_request_duration_seconds_sum{{{labels}}} {traffic.duration_sum:.3f}"
                )
        return "\n".join(lines) + "\n"


@dataclass
class RunningPrometheus:
    url: str
    workload: Workload


@contextmanager
def prometheus_scraping(
    folder: Path,
    scrape_configs: list[dict[str, Any]],
    rule_files: Sequence[Path] = (),
    flags: Sequence[str] = (),
) -> Iterator[str]:
    """A real Prometheus on a loopback port, scraping every ``SCRAPE_SECONDS`` and evaluating
    ``rule_files`` every second, with ``flags`` besides (its retention, say); yields its URL."""
    binary = require("prometheus", "prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "1s"},
        "scrape_configs": scrape_configs,
        "rule_files": [str(path) for path in rule_files],
    }
    config_path = folder / "prometheus.yml"
    config_path.write_text(json.dumps(config))
    command = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *flags,
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/-/ready", folder / "prometheus.log"):
        yield url


@contextmanager
def start_prometheus(
    folder: Path, workload: Workload, rule_files: Sequence[Path] = (), retention: str | None = None
) -> Iterator[RunningPrometheus]:
    """Prometheus scraping ``workload``, keeping samples for ``retention`` (its own default,
    15d, unless given)."""

    def metrics(request: Request) -> tuple[int, str]:
        return (200, workload.exposition()) if request.path == "/metrics" else (404, "")

    with serve(metrics) as target:
        services = {
            "job_name": "services",
            "honor_labels": True,
            "static_configs": [{"targets": [target.removeprefix("http://")]}],
        }
        kept = [f"--storage.tsdb.retention.time={retention}"] if retention else []
        with prometheus_scraping(folder, [services], rule_files, kept) as url:
            yield RunningPrometheus(url, workload)
