"""The dashboard rows' checks: a page that is not the whole matrix is refused, never timed, and
the server the harness starts is stopped again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.harness import ROWS, BenchmarkError, tool, with_references
from benchmarks.serve import check_matrix, row_headers, served
from tests.conftest import git, init_repo

SERVICES = ("api-00", "web-00", "db-00")


def _matrix(services: tuple[str, ...]) -> str:
    rows = "".join(
        f'<tr><th scope="row"><a href="/services/{name}">{name}</a>\n'
        f' <abbr title="held">held</abbr></th><td>1.0.0</td></tr>'
        for name in services
    )
    return (
        '<html><body><table><thead><tr><th scope="col">dev</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></body></html>"
    )


def test_row_headers_are_the_services_of_a_matrix() -> None:
    assert row_headers(_matrix(SERVICES)) == list(SERVICES)
    # column headers are not rows
    assert row_headers('<table><tr><th scope="col">dev</th></tr></table>') == []


def test_the_whole_matrix_passes() -> None:
    check_matrix(200, _matrix(SERVICES), SERVICES)


@pytest.mark.parametrize(
    ("shown", "message"),
    [
        (SERVICES[:2], r"showed 2 service rows of 3 \(missing \['db-00'\]"),
        ((*SERVICES, "api-00"), r"showed 4 service rows of 3"),
        (("api-00", "web-00", "cache-00"), r"unexpected \['cache-00'\]"),
    ],
    ids=["a-row-missing", "a-row-twice", "another-service"],
)
def test_a_partial_matrix_is_refused(shown: tuple[str, ...], message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        check_matrix(200, _matrix(shown), SERVICES)


def test_an_error_page_is_refused_with_its_message() -> None:
    page = (
        "<html><head><title>Error</title></head><body><nav>Matrix</nav>"
        "<p><code>error: environments/pipeline.yaml: not YAML &amp; more</code></p></body></html>"
    )
    with pytest.raises(BenchmarkError, match="answered 500, not the matrix: Matrix error: env"):
        check_matrix(500, page, SERVICES)


def test_a_selection_brings_the_rows_its_goals_compare_with() -> None:
    assert with_references(["serve_matrix_warm"]) == {"serve_matrix_warm", "status"}
    assert with_references(["metrics"]) == {"metrics", "rollback", "floor"}
    assert with_references(["verify_one_changed"]) == {
        "verify_one_changed",
        "verify_full",
        "usual_way",
    }
    assert with_references(["serve_matrix_cold"]) == {"serve_matrix_cold"}
    assert set(with_references(ROWS)) == set(ROWS)


def test_a_real_server_that_cannot_show_the_matrix_is_refused_and_stopped(
    tmp_path: Path,
) -> None:
    """A repository that fails to load: `platform serve` starts, its / is an error page."""
    root = init_repo(tmp_path / "repo")
    (root / "environments" / "pipeline.yaml").write_text("stages: [\n")
    git(root, "commit", "-qam", "break the pipeline")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLATFORM_")}
    command = [tool("platform"), "serve", "--repo", str(root), "--port", "0"]
    with served(command, root, {**env, "PLATFORM_WORKER": "off"}) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with pytest.raises(BenchmarkError, match=r"answered 5\d\d, not the matrix: .*pipeline"):
            server.matrix(SERVICES)
    assert server.process.returncode is not None  # stopped when the block ended
