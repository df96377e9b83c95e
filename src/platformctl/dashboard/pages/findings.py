"""Findings: the last ``platform verify`` result of each environment, as the run recorded it
(``platformctl.verify_record``). The page never runs the gate: it says how old the result is
and whether the branch moved since, so a reader knows what it is worth."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from platformctl.dashboard.app import site_of
from platformctl.dashboard.site import Site
from platformctl.dashboard.templating import page
from platformctl.output import with_age
from platformctl.verify_record import EnvironmentResult, last_results

router = APIRouter()


@dataclass(frozen=True)
class EnvironmentFindings:
    """One environment's section of the page."""

    name: str
    result: EnvironmentResult | None  # None: never verified (or the record is unreadable)
    head: str

    @property
    def when(self) -> str:
        """The time and age as the CLI prints times (``2026-11-22 16:13 UTC (3 hours ago)``)."""
        return with_age(self.result.at) if self.result else ""

    @property
    def stale(self) -> bool:
        """The branch moved since the run (a run on uncommitted edits verified neither)."""
        return self.result is not None and self.result.commit != self.head


def sections(site: Site, names: tuple[str, ...]) -> list[EnvironmentFindings]:
    """The sections of ``names``, read from the record on each request: a verify run changes
    it without moving the head, so it is not a view cached per head."""
    snapshot = site.snapshot()
    recorded = last_results(snapshot.repo.root)
    return [EnvironmentFindings(name, recorded.get(name), snapshot.head) for name in names]


@router.get("/findings", response_class=HTMLResponse)
def findings(request: Request, site: Site = Depends(site_of)) -> Response:
    names = site.snapshot().repo.environment_names  # pipeline order
    context = {"sections": sections(site, names), "single": None}
    return page(request, "findings.html", context)


@router.get("/findings/{environment}", response_class=HTMLResponse)
def environment_findings(
    request: Request, environment: str, site: Site = Depends(site_of)
) -> Response:
    name = site.environment(environment).name  # 404 with the CLI's message
    context = {"sections": sections(site, (name,)), "single": name}
    return page(request, "findings.html", context)
