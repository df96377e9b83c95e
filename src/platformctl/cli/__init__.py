"""The ``platform`` command: thin Typer commands over the library, one module each."""

from __future__ import annotations

from functools import cache

import typer.main
from typer import _click as click

from platformctl.cli import (
    ci_cmds,
    doctor_cmd,
    history_cmd,
    metrics_cmd,
    new_cmd,
    publish_cmd,
    reconcile_cmd,
    release_cmds,
    render_cmd,
    serve_cmd,
    status_cmd,
    vendor_cmd,
    verify_cmd,
    worker_cmd,
)
from platformctl.cli.common import app
from platformctl.cli.examples import attach

__all__ = ["app", "command", "main"]

for module in (
    render_cmd,
    status_cmd,
    verify_cmd,
    release_cmds,
    reconcile_cmd,
    publish_cmd,
    history_cmd,
    metrics_cmd,
    ci_cmds,
    vendor_cmd,
    new_cmd,
    doctor_cmd,
    worker_cmd,
    serve_cmd,
):
    module.register(app)
attach(app)


@cache
def command() -> click.Command:
    """The click command Typer builds from ``app`` (~15 ms, on every call of ``app``): once
    per process, and by a started worker before it forks. Called directly, without Typer's
    exception hook, which only matters with its pretty exceptions, and ``app`` disables them
    (``PlatformGroup`` maps every exception to the exit-code contract)."""
    return typer.main.get_command(app)


def main() -> None:
    command()(prog_name="platform")
