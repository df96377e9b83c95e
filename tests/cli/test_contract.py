"""The exit-code contract beyond bad input: a bug is one line and exit 70, --debug only adds
the traceback, and Ctrl-C in the middle of a push exits 130 leaving no half-done state."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from platformctl import status as status_module
from platformctl.cli import app
from tests.conftest import PLATFORM_BINARY, as_job, git
from tests.release.fleet import image, make_fleet, slow_push

# what the process does (test_worker has the same Ctrl-C through a worker)
pytestmark = pytest.mark.usefixtures("in_process")


def _broken(*_: object, **__: object) -> None:
    raise ZeroDivisionError("division by zero")


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_exception_is_one_line_and_exit_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    monkeypatch.setattr(status_module, "status", _broken)
    monkeypatch.setattr("platformctl.cli.status_cmd.build_status", _broken)
    flags = ["--debug"] if debug else []
    result = CliRunner().invoke(app, [*flags, "--repo", str(fleet.root), "status"])
    assert result.exit_code == 70
    last = result.stderr.splitlines()[-1]
    assert last == ("error: internal error: ZeroDivisionError: division by zero; run with --debug")
    if debug:
        assert "Traceback" in result.stderr
    else:
        assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("debug", [False, True])
def test_debug_changes_no_exit_code(tmp_path: Path, debug: bool) -> None:
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    flags = ["--debug"] if debug else []
    for args, code in ((["status", "--env", "qa"], 2), (["promote"], 2), (["nosuch"], 2)):
        result = CliRunner().invoke(app, [*flags, "--repo", str(fleet.root), *args])
        assert result.exit_code == code, (args, result.output)
        assert result.stderr.splitlines()[-1].startswith("error: ")


def test_ctrl_c_during_a_push_exits_130_and_the_next_run_converges(tmp_path: Path) -> None:
    push = slow_push(tmp_path)
    fleet, remote, hook, work = push.origin, push.remote, push.hook, push.work
    start = git(work.root, "rev-parse", "HEAD").strip()
    command = [PLATFORM_BINARY, "promote", "alpha", "--to", fleet.stages[1], "--push"]
    process = subprocess.Popen(
        as_job(command, foreground=True),
        cwd=work.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    push.wait_for_hook(process)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["error: interrupted: nothing was left half-done"]
    assert git(work.root, "status", "--porcelain") == ""
    assert git(work.root, "rev-parse", "HEAD^").strip() == start  # the new commit, unpushed
    hook.unlink()
    again = subprocess.run(command, cwd=work.root, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    tip = git(remote, "rev-parse", "main").strip()
    shown = git(remote, "show", f"{tip}:environments/{fleet.stages[1]}/alpha.yaml")
    assert f"tag: {image('alpha', 2).tag}" in shown
    assert git(work.root, "rev-parse", "HEAD").strip() == tip
