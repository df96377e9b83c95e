"""Binding and running the dashboard: loopback unless asked otherwise, a clear error if the
address cannot be had."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

from platformctl.errors import EnvironmentProblem, InputError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (a name resolves to its addresses)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free port)."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is not a TCP port", hint="pass a port from 1 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as error:
        raise InputError(
            f"--host {host} is not an address of this machine ({error.strerror})",
            hint="pass an IP address or a name that resolves, e.g. --host 127.0.0.1",
        ) from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise EnvironmentProblem(
            f"cannot listen on {host}:{port}: {error.strerror}",
            hint="pass another --port (0 picks a free one) or stop what holds it",
        ) from None
    return listener


def url_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(root: Path, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve the dashboard of ``root`` until Ctrl-C (which ends it with exit 0); ``announce``
    gets the URL once the socket listens (``--port 0`` says there which port it got)."""
    import uvicorn

    from platformctl.dashboard.app import create_app

    listener = bind(host, port)
    allowed = ["localhost", "127.0.0.1", "[::1]", "::1"] if is_loopback(host) else None
    app = create_app(root, allowed_hosts=allowed)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    announce(url_of(listener))
    # uvicorn shuts down on Ctrl-C, then raises it again: stopping a server is how it ends
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])
