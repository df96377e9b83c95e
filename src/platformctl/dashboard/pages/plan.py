"""Next promotion: the offline plan of ``platform promote --all --to STAGE --dry-run --offline``.

The page plans exactly as that command does (``release.plan_promotion``, then
``delivery.promote`` with no session, ``dry_run`` and ``offline``): the gates that need no
network (freeze, soak, the release set's choice) are evaluated; the network gates (registry,
signature, argocd, slo, budget) and the policy gate (``platform verify`` of the result, which
the command runs only when it writes) are shown as evaluated at promotion time, never asked.
Nothing is written: no lock, no journal, no cache file.

A plan that refuses (a hold, no release set soaked long enough, a failed gate) is a valid
answer to "what would the next promotion do", so it is shown with the CLI's one-line message
and status 200; only a URL that names no stage to promote into is an error (404).

Soak, freeze and the release set depend on the clock as well as on the head: a plan is kept
per head for ``PLAN_TTL`` seconds only (``Fresh``), and the page says when it was computed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from platformctl.dashboard.app import site_of
from platformctl.dashboard.site import PageError, Site, Snapshot, status_of
from platformctl.dashboard.templating import page
from platformctl.delivery import DeliveryOptions
from platformctl.delivery import promote as deliver_promotion
from platformctl.errors import InputError, PlatformError, RefusedError
from platformctl.gates.config import NETWORK_GATES
from platformctl.gates.results import Verdict
from platformctl.gates.runner import GateOptions
from platformctl.release import Plan, plan_promotion, unresolved

router = APIRouter()

T = TypeVar("T")
# Seconds a plan is reused on one head: the soak and freeze verdicts move with the clock.
PLAN_TTL = 30.0
AT_PROMOTION = "evaluated at promotion time"
# What the dry run leaves for the write to judge: the gate runner marks a network gate it did
# not ask "skipped"; the policy gate verifies the commit's files only when the command writes.
POLICY_EVIDENCE = "platform verify of the changed releases, before the commit"
# Whom each network gate asks (GATE_ORDER's network half), for the evidence column.
ASKS = {
    "registry": "the registry, for the tag's digest",
    "signature": "the registry, for the digest's signature",
    "argocd": "Argo CD of the stage before",
    "slo": "Prometheus of the stage before",
    "budget": "Prometheus of the stage itself",
}


class Fresh(Generic[T]):
    """One head's value of a view that also depends on the clock: built again once ``ttl``
    seconds old. Kept through ``Site.cached``, so a new head starts a new one."""

    def __init__(self, snapshot: Snapshot, ttl: float) -> None:
        self.snapshot = snapshot
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None

    def get(self, build: Callable[[Snapshot], T]) -> T:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._value[0] >= self.ttl:
                try:
                    self._value = (now, build(self.snapshot))
                except PlatformError as error:
                    raise PageError(status_of(error), str(error)) from error
            return self._value[1]


@dataclass(frozen=True)
class Row:
    """One service of the repository and what the promotion does with it."""

    service: str
    moves: bool
    before: str
    after: str
    digest: str
    why: str  # why it does not move, or "" when it does
    held: str | None  # the hold's reason in the target, if held


@dataclass(frozen=True)
class GateRow:
    gate: str
    service: str
    verdict: str  # passed | failed | overridden | evaluated at promotion time
    evidence: str
    offline: bool  # evaluated by the dry run (False: left to the promotion)


@dataclass(frozen=True)
class DiffLine:
    kind: str  # file | hunk | add | del | context
    text: str


@dataclass(frozen=True)
class Refusal:
    """What the CLI prints after ``error: `` and the code it exits with."""

    message: str
    exit_code: int

    @classmethod
    def of(cls, error: PlatformError | None) -> Refusal | None:
        return cls(str(error), int(error.exit_code)) if error is not None else None


@dataclass(frozen=True)
class PlanView:
    stage: str
    source: str
    computed: dt.datetime
    command: str
    # why the command refuses (a hold, no soaked set, a failed gate), or None
    refusal: Refusal | None
    # the plan shown: the command's own, or with --skip-held when a hold refused it
    skip_held: bool
    # why the command with --skip-held refuses too (then no plan is shown), or None
    skip_held_refusal: Refusal | None
    subject: str | None
    rows: tuple[Row, ...] = ()
    nothing: str | None = None  # "nothing to promote: ..." (exit 0, nothing would change)
    gates: tuple[GateRow, ...] = ()
    declared: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    diff: tuple[DiffLine, ...] = ()
    holds: dict[str, str] = field(default_factory=dict)


def _plan(snapshot: Snapshot, stage: str, skip_held: bool) -> tuple[Plan, Refusal | None, str]:
    """The dry run's plan with its gate report, its refusal (None: none) and its diff."""
    repo = snapshot.repo
    plan = plan_promotion(repo, [], all_services=True, to=stage, skip_held=skip_held)
    options = DeliveryOptions(dry_run=True, gates=GateOptions(offline=True))
    delivery = deliver_promotion(None, repo, plan, options)
    return delivery.outcome.plan, Refusal.of(delivery.refusal), delivery.outcome.diff


