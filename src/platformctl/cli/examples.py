"""The examples at the end of each command's ``--help``: kept in one place so that a test can
hold every command to having them, and so the help reads like gh's and kubectl's."""

from __future__ import annotations

import typer

# command path -> (what it does, the command line); service names are placeholders.
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "render": (
        ("The manifests of a service in dev", "platform render my-service -e dev"),
        ("The environment's Argo CD objects", "platform render argocd -e staging"),
        ("The add-on Applications", "platform render addons -e production"),
    ),
    "status": (
        ("Every release in every environment", "platform status"),
        ("One environment, as JSON", "platform status -e production -o json"),
        ("What Argo CD reports right now", "platform status --live"),
    ),
    "verify": (
        ("The whole gate, as CI runs it", "platform verify"),
        ("Only what a change to one service touches", "platform verify -e dev -s my-service"),
        ("A pull-request comment", "platform verify -o markdown"),
    ),
    "new service": (
        ("See the files and the diff first", "platform new service my-service --dry-run"),
        (
            "Shaped like another, called by two",
            "platform new service my-service --like user-service "
            "--callers api-gateway,auth-service",
        ),
        ("What was written, as JSON", "platform new service my-service -o json"),
    ),
    "promote": (
        ("See the plan and the gates first", "platform promote my-service --to staging --dry-run"),
        (
            "The fix for a burn the budget gate refuses",
            "platform promote my-service --to production --override budget "
            "--reason 'INC-42 the fix for the burn' --push",
        ),
        (
            "Promote and push (re-planned on races)",
            "platform promote my-service --to staging --push",
        ),
        (
            "Every service, as one unit, by pull request",
            "platform promote --all --to production --pull-request",
        ),
        (
            "The pull request's review document (gates, rendered diff, policy delta, risk)",
            "platform promote my-service --to production --dry-run -o markdown",
        ),
        (
            "Every service but the held ones",
            "platform promote --all --to production --skip-held --push",
        ),
        (
            "Skip two gates, with the reason recorded",
            "platform promote my-service --to production --override soak,slo "
            "--reason 'INC-42 hotfix' --push",
        ),
        (
            "Push, follow Argo CD, roll back and hold if the canary fails",
            "platform promote my-service --to production --push --wait",
        ),
        (
            "Follow it, but only report a failed canary",
            "platform promote my-service --to production --push --wait --no-auto-rollback",
        ),
    ),
    "reconcile": (
        ("What the schedule would roll back", "platform reconcile --dry-run"),
        (
            "Roll back aborted canaries in production and push",
            "platform reconcile -e production --push",
        ),
        ("As JSON, for a script", "platform reconcile -e staging -e production --push -o json"),
    ),
    "publish": (
        (
            "What CI runs after pushing and signing",
            "platform publish my-service --tag 1.5.0 --digest sha256:<hex> "
            "--source-commit <sha> --build-url https://ci.example/run/42 --push",
        ),
        ("See the change first", "platform publish my-service --tag 1.5.0 --dry-run"),
        (
            "By pull request",
            "platform publish my-service --tag 1.5.0 --pull-request -o json",
        ),
        (
            "A moved tag, on purpose",
            "platform publish my-service --tag 1.5.0 --force --reason 'rebuilt base image' --push",
        ),
    ),
    "discover": (
        ("What the schedule would publish", "platform discover --dry-run"),
        ("Publish what is new and push", "platform discover --push"),
        ("Two services, as JSON", "platform discover -s my-service -s other-service -o json"),
    ),
    "rollback": (
        (
            "Back to the last good release",
            "platform rollback my-service -e production --reason 'p95 up' --push",
        ),
        (
            "Back to a release from history",
            "platform rollback my-service -e production --to v1.4.2 --reason 'bad migration'",
        ),
        ("Preview only", "platform rollback my-service -e production --dry-run"),
        (
            "Every image a release set put into production, in one commit",
            "platform rollback --set staging@0123456789ab -e production --reason 'INC-7' --push",
        ),
    ),
    "holds": (
        ("Every hold", "platform holds"),
        ("Production's, as JSON", "platform holds -e production -o json"),
    ),
    "hold": (
        (
            "Stop promotions into production",
            "platform hold my-service -e production --reason 'INC-42' --push",
        ),
        ("See the change first", "platform hold my-service -e production --reason x --dry-run"),
    ),
    "unhold": (
        (
            "Allow them again, saying why",
            "platform unhold my-service -e production --reason 'INC-42 fixed' --push",
        ),
        ("By pull request", "platform unhold my-service -e production --pull-request"),
    ),
    "history": (
        ("The last releases in production", "platform history my-service -e production"),
        ("The last five, as JSON", "platform history my-service -e production -n 5 -o json"),
    ),
    "serve": (
        ("The dashboard of this clone, on loopback", "platform serve"),
        ("Another clone, on a port of its own", "platform serve --repo ../gitops --port 8080"),
        ("For the team's network (says a warning)", "platform serve --host 0.0.0.0"),
    ),
    "metrics": (
        ("Every environment over the last 30 days", "platform metrics"),
        (
            "Production, one service, a quarter",
            "platform metrics -e production -s my-service --since 90d",
        ),
        (
            "Since a date, as a pull-request comment",
            "platform metrics --since 2026-10-01 -o markdown",
        ),
        ("For a dashboard", "platform metrics -e staging -e production -o json"),
    ),
    "diff": (
        ("What production lacks of staging", "platform diff --from staging --to production"),
        ("With full image references", "platform diff --from staging --to production --wide"),
        (
            "The manifests of one service",
            "platform diff my-service --from staging --to production --rendered",
        ),
    ),
    "vendor": (
        (
            "Bump a chart from an HTTP repository",
            "platform vendor argo-rollouts --version 2.41.0 --from https://argoproj.github.io/argo-helm",
        ),
        (
            "From an OCI registry",
            "platform vendor my-chart --version 1.2.3 --from oci://registry.example/charts",
        ),
    ),
    "doctor": (
        ("What this machine lacks, with the fixes", "platform doctor"),
        ("For a script", "platform doctor -o json"),
    ),
    "worker start": (
        ("Make the next commands start faster", "platform worker start"),
        ("Exit after ten idle minutes", "platform worker start --idle-timeout 600"),
    ),
    "worker stop": (("Stop it (commands then run in their own process)", "platform worker stop"),),
    "worker status": (
        ("Whether one runs and serves this installation", "platform worker status"),
        ("For a script", "platform worker status -o json"),
    ),
    "ci comment": (
        (
            "Post the verify report on PR 42",
            "platform ci comment --pull-request 42 --marker verify --file report.md",
        ),
    ),
    "ci issue": (
        (
            "Open or update the drift issue",
            "platform ci issue --title 'Drift' --label drift --file drift.md",
        ),
    ),
}


def epilog(command: str) -> str:
    """Rich-formatted examples for ``command`` (one paragraph each, so rich keeps the lines)."""
    lines = ["[bold]Examples[/bold]"]
    for what, line in EXAMPLES[command]:
        lines.append(f"{what}:\n\n  [cyan]$ {line}[/cyan]")
    return "\n\n".join(lines)


def attach(app: typer.Typer, prefix: str = "") -> None:
    """Give every registered command (and sub-app command) its examples."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        info.epilog = epilog(f"{prefix}{name}")
    for group in app.registered_groups:
        if group.typer_instance is not None:
            attach(group.typer_instance, f"{prefix}{group.name} ")
