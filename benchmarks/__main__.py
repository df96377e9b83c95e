"""``uv run python -m benchmarks [--services N] [--history N] [--runs N] [--only ROWS]
[--source REPO] [--json PATH]``.

Exit codes: 0 measured (goals met or not: a missed goal is a figure, not a crash), 2 bad
arguments, 3 a measured command failed or a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.fleet import PROJECT_ROOT, missing_peers
from benchmarks.harness import ROWS, BenchmarkError, run_all
from platformctl.cachefile import reading_only
from platformctl.errors import InputError
from platformctl.model import load_repo


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text}: a history needs at least two commits")
    return value


def _rows(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or repr(text)}: not a row (rows: {', '.join(ROWS)})"
        )
    return names


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time platform verify, promote and rollback on a synthetic fleet, "
        "against kubernetes-validate and checkov doing the same work.",
    )
    parser.add_argument("--services", type=_positive, default=100, help="default: 100")
    parser.add_argument(
        "--history", type=_at_least_two, default=10_000, help="commits of history (default: 10000)"
    )
    parser.add_argument(
        "--runs", type=_positive, default=5, help="runs of each short command (median; 5)"
    )
    parser.add_argument(
        "--only",
        type=_rows,
        metavar="ROW[,ROW]",
        help="measure only these rows (and those their goals compare with)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=PROJECT_ROOT,
        metavar="REPO",
        help="the git repository whose charts, environments and services the fleet copies "
        "(default: this one; a fork names its own)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="make the fleet here and keep it")
    return parser.parse_args(argv)


def table(report: dict[str, Any]) -> str:
    header = ["measurement", "median s", "runs", "peak MB", "ratio", "goal", "met"]
    rows = [header]
    for result in report["results"]:
        ratio = ", ".join(f"{v:.2f} x {k}" for k, v in result["ratio"].items())
        met = {True: "yes", False: "NO", None: ""}[result["met"]]
        rows.append(
            [
                f"{result['name']}: {result['what']}",
                f"{result['seconds']:.3f}",
                str(len(result["samples"])),
                f"{result['peak_mb']:.0f}",
                ratio,
                result["goal"] or "",
                met,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _not_a_source(source: Path, services: int) -> str | None:
    """Why a fleet of ``services`` cannot be made from ``source`` (it is copied from git,
    every service needs an image in every stage, and each copy's peers must be copied too),
    as the error line, else None. Read only: no cache is written there."""
    inside = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.stdout.strip() != "true":
        return f"--source {source}: not a git working tree"
    try:
        with reading_only():
            repo = load_repo(source)
            for service in repo.services:
                for environment in repo.environment_names:
                    repo.release(service, environment)
            missing = missing_peers(repo, services)
    except InputError as error:
        return f"--source {source}: {error}"
    return f"--services {services}: {missing}" if missing else None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.keep and args.keep.exists():
        print(f"error: {args.keep} exists; name a new folder for --keep", file=sys.stderr)
        return 2
    args.source = args.source.resolve()
    problem = _not_a_source(args.source, args.services)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.keep:
            args.keep.mkdir(parents=True)
            report = run_all(
                args.services, args.history, args.runs, args.keep, progress, args.only, args.source
            )
        else:
            with tempfile.TemporaryDirectory(prefix="platform-bench-") as scratch:
                report = run_all(
                    args.services,
                    args.history,
                    args.runs,
                    Path(scratch),
                    progress,
                    args.only,
                    args.source,
                )
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    machine = report["machine"]
    print(
        f"{report['fleet']['services']} services x {len(report['fleet']['environments'])} "
        f"environments, {report['fleet']['commits']} commits; {machine['cpu']}, "
        f"{machine['cores']} cores, {machine['memory_gb']} GB\n"
    )
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
