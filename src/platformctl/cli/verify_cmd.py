"""``platform verify``: the policy gate over every rendered environment."""

from __future__ import annotations

import sys
import time

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.errors import ExitCode
from platformctl.output import OutputFormat, render_table, to_json
from platformctl.verify import VerifyReport, verify
from platformctl.verify_record import excepted_json, finding_json, record, unused_json

PHASES = {"render": "rendering", "schemas": "validating schemas", "checkov": "running checkov"}


def _progress(phase: str, done: int, total: int) -> None:
    """One line on the terminal, rewritten in place and erased when the phase ends."""
    text = "" if done == total else f"{PHASES.get(phase, phase)} {done}/{total}"
    sys.stderr.write(f"\r\033[K{text}")
    sys.stderr.flush()


def _payload(report: VerifyReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "targets": len(report.targets),
        "cache_hits": report.cache_hits,
        "checked_by_checkov": report.checked_by_checkov,
        "findings": [finding_json(finding) for finding in report.failing],
        "warnings": report.warnings,
        "excepted": [excepted_json(item) for item in report.excepted],
        "unused_exceptions": [unused_json(item) for item in report.unused_exceptions],
    }


def _summary(report: VerifyReport, seconds: float) -> str:
    verdict = "clean" if report.ok else f"{len(report.failing)} violation(s)"
    return (
        f"{len(report.targets)} targets verified ({report.cache_hits} from cache, "
        f"{report.checked_by_checkov} checked by checkov): {verdict}"
        + (f", {len(report.excepted)} excepted" if report.excepted else "")
        + f" in {seconds:.1f} s"
    )


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_command(
        ctx: typer.Context,
        env: list[str] = typer.Option([], "--env", "-e", help="Only these environments."),
        service: list[str] = typer.Option([], "--service", "-s", help="Only these services."),
        output: OutputFormat = OUTPUT_OPTION,
        no_cache: bool = typer.Option(False, "--no-cache", help="Re-check every target."),
    ) -> None:
        """Render every service in every environment and hold it to schemas and policy."""
        started = time.monotonic()
        repo = options(ctx).repo()
        show_progress = output is OutputFormat.table and sys.stderr.isatty()
        report = verify(
            repo,
            env,
            service,
            use_cache=not no_cache,
            progress=_progress if show_progress else None,
        )
        # what the dashboard's Findings page shows; advisory, so it changes no exit code
        record(repo.root, report, repo.environment_names, service)
        if output is OutputFormat.json:
            typer.echo(to_json(_payload(report)))
        else:
            headers = ["target", "check", "resource", "message"]
            if report.failing:
                rows = [[f.target, f.check, f.resource, f.message] for f in report.failing]
                typer.echo(render_table(output, headers, rows))
            if report.excepted:
                typer.echo("\nexcepted:")
                rows = [
                    [
                        e.finding.target,
                        e.finding.check,
                        e.finding.resource,
                        f"{e.exception.reason} (until {e.exception.expires})",
                    ]
                    for e in report.excepted
                ]
                typer.echo(render_table(output, headers, rows))
            for warning in report.warnings:
                typer.echo(f"warning: {warning}", err=True)
            for unused in report.unused_exceptions:
                typer.echo(
                    f"warning: {unused.where}: exception matches nothing; remove it", err=True
                )
            typer.echo(
                ("\n" if report.failing or report.excepted else "")
                + _summary(report, time.monotonic() - started)
            )
        if not report.ok:
            raise typer.Exit(int(ExitCode.REFUSED))
