"""``platform publish`` and ``platform discover``: from a build in the registry to the first
stage, through the same write path as ``promote``."""

from __future__ import annotations

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.cli.release_cmds import PULL_REQUEST_OPTION, report_delivery
from platformctl.delivery import Delivery, DeliveryOptions, deliver_ungated
from platformctl.discover import DEFAULT_TIME_LIMIT, discover, worst
from platformctl.output import OutputFormat, to_json
from platformctl.publish import Build, plan_publish

DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Print the change, write nothing.")
PUSH_OPTION = typer.Option(False, "--push", help="Push the commit (re-planned on races).")


def register(app: typer.Typer) -> None:
    @app.command()
    def publish(
        ctx: typer.Context,
        service: str = typer.Argument(..., help="The service that was built."),
        tag: str = typer.Option(..., "--tag", help="The tag CI pushed (resolved in the registry)."),
        digest: str | None = typer.Option(
            None, "--digest", help="The digest CI pushed: must be what --tag names."
        ),
        source_commit: str | None = typer.Option(
            None, "--source-commit", help="The commit of the service the image was built from."
        ),
        build_url: str | None = typer.Option(
            None, "--build-url", help="The CI run that built it (recorded in the commit)."
        ),
        env: str | None = typer.Option(
            None, "--env", "-e", help="The first stage (the default; no other is accepted)."
        ),
        dry_run: bool = DRY_RUN_OPTION,
        push: bool = PUSH_OPTION,
        pull_request: bool = PULL_REQUEST_OPTION,
        force: bool = typer.Option(
            False, "--force", help="Publish a moved tag or an older build (needs --reason)."
        ),
        reason: str | None = typer.Option(None, "--reason", help="Recorded in the commit."),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Record a new build of SERVICE in the first stage: the tag's digest from the
        registry, its signature if the stage requires one, as one commit."""
        DeliveryOptions(dry_run=dry_run, push=push, pull_request=pull_request).check()
        build = Build(service, tag, digest, source_commit, build_url, force, reason)
        with options(ctx).session(dry_run) as (session, repo):
            plan = plan_publish(repo, build, env=env)
            outcome = deliver_ungated(session, repo, plan, push=push, pull_request=pull_request)
        report_delivery(Delivery(outcome), output, dry_run)

    @app.command(name="discover")
    def discover_command(
        ctx: typer.Context,
        services: list[str] = typer.Option(
            [], "--service", "-s", help="Only these services (default: every one)."
        ),
        dry_run: bool = DRY_RUN_OPTION,
        push: bool = PUSH_OPTION,
        pull_request: bool = PULL_REQUEST_OPTION,
        time_limit: float = typer.Option(
            DEFAULT_TIME_LIMIT,
            "--time-limit",
            min=0.1,
            help="Seconds to list one service's tags (and read creation times) in.",
        ),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Publish the tag each service's discover policy (pipeline.yaml) names, if the first
        stage does not run it yet: one line per service."""
        DeliveryOptions(dry_run=dry_run, push=push, pull_request=pull_request).check()
        found = discover(
            options(ctx).root(),
            services,
            push=push,
            pull_request=pull_request,
            dry_run=dry_run,
            time_limit=time_limit,
        )
        failure = worst(found)
        if output is OutputFormat.json:
            typer.echo(to_json({"dry_run": dry_run, "services": [f.as_dict() for f in found]}))
            if failure is not None:
                failure.in_json_report = True
        else:
            for item in found:
                typer.echo(f"{item.service}: {item.status}: {item.message}")
        if failure is not None:
            raise failure
