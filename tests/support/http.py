"""A local HTTP server whose answers a test decides: for APIs that cannot run here."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


# (status, body) or (status, body, headers): a body that is bytes or str is sent as text,
# anything else as JSON
Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]


@contextmanager
def serve(handle: Callable[[Request], Answer]) -> Iterator[str]:
    """Serve ``handle`` on 127.0.0.1 for the block; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                self.command,
                url.path,
                parse_qs(url.query),
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            status, payload, *extra = handle(request)
            if isinstance(payload, str | bytes):
                data = payload.encode() if isinstance(payload, str) else payload
                kind = "text/plain; version=0.0.4"
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for header, value in (extra[0] if extra else {}).items():
                    self.send_header(header, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a test of its time limit)

        do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - http.server dispatches on these names

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[Any]]]:
    """A webhook endpoint for the block: yields its URL and the bodies posted to it."""
    posted: list[Any] = []

    def receive(request: Request) -> tuple[int, str]:
        posted.append(request.body)
        return 200, "ok"

    with serve(receive) as url:
        yield url, posted
