"""``platform serve`` as users start it: a real process, a real socket, the exit-code contract."""

from __future__ import annotations

import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import PLATFORM_BINARY, init_repo, run_platform
from tests.support.browser import serving


def get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_it_serves_on_loopback_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    with serving(PLATFORM_BINARY, repo, tmp_path / "serve.log") as (url, process):
        assert url.startswith("http://127.0.0.1:")
        status, body = get(url + "static/pico.min.css")
        assert status == 200
        assert "Pico" in body
        status, body = get(url + "no-such-page")
        assert status == 404
        assert "error: no such page" in body
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert (tmp_path / "serve.log").read_text() == ""


def test_a_loopback_server_refuses_other_host_names(tmp_path: Path) -> None:
    """DNS rebinding: a page of another site resolving its name to 127.0.0.1 must not read it."""
    repo = init_repo(tmp_path / "repo")
    with serving(PLATFORM_BINARY, repo, tmp_path / "serve.log") as (url, _):
        status, _body = get(url + "static/dashboard.css", host="attacker.example")
        assert status == 400
        assert get(url + "static/dashboard.css", host="localhost")[0] == 200


def test_any_loopback_address_answers_at_the_url_it_announced(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    with serving(PLATFORM_BINARY, repo, tmp_path / "serve.log", "--host", "127.0.0.2") as (
        url,
        process,
    ):
        assert url.startswith("http://127.0.0.2:")
        assert get(url + "static/dashboard.css")[0] == 200
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        assert (tmp_path / "serve.log").read_text() == ""  # loopback: no warning


def test_another_host_is_said_with_a_warning(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    with serving(PLATFORM_BINARY, repo, tmp_path / "serve.log", "--host", "0.0.0.0") as (
        url,
        process,
    ):
        assert url.startswith("http://0.0.0.0:")
        port = url.rsplit(":", 1)[1].rstrip("/")
        assert get(f"http://127.0.0.1:{port}/static/dashboard.css")[0] == 200
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        warning = (tmp_path / "serve.log").read_text()
    assert warning.startswith("warning: serving on 0.0.0.0, not loopback")
    assert warning.count("\n") == 1


def test_a_port_in_use_is_an_environment_problem(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_platform(repo, "serve", "--port", str(port))
    assert result.returncode == 3
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "pass another --port" in result.stderr
    assert result.stderr.count("\n") == 1


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    result = run_platform(repo, "serve", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr == "error: --port 70000 is not a TCP port (pass a port from 1 to 65535)\n"
    result = run_platform(tmp_path, "serve", "--repo", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: no platform repository at or above")
