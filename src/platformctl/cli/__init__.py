"""The ``platform`` command: thin Typer commands over the library, one module each."""

from __future__ import annotations

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

__all__ = ["app", "main"]

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


def main() -> None:
    app(prog_name="platform")
