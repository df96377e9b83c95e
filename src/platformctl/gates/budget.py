"""Is the stage a promotion goes INTO healthy enough to take a change? Asked of its own
Prometheus: none of the service's burn-rate alerts firing, enough of its error budget left.

What to ask comes from the chart, never from constants here: the alert names and labels from
the PrometheusRule the target's release renders (the rules its Prometheus evaluates), the
objective (``delivery.analysis.objectives.errorRatio``) and the budget's window
(``alerts.budgetWindow``) from the values that render used.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Template
from typing import Any

from platformctl.gates.config import DEFAULT_OBJECTIVES, BudgetGate, parse_duration
from platformctl.gates.results import GateResult, Verdict
from platformctl.model import Environment, Release, Repo, merge_values
from platformctl.prometheus import Prometheus
from platformctl.render import Renderer
from platformctl.yamlio import read_mapping

BURN_RATE_GROUP = ".burn-rate"  # the suffix of the PrometheusRule group of burn-rate alerts
# The chart's error-ratio expression is the slo gate's (tests/chart/test_delivery.py holds
# the analysis to the same queries); here over the budget's window.
_ERROR_RATIO = next(o for o in DEFAULT_OBJECTIVES if o.name == "error-ratio")


@dataclass(frozen=True)
class Budget:
    """What the release's chart declares about its error budget."""

    # each burn-rate alert as the labels of its ALERTS series: alertname and the rule's labels
    alerts: tuple[Mapping[str, str], ...]
    objective: float  # the error ratio the budget allows
    window: str  # a Prometheus duration, as the chart writes it into the rule


def budget_of(renderer: Renderer, release: Release) -> Budget | None:
    """The release's budget as its chart renders it; None when it renders no PrometheusRule."""
    job = renderer.release_job(release)
    groups = [
        group
        for document in renderer.render(job).documents
        if document.get("kind") == "PrometheusRule"
        for group in (document.get("spec") or {}).get("groups") or []
    ]
    if not groups:
        return None
    alerts = tuple(
        {"alertname": str(rule["alert"]), **{k: str(v) for k, v in rule.get("labels", {}).items()}}
        for group in groups
        if str(group.get("name", "")).endswith(BURN_RATE_GROUP)
        for rule in group.get("rules") or []
        if "alert" in rule
    )
    # Helm coalesces the chart's defaults under the release's values
    values: dict[str, Any] = merge_values(
        read_mapping(renderer.repo.service_chart / "values.yaml"), job.values
    )
    objective = float(values["delivery"]["analysis"]["objectives"]["errorRatio"])
    return Budget(alerts, objective, str(values["alerts"]["budgetWindow"]))


def firing_query(alert: Mapping[str, str]) -> str:
    """How many series of this alert fire (no data: none)."""
    labels = ", ".join(f"{name}={json.dumps(value)}" for name, value in alert.items())
    return f'count(ALERTS{{alertstate="firing", {labels}}})'


def error_ratio_query(release: Release, window: str) -> str:
    names = {
        "service": release.service,
        "namespace": release.environment.namespace,
        "window": window,
    }
    return Template(_ERROR_RATIO.query).safe_substitute(names)


def check_budget(
    prometheus: Prometheus,
    budget: Budget | None,
    gate: BudgetGate,
    release: Release,
    now: dt.datetime,
    kept: Callable[[], tuple[str, dt.timedelta] | None] | None = None,
) -> list[GateResult]:
    """Two results for ``release`` (the service as it runs in the target now): its burn-rate
    alerts, and the share of its error budget left over the window. ``kept``: the target's
    retention, asked once for all its services (else of ``prometheus`` here)."""
    env = release.environment.name

    def result(verdict: Verdict, measured: str) -> GateResult:
        return GateResult("budget", release.service, verdict, measured)

    if budget is None or not budget.alerts:
        missing = "no PrometheusRule (alerts.enabled)" if budget is None else "no burn-rate alert"
        measured = f"{release.service} renders {missing} in {env}: nothing to ask"
        return [result(Verdict.failed, measured)]
    results = [result(*_alerts(prometheus, budget.alerts, env, now))]
    retained = kept() if kept else retention(prometheus)
    if retained is not None and retained[1] < parse_duration(budget.window):
        measured = (
            f"{env}'s Prometheus keeps {retained[0]} of samples, less than the {budget.window} "
            f"budget window: the budget left would be of {retained[0]} only (raise "
            "kube-prometheus-stack's prometheus.prometheusSpec.retention in the add-ons, or "
            "shorten alerts.budgetWindow)"
        )
        results.append(result(Verdict.failed, measured))
        return results
    ratio = prometheus.value(error_ratio_query(release, budget.window), at=now)
    if ratio is None:
        results.append(result(Verdict.failed, f"no requests in {env} over {budget.window}"))
        return results
    left = 1 - ratio / budget.objective
    verdict = Verdict.passed if left >= gate.minimum else Verdict.failed
    sign = "≥" if verdict is Verdict.passed else "<"
    results.append(
        result(
            verdict,
            f"{_percent(left)} of the {budget.window} error budget left {sign} "
            f"{_percent(gate.minimum)} "
            f"(errors {_percent(ratio, 2)} of {_percent(budget.objective, 2)})",
        )
    )
    return results


