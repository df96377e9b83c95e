"""What a page says when it cannot be shown: a bug, and a repository that breaks while HTMX
polls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import platformctl.dashboard.pages.matrix as matrix_page
from platformctl.dashboard.app import SECURITY_HEADERS, create_app
from tests.conftest import init_repo, run_platform
from tests.dashboard.conftest import parse


def test_a_bug_is_one_line_a_500_and_still_the_pages_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(snapshot: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(matrix_page, "matrix_view", broken)
    client = TestClient(create_app(init_repo(tmp_path / "repo")), raise_server_exceptions=False)
    response = client.get("/")
    assert response.status_code == 500
    assert "error: internal error: RuntimeError: boom second line; see the server" in response.text
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_a_poll_of_a_repository_that_broke_swaps_the_error_in(tmp_path: Path) -> None:
    """htmx swaps an error answer (base.html's responseHandling); the error must take the
    place of the element polled, or the old table would stay as if it were current."""
    repo = init_repo(tmp_path / "repo")
    client = TestClient(create_app(repo))
    assert client.get("/").status_code == 200
    (repo / "environments" / "pipeline.yaml").write_text("stages: [\n")
    said = run_platform(Path.cwd(), "--repo", str(repo), "status").stderr.strip()
    response = client.get("/", headers={"HX-Request": "true", "HX-Target": "matrix-view"})
    assert response.status_code == 500
    assert "<html" not in response.text
    (alert,) = [element for element in parse(response.text).children if hasattr(element, "attrs")]
    assert alert.attrs["id"] == "matrix-view"
    assert alert.attrs["role"] == "alert"
    assert said.startswith("error: ")
    assert said in alert.text
