"""A headless Chromium for the dashboard's browser tests, and a running ``platform serve``.

Debian's chromium and its chromedriver of the same build (scripts/lib/components.sh installs
them): the driver's path is given, so Selenium Manager never looks for one to download. The
browser's console is captured, so a test can assert that a page logged no SEVERE entry: a
CSP violation, a static file that did not load and a JavaScript error all show there.
"""

from __future__ import annotations

import os
import re
import select
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = {CHROMIUM: "chromium", CHROMEDRIVER: "chromium-driver"}
WINDOW = (1400, 900)
# generous: the machine running the suite may be busy with other processes
TIMEOUT = 60.0
# As root on a machine without network: no sandbox (it needs user namespaces), nothing the
# browser would fetch on its own (updates, sync, QUIC probes), a new profile every time.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
)
URL_LINE = re.compile(r" at (http://\S+/) ")


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed (the message says how to install them)."""


def missing() -> str | None:
    """What to install for the browser tests, or None when both binaries are there."""
    absent = [path for path in PACKAGES if not os.access(path, os.X_OK)]
    if not absent:
        return None
    return (
        f"{' and '.join(str(path) for path in absent)} not installed; install with: "
        f"apt-get install -y {' '.join(PACKAGES[path] for path in absent)} (.ci/run does this)"
    )


@contextmanager
def chromium(*, javascript: bool = True, window: tuple[int, int] = WINDOW) -> Iterator[WebDriver]:
    """A headless Chromium driven through Debian's chromedriver, quit at the end; without
    ``javascript`` the pages' scripts do not run (what a user with scripts off sees)."""
    problem = missing()
    if problem is not None:
        raise BrowserMissing(problem)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={window[0]},{window[1]}")
        if not javascript:
            options.add_argument("--blink-settings=scriptEnabled=false")
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(TIMEOUT)
            driver.set_script_timeout(TIMEOUT)
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One Chromium per session and xdist worker: starting one costs about a second. Import
    it into one test module only: each module importing it would start its own."""
    yield from _started(javascript=True)


@pytest.fixture(scope="session")
def browser_without_javascript() -> Iterator[WebDriver]:
    """A Chromium that runs no script of the pages (as ``browser``, one per session)."""
    yield from _started(javascript=False)


def _started(*, javascript: bool) -> Iterator[WebDriver]:
    try:
        with chromium(javascript=javascript) as driver:
            yield driver
    except BrowserMissing as error:
        pytest.fail(str(error), pytrace=False)


def console(driver: WebDriver) -> list[dict[str, Any]]:
    """The console entries logged since the last call (reading them empties the log)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return entries


def severe(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]


def wait(driver: WebDriver, timeout: float = TIMEOUT) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout, poll_frequency=0.1)


def open_page(driver: WebDriver, url: str) -> list[dict[str, Any]]:
    """Load ``url`` until the document and its sub-resources are loaded; the console entries
    the load logged (the ones before it are dropped)."""
    console(driver)
    driver.get(url)
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")
    return console(driver)


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height of a PNG image; ValueError if ``data`` is not one."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@contextmanager
def serving(
    binary: str, root: Path, log: Path, *arguments: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``platform serve --repo root --port 0 [arguments]`` as its own process (no worker),
    until the end of the block (Ctrl-C, as a user stops it, unless it already ended); yields
    the URL it says it serves at and the process. Its standard error goes to ``log``."""
    environment = {**os.environ, "PLATFORM_WORKER": "off", "NO_COLOR": "1"}
    command = [binary, "serve", "--repo", str(root), "--port", "0", *arguments]
    with log.open("wb") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, env=environment, cwd=root
        )
    try:
        yield _announced_url(process, log), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


@contextmanager
def dashboard(binary: str, root: Path, log: Path) -> Iterator[str]:
    """``serving`` for a test that only needs the URL."""
    with serving(binary, root, log) as (url, _):
        yield url


def _announced_url(process: subprocess.Popen[bytes], log: Path) -> str:
    """The URL in the line ``platform serve`` prints once its socket listens."""
    assert process.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"platform serve said nothing in {TIMEOUT:.0f} s: {line!r}")
        ready, _, _ = select.select([process.stdout], [], [], left)
        if not ready:
            continue
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError(
                f"platform serve exited ({process.wait()}): {line!r}\n{log.read_text()[-2000:]}"
            )
        line += chunk
    found = URL_LINE.search(line.decode())
    assert found, f"no URL in platform serve's first line: {line!r}"
    return found.group(1)
