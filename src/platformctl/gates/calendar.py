"""Gates about time: how long the image has run in the stage before, and change freezes."""

from __future__ import annotations

import datetime as dt

from platformctl.gates.config import FreezeGate, format_duration
from platformctl.gates.results import GateResult, Verdict
from platformctl.git import Git
from platformctl.ledger import iter_history
from platformctl.model import Release
from platformctl.status import same_artifact


def arrival(git: Git, source: Release, revision: str = "HEAD") -> dt.datetime | None:
    """When the source's current image reached the branch there (first-parent: a merged pull
    request counts from its merge, not from when its commit was made)."""
    arrived = None
    for entry in iter_history(git, source, revision=revision):
        if not same_artifact(entry.image, source.image):
            break
        arrived = dt.datetime.fromisoformat(entry.time)
    return arrived


def check_soak(
    git: Git, source: Release, minimum: dt.timedelta, now: dt.datetime, revision: str = "HEAD"
) -> GateResult:
    arrived = arrival(git, source, revision)
    env = source.environment.name
    if arrived is None:
        measured = f"{source.image.label} is not committed in {env}"
        return GateResult("soak", source.service, Verdict.failed, measured)
    age = now - arrived
    verdict = Verdict.passed if age >= minimum else Verdict.failed
    sign = "≥" if verdict is Verdict.passed else "<"
    measured = f"{format_duration(age)} in {env} {sign} {format_duration(minimum)}"
    return GateResult("soak", source.service, verdict, measured)


def check_freeze(freeze: FreezeGate, now: dt.datetime) -> GateResult:
    local = now.astimezone(freeze.timezone)
    shown = f"{local:%a %Y-%m-%d %H:%M} {freeze.timezone.key}"
    window = freeze.open_window(now)
    if window is not None:
        return GateResult("freeze", None, Verdict.failed, f"{window.describe()} is open ({shown})")
    return GateResult("freeze", None, Verdict.passed, f"no freeze window open ({shown})")
