"""The dashboard as a user meets it: a real ``platform serve`` process, pages fetched over HTTP.

Each request opens a connection of its own, as a browser's reload may, and is timed from the
connect to the last byte of the body. A page is checked after its timing: status 200 and the
whole matrix (one row header per service of the fleet), so a benchmark can never time an error
page or a half-empty table. Peak memory is the server's (``VmHWM``): the client is this process.
"""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from benchmarks.harness import BenchmarkError, Sample

# What `platform serve` says once its socket listens (with --port 0, the port it got).
_ANNOUNCED = re.compile(r" at (?P<url>http://\S+/) ")
STARTUP_SECONDS = 120.0  # a loaded machine's interpreter start, imports and model check
REQUEST_SECONDS = 300.0  # a cold page on 10,000 commits, on a loaded machine


class _RowHeaders(HTMLParser):
    """The text of every ``<th scope="row">``: a matrix has one per service."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self._open: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "th" and ("scope", "row") in attrs:
            self._open = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._open is not None:
            self.rows.append(" ".join("".join(self._open).split()))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)


def row_headers(html: str) -> list[str]:
    """The first word of each row header of ``html`` (a service's name; a marker may follow)."""
    parser = _RowHeaders()
    parser.feed(html)
    parser.close()
    return [text.split()[0] if text else "" for text in parser.rows]


def visible_text(html: str, limit: int = 300) -> str:
    """The start of what a page shows (its body without tags): an error page's message."""
    body = html.split("<body", 1)[-1].split(">", 1)[-1]
    return " ".join(unescape(re.sub(r"<[^>]*>", " ", body)).split())[:limit]


def check_matrix(status: int, html: str, services: Sequence[str]) -> None:
    """Refuse a page that is not the whole matrix: an error page or a missing row would make
    the figure of another page's work."""
    if status != 200:
        raise BenchmarkError(f"GET / answered {status}, not the matrix: {visible_text(html)}")
    shown = row_headers(html)
    if sorted(shown) != sorted(services):
        missing = sorted(set(services) - set(shown))[:5]
        extra = sorted(set(shown) - set(services))[:5]
        raise BenchmarkError(
            f"GET / showed {len(shown)} service rows of {len(services)} "
            f"(missing {missing}, unexpected {extra})"
        )


def _peak_mb(pid: int) -> float:
    """The process's peak resident set so far (Linux ``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchmarkError(f"no VmHWM for process {pid}")


@dataclass
class Server:
    """A running ``platform serve``."""

    url: str
    process: subprocess.Popen[bytes]
    output: IO[bytes]

    def said(self) -> str:
        """Everything the server printed so far (for an error message)."""
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def get(self, path: str) -> tuple[float, int, str]:
        """One GET over a new connection: seconds from connect to the body's end, status, body."""
        address = urlsplit(self.url)
        start = time.perf_counter()
        connection = http.client.HTTPConnection(
            address.hostname or "127.0.0.1", address.port, timeout=REQUEST_SECONDS
        )
        try:
            connection.request("GET", path, headers={"Accept": "text/html"})
            response = connection.getresponse()
            body = response.read()
        except OSError as error:
            tail = "\n".join(self.said().strip().splitlines()[-5:])
            raise BenchmarkError(f"GET {path} of {self.url} failed: {error}\n{tail}") from None
        finally:
            connection.close()
        seconds = time.perf_counter() - start
        return seconds, response.status, body.decode(errors="replace")

    def matrix(self, services: Sequence[str]) -> Sample:
        """A timed GET of the matrix page, checked after the timing."""
        seconds, status, html = self.get("/")
        check_matrix(status, html, services)
        return Sample(seconds, _peak_mb(self.process.pid))


@contextmanager
def served(command: Sequence[str], cwd: Path, env: dict[str, str]) -> Iterator[Server]:
    """``command`` (a ``platform serve --port 0``) started, once it has said its URL; stopped
    with SIGINT, as Ctrl-C does, when the block ends."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
        try:
            yield Server(_wait_for_url(process, output), process, output)
        finally:
            _stop(process)


def _wait_for_url(process: subprocess.Popen[bytes], output: IO[bytes]) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        output.seek(0)
        said = output.read().decode(errors="replace")
        found = _ANNOUNCED.search(said)
        if found:
            return found["url"]
        if process.poll() is not None:
            tail = "\n".join(said.strip().splitlines()[-5:])
            raise BenchmarkError(f"`platform serve` exited {process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"`platform serve` said no URL in {STARTUP_SECONDS:.0f} s")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
