"""pipelines/verify-changed (the pre-commit hook): which environments a set of changed files
asks `platform verify` for. A stand-in CLI records the arguments; the names are invented, so
the mapping is tested, not this repository's environments."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def verify_args(tmp_path: Path, *files: str) -> list[str] | None:
    """The arguments the hook passed to `platform`, or None when it did not call it."""
    record = tmp_path / "args"
    cli = tmp_path / "platform"
    cli.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n')
    cli.chmod(0o755)
    result = subprocess.run(
        [str(ROOT / "pipelines/verify-changed"), *files],
        env={**os.environ, "PLATFORM_CLI": str(cli), "PIPELINE_OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return record.read_text().split() if record.exists() else None


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["environments/addons/qa.yaml"], ["verify", "--env=qa"]),
        (["environments/qa/svc-a.yaml", "environments/qa/svc-b.yaml"], ["verify", "--env=qa"]),
        (
            ["environments/addons/qa.yaml", "environments/uat/environment.yaml"],
            ["verify", "--env=qa", "--env=uat"],
        ),
        (["environments/qa/svc-a.yaml", "charts/service/values.yaml"], ["verify"]),
        (["environments/base/svc-a.yaml"], ["verify"]),
        (["environments/support.yaml"], ["verify"]),
        (["environments/policy-exceptions.yaml"], ["verify"]),
        (["Pulumi.qa.yaml"], ["verify"]),
        (["README.md"], None),
    ],
    ids=[
        "addons-file",
        "env-files-once",
        "two-envs",
        "chart-means-all",
        "base-means-all",
        "support-calendar",
        "exceptions",
        "stack-file",
        "nothing",
    ],
)
def test_changed_files_map_to_the_environments_they_touch(
    tmp_path: Path, files: list[str], expected: list[str] | None
) -> None:
    assert verify_args(tmp_path, *files) == expected


def test_the_hook_watches_every_file_it_maps() -> None:
    """pre-commit passes only files matching `files:`; the stack files must be among them."""
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    hook = config[config.index("id: platform-verify") :]
    pattern = hook[hook.index("files:") + len("files:") :].splitlines()[0].strip()
    for name in ("environments/addons/qa.yaml", "charts/x/values.yaml", "Pulumi.qa.yaml"):
        assert re.search(pattern, name), name
    assert not re.search(pattern, "src/platformctl/cli/__init__.py")


def test_pre_commit_itself_accepts_the_hooks() -> None:
    """pre-commit is a dev dependency; its own validator reads the configuration."""
    pre_commit = Path(sys.executable).parent / "pre-commit"
    result = subprocess.run(
        [str(pre_commit), "validate-config", str(ROOT / ".pre-commit-config.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
