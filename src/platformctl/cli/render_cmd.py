"""``platform render SERVICE --env ENV``: the manifests Argo CD would apply."""

from __future__ import annotations

import typer

from platformctl.cli.common import options
from platformctl.render import GITOPS_TARGET, Renderer


def register(app: typer.Typer) -> None:
    @app.command()
    def render(
        ctx: typer.Context,
        service: str = typer.Argument(
            ..., help=f"A service, or '{GITOPS_TARGET}' for the environment's Argo CD objects."
        ),
        env: str = typer.Option(..., "--env", "-e", help="The environment."),
    ) -> None:
        """Print the rendered manifests of one service in one environment."""
        repo = options(ctx).repo()
        renderer = Renderer(repo)
        if service == GITOPS_TARGET:
            rendered = renderer.gitops(repo.environment(env))
        else:
            rendered = renderer.release(repo.release(service, env))
        typer.echo(rendered.text, nl=False)
