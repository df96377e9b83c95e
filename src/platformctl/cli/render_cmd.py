"""``platform render SERVICE --env ENV``: the manifests Argo CD would apply."""

from __future__ import annotations

import typer

from platformctl.cli.common import options
from platformctl.render import ADDONS_TARGET, GITOPS_TARGET, Renderer


def register(app: typer.Typer) -> None:
    @app.command()
    def render(
        ctx: typer.Context,
        service: str = typer.Argument(
            ...,
            help=f"A service, '{GITOPS_TARGET}' for the environment's Argo CD objects, or "
            f"'{ADDONS_TARGET}' for its add-ons (cluster facts from the model, AWS-only ones "
            "as placeholders).",
        ),
        env: str = typer.Option(..., "--env", "-e", help="The environment."),
    ) -> None:
        """Print the rendered manifests of one service in one environment."""
        repo = options(ctx).repo()
        renderer = Renderer(repo)
        if service == GITOPS_TARGET:
            rendered = renderer.gitops(repo.environment(env))
        elif service == ADDONS_TARGET:
            rendered = renderer.addons(repo.environment(env))
        else:
            rendered = renderer.release(repo.release(service, env))
        typer.echo(rendered.text, nl=False)
