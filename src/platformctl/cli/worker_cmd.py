"""``platform worker start|stop|status``: the resident worker that runs commands without
re-importing the CLI each time (see ``platformctl.worker``)."""

from __future__ import annotations

import typer

from platformctl.cli.common import OUTPUT_OPTION
from platformctl.output import OutputFormat, render_table, to_json
from platformctl.worker import DEFAULT_IDLE_TIMEOUT, WorkerInfo, start, status, stop

worker = typer.Typer(
    help="A resident process that runs platform commands faster (it has already imported them).",
    no_args_is_help=True,
)


def _show(info: WorkerInfo | None, output: OutputFormat, said: str) -> None:
    if output is OutputFormat.json:
        typer.echo(to_json(info.as_dict() if info else {"running": False}))
        return
    if info is None:
        typer.echo(said)
        return
    rows = [[key, str(value)] for key, value in info.as_dict().items() if key != "running"]
    typer.echo(said)
    typer.echo(render_table(output, ["", ""], rows))


@worker.command("start")
def start_command(
    idle_timeout: int = typer.Option(
        DEFAULT_IDLE_TIMEOUT,
        "--idle-timeout",
        min=1,
        help="Seconds without a command after which the worker exits.",
    ),
    output: OutputFormat = OUTPUT_OPTION,
) -> None:
    """Start this user's worker for this installation (nothing to do if one runs).

    Exit codes: 0 running; 3 it could not start (the socket folder, the imports)."""
    info, started = start(idle_timeout)
    _show(info, output, "worker started" if started else "worker already running")


@worker.command("stop")
def stop_command(output: OutputFormat = OUTPUT_OPTION) -> None:
    """Stop the worker after the commands it runs have ended (nothing to do if none runs).

    Exit codes: 0 stopped or not running; 3 it did not stop in time."""
    info = stop()
    if output is OutputFormat.json:
        typer.echo(to_json({"stopped": info.pid if info else None}))
        return
    typer.echo(f"worker stopped (pid {info.pid})" if info else "no worker running")


@worker.command("status")
def status_command(output: OutputFormat = OUTPUT_OPTION) -> None:
    """Whether a worker runs, and whether it serves this installation as it is now (a worker
    of changed files is never used: commands then run in their own process).

    Exit codes: 0 always (the answer is in the output)."""
    info = status()
    _show(info, output, "no worker running" if info is None else "worker running")


def register(app: typer.Typer) -> None:
    app.add_typer(worker, name="worker")
