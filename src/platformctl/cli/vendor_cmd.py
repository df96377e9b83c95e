"""``platform vendor CHART --version V [--repo URL]``: add or bump a vendored upstream chart."""

from __future__ import annotations

from pathlib import Path

import typer

from platformctl.cli.common import OUTPUT_OPTION, options
from platformctl.model import find_root
from platformctl.output import OutputFormat, to_json
from platformctl.vendor import LOCK_FILE, VENDOR_DIR, vendor_chart


def register(app: typer.Typer) -> None:
    @app.command()
    def vendor(
        ctx: typer.Context,
        chart: str = typer.Argument(..., help="The chart's name in its repository."),
        version: str = typer.Option(..., "--version", help="The exact version to vendor."),
        repo_url: str | None = typer.Option(
            None,
            "--from",
            help="An HTTP chart repository (https://...) or an OCI registry (oci://host/path); "
            "default: where the locked chart came from.",
        ),
        output: OutputFormat = OUTPUT_OPTION,
    ) -> None:
        """Vendor CHART at VERSION into charts/vendor, verified against the digest its
        repository publishes; update the lock, the add-ons' pins and the pinned CRDs.

        Exit codes: 0 vendored; 1 refused (digest mismatch, a re-pushed version); 2 unknown
        chart or version, bad arguments; 3 the repository cannot be reached. Nothing changes
        unless it exits 0."""
        root = find_root(options(ctx).repo_path or Path.cwd())
        entry = vendor_chart(root, chart, version, repo_url)
        if output is OutputFormat.json:
            typer.echo(to_json({"name": entry.name, **entry.to_yaml()}))
            return
        typer.echo(
            f"vendored {entry.name} {entry.version} ({entry.app_version}) from "
            f"{entry.repository} into {VENDOR_DIR / entry.name}, {entry.digest}; "
            f"{LOCK_FILE} updated"
        )
