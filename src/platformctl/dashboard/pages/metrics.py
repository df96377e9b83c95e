"""Metrics: DORA's four numbers per environment, as ``platform metrics`` computes them.

The numbers are ``dora.metrics`` over the CLI's window (``--since``, default ``30d``, parsed
by ``dora.parse_since``, whose message a bad value gets with status 400); the charts draw the
same report: deployments per week of each environment (from ``dora.deployments``, counted as
the report counts them: one commit is one deployment) and every lead time the report's median
and p90 are taken from. The window ends now, so the default window's page is kept per head
for ``METRICS_TTL`` seconds; another ``since`` is computed for its request only (a cache keyed
by any text a client sends would grow without bound).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup
from starlette.responses import Response

from platformctl.dashboard.app import site_of
from platformctl.dashboard.pages.plan import Fresh
from platformctl.dashboard.site import PageError, Site, Snapshot, status_of
from platformctl.dashboard.svg import Series, bar_chart, strip_chart
from platformctl.dashboard.templating import page
from platformctl.dora import HEADERS, Report, deployments, metrics, parse_since
from platformctl.errors import PlatformError
from platformctl.gates.config import format_duration

router = APIRouter()

DEFAULT_SINCE = "30d"  # `platform metrics --since` (cli/metrics_cmd.py)
METRICS_TTL = 60.0
WEEK = dt.timedelta(days=7)
MAX_BUCKETS = 26  # a longer window gets buckets of several weeks


@dataclass(frozen=True)
class MetricsView:
    since: str
    report: Report
    rows: tuple[tuple[str, ...], ...]
    computed: dt.datetime
    any_deployments: bool
    buckets: tuple[str, ...]  # each bucket's first day
    bucket_days: int
    per_bucket: tuple[tuple[str, tuple[int, ...]], ...]  # environment -> deployments per bucket
    deployments_chart: Markup | None
    lead_time_chart: Markup | None


def _buckets(start: dt.datetime, until: dt.datetime) -> tuple[dt.timedelta, list[dt.datetime]]:
    """Buckets of whole weeks counted back from ``until`` (the oldest may reach before
    ``start``), at most ``MAX_BUCKETS`` of them."""
    weeks = max(1, math.ceil((until - start) / WEEK))
    size = WEEK * math.ceil(weeks / MAX_BUCKETS)
    count = math.ceil((until - start) / size)
    return size, [until - size * (count - index) for index in range(count)]


def build_metrics(snapshot: Snapshot, since: str, now: dt.datetime) -> MetricsView:
    repo = snapshot.repo
    start = parse_since(since, now)
    report = metrics(snapshot.git, repo, start, now)
    size, starts = _buckets(start, now)
    commits: dict[str, list[set[str]]] = {
        m.environment: [set() for _ in starts] for m in report.environments
    }
    for d in deployments(snapshot.git, repo, report.services, list(commits)):
        if start <= d.time <= now:
            index = min(int((d.time - starts[0]) / size), len(starts) - 1)
            commits[d.environment][index].add(d.commit)
    per_bucket = tuple((env, tuple(len(c) for c in found)) for env, found in commits.items())
    labels = tuple(f"{s:%m-%d}" for s in starts)
    any_deployments = any(m.deployments for m in report.environments)
    unit = "week" if size == WEEK else f"{size.days // 7} weeks"
    deployments_chart = lead_time_chart = None
    if any_deployments:
        deployments_chart = bar_chart(
            "deployments-chart",
            f"Deployments per {unit} and environment",
            f"Commits that changed an image, per {unit} from {start:%Y-%m-%d} to "
            f"{now:%Y-%m-%d}, one bar per environment",
            labels,
            [Series(env, counts) for env, counts in per_bucket],
            lambda env, group, value: f"{env}, {unit} from {group}: {value:g} deployment(s)",
        )
        lead_time_chart = strip_chart(
            "lead-time-chart",
            "Lead time of each release",
            "From the first stage to each environment, one dot per release, with the median "
            "and p90 marked",
            [
                Series(
                    m.environment,
                    [t.total_seconds() for t in m.lead_times],
                    [
                        (name, value.total_seconds())
                        for name, value in (
                            ("median", m.lead_time_median),
                            ("p90", m.lead_time_p90),
                        )
                        if value is not None
                    ],
                )
                for m in report.environments
            ],
            lambda seconds: format_duration(dt.timedelta(seconds=seconds)),
        )
    return MetricsView(
        since=since,
        report=report,
        rows=tuple(tuple(m.row()) for m in report.environments),
        computed=now.replace(microsecond=0),
        any_deployments=any_deployments,
        buckets=labels,
        bucket_days=size.days,
        per_bucket=per_bucket,
        deployments_chart=deployments_chart,
        lead_time_chart=lead_time_chart,
    )


def _view(site: Site, since: str) -> MetricsView:
    if since == DEFAULT_SINCE:
        fresh: Fresh[MetricsView] = site.cached(
            f"metrics:{since}", lambda snapshot: Fresh(snapshot, METRICS_TTL)
        )
        return fresh.get(lambda snapshot: build_metrics(snapshot, since, dt.datetime.now(dt.UTC)))
    snapshot = site.snapshot()
    try:
        return build_metrics(snapshot, since, dt.datetime.now(dt.UTC))
    except PlatformError as error:
        raise PageError(status_of(error), str(error)) from error


@router.get("/metrics")
def metrics_page(
    request: Request, since: str = DEFAULT_SINCE, site: Site = Depends(site_of)
) -> Response:
    """The four numbers of every environment over the window, their table and charts."""
    try:
        parse_since(since, dt.datetime.now(dt.UTC))
    except PlatformError as error:  # the CLI's message for the same --since (exit 2)
        raise PageError(400, str(error)) from error
    view = _view(site, since)
    return page(
        request,
        "metrics.html",
        {"view": view, "headers": HEADERS, "default_since": DEFAULT_SINCE},
    )