_PROMETHEUS_DURATION = re.compile(r"(?:[0-9]+(?:ms|[ywdhms]))+")


def retention(prometheus: Prometheus) -> tuple[str, dt.timedelta] | None:
    """How long the Prometheus keeps samples, as it says (``storageRetention`` of its runtime
    information: ``15d``, ``30d or 50GiB``); None when only a size limits it. A range query
    over a longer window quietly covers only what is kept."""
    body = prometheus.api.call("GET", "/api/v1/status/runtimeinfo")
    data = (body.get("data") if isinstance(body, dict) else None) or {}
    for part in str(data.get("storageRetention") or "").split(" or "):
        text = part.strip()
        if _PROMETHEUS_DURATION.fullmatch(text):
            return text, parse_duration(text)
    return None


def _alerts(
    prometheus: Prometheus, alerts: tuple[Mapping[str, str], ...], env: str, now: dt.datetime
) -> tuple[Verdict, str]:
    unevaluated = _unevaluated(prometheus, alerts)
    if unevaluated:
        return Verdict.failed, f"{env}'s Prometheus {unevaluated}"
    names = [alert["alertname"] for alert in alerts]
    firing = [
        name
        for name, alert in zip(names, alerts, strict=True)
        if prometheus.value(firing_query(alert), at=now)
    ]
    if firing:
        return Verdict.failed, f"{', '.join(firing)} firing in {env}"
    return Verdict.passed, f"no burn-rate alert firing in {env} ({', '.join(names)})"


def _unevaluated(prometheus: Prometheus, alerts: tuple[Mapping[str, str], ...]) -> str | None:
    """Why an alert could not be firing though it should (None: all are evaluated): no rule
    loaded with its name and labels (the PrometheusRule not synced, or refused by the
    operator), or its rule fails to evaluate. "Not firing" means nothing then."""
    body = prometheus.api.call("GET", "/api/v1/rules", params={"type": "alert"})
    groups = ((body.get("data") if isinstance(body, dict) else None) or {}).get("groups") or []
    loaded = [rule for group in groups for rule in group.get("rules") or []]
    for alert in alerts:
        labels = {k: v for k, v in alert.items() if k != "alertname"}
        rule = next(
            (
                rule
                for rule in loaded
                if rule.get("name") == alert["alertname"]
                and labels.items() <= (rule.get("labels") or {}).items()
            ),
            None,
        )
        name = f"{alert['alertname']}{{service={json.dumps(labels.get('service', ''))}}}"
        if rule is None:
            return f"has no rule {name} loaded (is the PrometheusRule synced?)"
        if rule.get("health") == "err":
            return f"fails to evaluate {name}: {rule.get('lastError', 'no error given')}"
    return None


def _percent(share: float, digits: int = 0) -> str:
    return f"{share * 100:.{digits}f} %"


class TargetBudgets:
    """The budget gate of one promotion: one renderer and one client for every service."""

    def __init__(self, repo: Repo, target: Environment, client: Callable[[], Prometheus]) -> None:
        self.repo = repo
        self.target = target
        self.client = client  # made on first use: a missing token fails this gate only
        self.renderer = Renderer(repo)
        self.rendering = threading.Lock()  # services run in threads; the renderer caches charts
        self.asking = threading.Lock()
        self.kept: list[tuple[str, dt.timedelta] | None] = []  # the retention, once asked

    def retention(self) -> tuple[str, dt.timedelta] | None:
        """The target's retention, asked of its Prometheus once for every service."""
        with self.asking:
            if not self.kept:
                self.kept.append(retention(self.client()))
        return self.kept[0]

    def check(self, service: str, gate: BudgetGate, now: dt.datetime) -> list[GateResult]:
        running = self.repo.releases.get((service, self.target.name))
        if running is None:  # its first promotion there (platform new service)
            measured = f"not running in {self.target.name} yet: no error budget spent"
            return [GateResult("budget", service, Verdict.passed, measured)]
        with self.rendering:
            budget = budget_of(self.renderer, running)
        return check_budget(self.client(), budget, gate, running, now, self.retention)
