"""``platform serve``: the read-only dashboard (see ``platformctl.dashboard``)."""

from __future__ import annotations

from pathlib import Path

import typer

from platformctl.cli.common import options
from platformctl.model import find_root


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        ctx: typer.Context,
        host: str = typer.Option(
            "127.0.0.1",
            "--host",
            help="Address to listen on; anything but loopback is said with a warning.",
        ),
        port: int = typer.Option(8000, "--port", help="TCP port (0: any free one)."),
        repo: Path | None = typer.Option(
            None, "--repo", help="The repository to show (default: the global --repo or cwd)."
        ),
    ) -> None:
        """Serve a read-only web dashboard of the repository until Ctrl-C."""
        from platformctl.dashboard.server import is_loopback, serve

        root = find_root(repo) if repo is not None else options(ctx).root()
        if not is_loopback(host):
            typer.echo(
                f"warning: serving on {host}, not loopback: whoever reaches this port reads "
                "the release state of the repository (no login, no TLS)",
                err=True,
            )
        serve(root, host, port, lambda url: typer.echo(f"serving {root} at {url} (Ctrl-C stops)"))
