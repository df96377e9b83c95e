"""SIGTERM, as the kubelet sends it: readiness fails at once, the server keeps serving while
load balancers catch up, then finishes the requests in flight before it exits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def status(url: str) -> int | None:
    """The answer's status, or None while nothing listens (paced: this is polled)."""
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        threading.Event().wait(0.05)
        return None


def test_sigterm_drains_then_lets_in_flight_requests_finish() -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "PORT": str(port),
        "SHUTDOWN_DRAIN_SECONDS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)]),
    }
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, str(HERE / "serve_with_test_routes.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while status(f"{base}/readyz") != 200:
            assert process.poll() is None, process.communicate()[0]
        with ThreadPoolExecutor(1) as pool:
            # 2 s: still running when the 1 s drain ends and uvicorn starts shutting down
            slow = pool.submit(httpx.get, f"{base}/sleep", params={"seconds": 2}, timeout=30)
            process.send_signal(signal.SIGTERM)
            while status(f"{base}/readyz") != 503:
                assert process.poll() is None
            assert status(base) == 200  # still serving while the endpoints update
            assert slow.result().status_code == 200
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    # uvicorn re-raises the SIGTERM it handled: the kubelet sees a process ended by it
    assert process.returncode == -signal.SIGTERM
    records = [json.loads(line) for line in output.splitlines()]
    messages = [r["message"] for r in records]
    assert "SIGTERM: not ready, draining for 1s" in messages
    assert messages.index("Shutting down") < messages.index("GET /sleep 200")