def _rows(
    snapshot: Snapshot, plan: Plan, holds: dict[str, str], refused_by_hold: bool
) -> tuple[Row, ...]:
    target = plan.environment
    unknown = unresolved(plan)
    changes = {c.service: c for c in plan.changes}
    why: dict[str, str] = {}
    for service in plan.unchanged:
        why[service] = f"already as planned in {target.name}"
    for service in plan.skipped_held:
        why[service] = (
            "held: it has a change, so the promotion refuses (--skip-held leaves it out)"
            if refused_by_hold
            else "held: left out (--skip-held)"
        )
    for service in plan.not_in_set:
        why[service] = "left out: the release set has no image of it"
    for service in plan.later_in_target:
        why[service] = f"left out: {target.name} already runs a later release"
    rows = []
    for service in snapshot.repo.services:
        held = holds.get(service)
        change = changes.get(service)
        if change is not None:
            digest = "unknown (offline)" if service in unknown else change.after.short_digest
            rows.append(
                Row(
                    service,
                    True,
                    change.before.label if change.before else "(no image)",
                    change.after.label,
                    digest or "",
                    "",
                    held,
                )
            )
            continue
        reason = why.get(service, f"not deployed in {plan.source}")
        rows.append(Row(service, False, "", "", "", reason, held))
    return tuple(rows)


def _gates(plan: Plan) -> tuple[GateRow, ...]:
    if plan.report is None:
        return ()
    rows = []
    for result in plan.report.results:
        later = result.verdict is Verdict.skipped and result.gate in NETWORK_GATES
        rows.append(
            GateRow(
                result.gate,
                result.service or "*",
                AT_PROMOTION if later else str(result.verdict),
                f"not asked offline: asks {ASKS.get(result.gate, 'the network')}"
                if later
                else result.measured,
                not later,
            )
        )
    if plan.changes:
        rows.append(GateRow("policy", "*", AT_PROMOTION, POLICY_EVIDENCE, False))
    return tuple(rows)


def _diff(text: str) -> tuple[DiffLine, ...]:
    lines = []
    for line in text.splitlines():
        if line.startswith(("--- ", "+++ ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "context"
        lines.append(DiffLine(kind, line))
    return tuple(lines)


def build_plan(snapshot: Snapshot, stage: str) -> PlanView:
    """The page's view of the dry run into ``stage`` (already known to be a later stage)."""
    repo = snapshot.repo
    target = repo.environment(stage)
    previous = repo.previous(stage)
    assert previous is not None
    # a hold's reason as refuse_hold words it (a rollback's own hold may record none)
    holds = {s: (h or {}).get("reason", "after a rollback") for s, h in target.holds.items()}
    view = PlanView(
        stage=target.name,
        source=previous.name,
        computed=dt.datetime.now(dt.UTC).replace(microsecond=0),
        command=f"platform promote --all --to {target.name} --dry-run --offline",
        refusal=None,
        skip_held=False,
        skip_held_refusal=None,
        subject=None,
        declared=tuple(target.gates.names),
        holds=holds,
    )
    try:
        plan, refusal, diff = _plan(snapshot, stage, skip_held=False)
    except (RefusedError, InputError) as error:
        refusal = Refusal.of(error)
        if not target.holds:
            return replace(view, refusal=refusal)
        # a hold refused it: show what --skip-held would do (it may refuse too)
        try:
            plan, also, diff = _plan(snapshot, stage, skip_held=True)
        except (RefusedError, InputError) as again:
            return replace(view, refusal=refusal, skip_held_refusal=Refusal.of(again))
        shown = replace(view, refusal=refusal, skip_held=True, skip_held_refusal=also)
        return _filled(snapshot, shown, plan, diff)
    return _filled(snapshot, replace(view, refusal=refusal), plan, diff)


def _filled(snapshot: Snapshot, view: PlanView, plan: Plan, diff: str) -> PlanView:
    nothing = None
    if plan.empty:
        unchanged = ", ".join(plan.unchanged) or "no services"
        nothing = f"nothing to promote: {unchanged} already as planned in {view.stage}"
    return replace(
        view,
        subject=None if plan.empty else plan.subject(),
        rows=_rows(snapshot, plan, view.holds, view.skip_held),
        nothing=nothing,
        gates=_gates(plan),
        notes=tuple(plan.notes()),
        diff=_diff(diff),
    )


def _later_stages(site: Site) -> list[tuple[str, str]]:
    """(stage, the stage before it) for every stage a promotion can go into."""
    repo = site.snapshot().repo
    names = repo.environment_names
    return list(zip(names[1:], names[:-1], strict=True))


@router.get("/plan")
def plan_index(
    request: Request, stage: str | None = None, site: Site = Depends(site_of)
) -> Response:
    """The stages to plan a promotion into; ``?stage=`` (the form) redirects to its page."""
    if stage is not None:
        return RedirectResponse(f"/plan/{quote(stage, safe='')}", status_code=303)
    return page(request, "plan.html", {"stages": _later_stages(site), "view": None})


@router.get("/plan/{stage}")
def plan_page(request: Request, stage: str, site: Site = Depends(site_of)) -> Response:
    """The offline dry run of promoting every service into ``stage``."""
    target = site.environment(stage)
    repo = site.snapshot().repo
    if repo.previous(target.name) is None:
        # the CLI's own refusal of `promote --to <first stage>` (exit 2)
        try:
            plan_promotion(repo, [], all_services=True, to=target.name)
        except PlatformError as error:
            raise PageError(404, str(error)) from error
        raise AssertionError("a first stage has nothing to promote from")  # pragma: no cover
    fresh: Fresh[PlanView] = site.cached(
        f"plan:{target.name}", lambda snapshot: Fresh(snapshot, PLAN_TTL)
    )
    view = fresh.get(lambda snapshot: build_plan(snapshot, target.name))
    return page(
        request, "plan.html", {"stages": _later_stages(site), "view": view, "ttl": int(PLAN_TTL)}
    )
