"""The budget gate against a real Prometheus that evaluates this repository's own
PrometheusRules (rendered by the chart render path, checked by promtool) over a simulated
service's traffic: the burn-rate alerts fire through Prometheus's rule evaluation.

Three services run in the target stage: one healthy, one burning its budget fast enough to
page, one that has slowly spent most of it (no alert, but below the stage's minimum).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from platformctl.gates.budget import budget_of, check_budget, error_ratio_query, retention
from platformctl.gates.config import BudgetGate
from platformctl.gates.results import Verdict, parse_trailer
from platformctl.model import Endpoint, load_repo
from platformctl.prometheus import Prometheus
from platformctl.render import Renderer
from tests.chart.test_delivery import _promtool as promtool
from tests.cli.test_bad_input import state
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, make_fleet
from tests.support.components import free_port
from tests.support.prometheus import (
    RunningPrometheus,
    Workload,
    prometheus_scraping,
    start_prometheus,
)

Cli = Callable[..., Any]
CALM, BURNING, SPENT = "calm", "burning", "spent"
# each service's error ratio at 50 requests/s; the chart's objective allows 1 % errors
TRAFFIC = {CALM: 0.001, BURNING: 0.5, SPENT: 0.009}
TARGET = "production"


def _configure(fleet: Fleet) -> int:
    """The target runs every service with its ServiceMonitor and alerts; each burn-rate alert
    of the chart's defaults (how many: returned) fires after one second, not two minutes."""
    defaults = yaml.safe_load((fleet.root / "charts/service/values.yaml").read_text())
    rates = [{**rate, "for": "1s"} for rate in defaults["alerts"]["burnRates"]]

    def alerting(values: Any) -> None:
        values["serviceMonitor"] = {"enabled": True}
        values["alerts"] = {"enabled": True, "burnRates": rates}

    for service in fleet.services:
        edit_yaml(fleet.values(TARGET, service), alerting)
    git(fleet.root, "commit", "-qam", "alerts that fire after a second")
    return len(rates)


@dataclass
class World:
    template: Fleet
    prometheus: RunningPrometheus
    rules: Path


def _kept_by_the_addons(root: Path, environment: str) -> str:
    """How long the add-ons have the environment's Prometheus keep samples."""

    def retention(path: Path) -> Any:
        values = yaml.safe_load(path.read_text()) or {}
        stack = ((values.get("addons") or {}).get("kube-prometheus-stack") or {}).get("values")
        return (((stack or {}).get("prometheus") or {}).get("prometheusSpec") or {}).get(
            "retention"
        )

    kept = retention(root / f"environments/addons/{environment}.yaml")
    return str(kept or retention(root / "charts/addons/values.yaml"))


def _rule_file(fleet: Fleet, path: Path) -> Path:
    """The target's PrometheusRules as Argo CD renders them, in one promtool-valid file."""
    repo = load_repo(fleet.root)
    renderer = Renderer(repo)
    groups = [
        group
        for release in repo.select([TARGET])
        for document in renderer.release(release).documents
        if document["kind"] == "PrometheusRule"
        for group in document["spec"]["groups"]
    ]
    path.write_text(yaml.safe_dump({"groups": groups}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return path


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    pytest.fail(f"Prometheus never showed {what} in 30 s")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("budget")
    template = make_fleet(folder / "template", list(TRAFFIC))
    burn_rates = _configure(template)
    rules = _rule_file(template, folder / "rules.yaml")
    namespace = load_repo(template.root).environment(TARGET).namespace
    workload = Workload(namespace)
    for service, errors in TRAFFIC.items():
        workload.set(service, per_second=50.0, error_ratio=errors, latency=0.05)
    kept = _kept_by_the_addons(template.root, TARGET)
    with start_prometheus(folder / "prometheus", workload, [rules], kept) as running:
        api = Prometheus(Endpoint(running.url))

        def scraped() -> bool:
            counts = [
                api.value(f'min(count_over_time(http_requests_total{{service="{s}"}}[1h]))')
                for s in TRAFFIC
            ]
            return all(count is not None and count >= 3 for count in counts)

        _until(scraped, "three scrapes of every service")
        burning = f'alertname=~"ErrorBudgetBurn.+", service="{BURNING}"'
        firing = f'count(ALERTS{{alertstate="firing", {burning}}})'
        _until(lambda: api.value(firing) == burn_rates, f"{BURNING}'s burn-rate alerts firing")
        yield World(template, running, rules)


def _declare(root: Path, gate: Any) -> None:
    def change(pipeline: Any) -> None:
        for stage in pipeline["stages"]:
            if stage["name"] == TARGET:
                stage["gates"] = {"budget": gate}

    edit_yaml(root / "environments/pipeline.yaml", change, sequence_indent=4)


def _fleet(world: World, tmp_path: Path, url: str, minimum: str = "25%") -> Fleet:
    """A clone of the template whose target declares the gate and its own Prometheus; the
    stage before runs a newer build of every service."""
    root = tmp_path / "repo"
    shutil.copytree(world.template.root, root, symlinks=True)
    fleet = Fleet(root, world.template.stages, world.template.services)

    def endpoint(settings: Any) -> None:
        settings["endpoints"]["prometheus"] = {"url": url}

    _declare(root, {"minimum": minimum})
    edit_yaml(root / f"environments/{TARGET}/environment.yaml", endpoint)
    before = fleet.stages[fleet.stages.index(TARGET) - 1]
    for service in fleet.services:
        fleet.set_image(before, service, 2, commit=False)
    git(root, "commit", "-qam", f"the budget gate on {TARGET}; newer builds in {before}")
    return fleet


def _promote(fleet: Fleet, cli: Cli, service: str, code: int) -> Any:
    """A promotion into the target that exits ``code``; a refused one changes nothing."""
    before = state(fleet.root)
    result = cli(fleet.root, "promote", service, "--to", TARGET)
    assert result.exit_code == code, result.output
    if code:
        assert state(fleet.root) == before
    return result


def _gate_rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("budget ")]


def test_a_healthy_target_passes_and_the_evidence_is_in_the_trailers(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    fleet = _fleet(world, tmp_path, world.prometheus.url)
    _promote(fleet, cli, CALM, 0)
    message = git(fleet.root, "log", "-1", "--format=%B")
    trailers = [
        parse_trailer(line.removeprefix("Platform-Gate: "))
        for line in message.splitlines()
        if line.startswith("Platform-Gate: budget/")
    ]
    assert [(t.subject, t.verdict) for t in trailers if t] == [
        (f"budget/{CALM}", "passed"),
        (f"budget/{CALM}", "passed"),
    ]
    alerts, left = (t.measured for t in trailers if t)
    assert alerts == (
        f"no burn-rate alert firing in {TARGET} (ErrorBudgetBurnCritical, ErrorBudgetBurnWarning)"
    )
    assert left == "90 % of the 30d error budget left ≥ 25 % (errors 0.10 % of 1.00 %)"


def test_a_firing_burn_rate_alert_refuses_and_changes_nothing(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    fleet = _fleet(world, tmp_path, world.prometheus.url)
    refused = _promote(fleet, cli, BURNING, 1)
    rows = _gate_rows(refused.stdout)
    assert any(
        "failed" in row
        and f"ErrorBudgetBurnCritical, ErrorBudgetBurnWarning firing in {TARGET}" in row
        for row in rows
    ), rows
    assert "--override budget --reason TEXT" in refused.stderr


def test_a_spent_budget_refuses_below_the_minimum_without_any_alert(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    fleet = _fleet(world, tmp_path, world.prometheus.url)
    rows = _gate_rows(_promote(fleet, cli, SPENT, 1).stdout)
    assert any("passed" in row and "no burn-rate alert firing" in row for row in rows), rows
    assert any(
        "failed" in row and "10 % of the 30d error budget left < 25 % (errors 0.90 %" in row
        for row in rows
    ), rows
    # the same service passes a stage that asks only that its budget is not spent
    lenient = _fleet(world, tmp_path / "lenient", world.prometheus.url, minimum="5%")
    _promote(lenient, cli, SPENT, 0)


def test_an_alert_the_targets_prometheus_does_not_evaluate_is_not_taken_for_silence(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    """Git names a burn rate the target's Prometheus has not loaded (the PrometheusRule not
    synced yet): "not firing" would mean nothing, so the gate fails."""
    fleet = _fleet(world, tmp_path, world.prometheus.url)

    def informational(values: Any) -> None:
        values["alerts"]["burnRates"] = [
            {"severity": "info", "factor": 3, "long": "1d", "short": "2h"}
        ]

    edit_yaml(fleet.values(TARGET, CALM), informational)
    git(fleet.root, "commit", "-qam", "an informational burn rate, not synced")
    rows = _gate_rows(_promote(fleet, cli, CALM, 1).stdout)
    assert any(
        "failed" in row
        and f'{TARGET}\'s Prometheus has no rule ErrorBudgetBurnInfo{{service="{CALM}"}} loaded'
        in row
        for row in rows
    ), rows
    assert any("passed" in row and "90 % of the 30d error budget left" in row for row in rows)


def test_an_unreachable_prometheus_fails_closed_as_an_environment_problem(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    fleet = _fleet(world, tmp_path, f"http://127.0.0.1:{free_port()}")
    result = _promote(fleet, cli, CALM, 3)
    assert "Prometheus at http://127.0.0.1:" in result.stderr
    assert "unreachable" in result.stderr
    assert "--override budget" in result.stderr


def test_a_prometheus_that_keeps_less_than_the_budget_window_is_refused(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    """A range query over the chart's 30d on a Prometheus that keeps 15d (its default) covers
    15d: the budget left would be of half the window, and read as the whole."""
    workload = world.prometheus.workload
    with start_prometheus(tmp_path / "short", workload, [world.rules], "15d") as short:
        fleet = _fleet(world, tmp_path, short.url)
        rows = _gate_rows(_promote(fleet, cli, CALM, 1).output)
    assert any(
        "failed" in row and "keeps 15d of samples, less than the 30d budget window" in row
        for row in rows
    ), rows


DAY = dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("flags", "kept"),
    [
        ((), ("15d", 15 * DAY)),  # Prometheus's default
        (("--storage.tsdb.retention.time=1y2w",), ("379d", 379 * DAY)),
        (
            ("--storage.tsdb.retention.time=30d", "--storage.tsdb.retention.size=1GB"),
            ("30d", 30 * DAY),
        ),
        (("--storage.tsdb.retention.size=1GB",), None),  # a size alone: no time limit
    ],
    ids=["default", "years and weeks", "time or size", "size alone"],
)
def test_the_retention_is_the_one_prometheus_applies(
    tmp_path: Path, flags: tuple[str, ...], kept: tuple[str, dt.timedelta] | None
) -> None:
    with prometheus_scraping(tmp_path, [], flags=flags) as url:
        assert retention(Prometheus(Endpoint(url))) == kept


def test_rollbacks_and_holds_are_not_held_back_by_a_burning_target(
    world: World, tmp_path: Path, cli: Cli
) -> None:
    fleet = _fleet(world, tmp_path, world.prometheus.url)
    _promote(fleet, cli, BURNING, 1)  # firing
    fleet.set_image(TARGET, BURNING, 2)  # build 2 deployed by hand, after build 1
    rolled = cli(fleet.root, "rollback", BURNING, "--env", TARGET, "--reason", "INC-7 burning")
    assert rolled.exit_code == 0, rolled.output
    assert fleet.image(TARGET, BURNING).tag == "1.1.0"
    assert BURNING in fleet.holds(TARGET)
    held = cli(fleet.root, "hold", SPENT, "--env", TARGET, "--reason", "budget spent")
    assert held.exit_code == 0, held.output
    assert SPENT in fleet.holds(TARGET)


def test_the_budget_is_the_one_the_chart_renders_for_the_release(
    world: World, tmp_path: Path
) -> None:
    fleet = _fleet(world, tmp_path, world.prometheus.url)

    def stricter(values: Any) -> None:
        values["alerts"]["budgetWindow"] = "7d"
        values["alerts"]["burnRates"] = [
            {"severity": "info", "factor": 3, "long": "1d", "short": "2h"}
        ]
        values["delivery"]["analysis"] = {"objectives": {"errorRatio": 0.001}}

    edit_yaml(fleet.values(TARGET, CALM), stricter)
    repo = load_repo(fleet.root)
    release = repo.release(CALM, TARGET)
    renderer = Renderer(repo)
    budget = budget_of(renderer, release)
    assert budget is not None
    # the gate measures what the chart's ErrorBudgetExhausted alert measures
    [exhausted] = [
        rule
        for document in renderer.release(release).documents
        if document["kind"] == "PrometheusRule"
        for group in document["spec"]["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "ErrorBudgetExhausted"
    ]
    assert exhausted["expr"] == f"{error_ratio_query(release, '7d')} > 0.001"
    assert budget.alerts == (
        {"alertname": "ErrorBudgetBurnInfo", "severity": "info", "service": CALM},
    )
    assert (budget.objective, budget.window) == (0.001, "7d")

    def silent(values: Any) -> None:
        values["alerts"] = {"enabled": False}

    edit_yaml(fleet.values(TARGET, SPENT), silent)
    quiet = load_repo(fleet.root).release(SPENT, TARGET)
    assert budget_of(renderer, quiet) is None
    unreachable = Prometheus(Endpoint(f"http://127.0.0.1:{free_port()}"))  # never asked
    [result] = check_budget(unreachable, None, BudgetGate(), quiet, dt.datetime.now(dt.UTC))
    assert (result.verdict, result.measured) == (
        Verdict.failed,
        f"{SPENT} renders no PrometheusRule (alerts.enabled) in {TARGET}: nothing to ask",
    )


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"minimum": "150%"}, "budget.minimum: '150%' is more than the whole budget"),
        ({"minimum": "25"}, "budget.minimum: '25' is not a percentage such as 25%"),
        ({"minimum": "-5%"}, "budget.minimum: '-5%' is not a percentage such as 25%"),
        ({"minimum": 0.25}, "budget.minimum: expected a string, got a number"),
        ({"minimum": "25%", "window": "30d"}, "unknown key 'window'"),
    ],
)
def test_bad_declarations_are_one_line_at_load(
    world: World, tmp_path: Path, cli: Cli, gate: dict[str, Any], message: str
) -> None:
    fleet = _fleet(world, tmp_path, world.prometheus.url)

    _declare(fleet.root, gate)
    git(fleet.root, "commit", "-qam", "a bad budget gate")
    before = state(fleet.root)
    result = cli(fleet.root, "promote", CALM, "--to", TARGET, "--dry-run")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert "environments/pipeline.yaml:" in line
    assert message in line
    assert state(fleet.root) == before


def test_the_gate_needs_the_targets_own_prometheus(world: World, tmp_path: Path, cli: Cli) -> None:
    fleet = _fleet(world, tmp_path, world.prometheus.url)

    def drop(settings: Any) -> None:
        del settings["endpoints"]["prometheus"]

    edit_yaml(fleet.root / f"environments/{TARGET}/environment.yaml", drop)
    git(fleet.root, "commit", "-qam", "no Prometheus")
    result = cli(fleet.root, "promote", CALM, "--to", TARGET, "--dry-run")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert f"the budget gate of {TARGET} asks its own Prometheus" in line


def test_the_chart_alerts_when_the_budget_the_gate_measures_is_spent(tmp_path: Path) -> None:
    """ErrorBudgetExhausted, over the window and objective the gate reads, through promtool's
    rule tests (a one-day window, to keep it short): 0.5 % errors for a day stay inside a 1 %
    budget, 2 % spend it."""
    from tests.chart.test_service_chart import NAME, one, render

    values = {
        "serviceMonitor": {"enabled": True},
        "alerts": {"enabled": True, "budgetWindow": "1d"},
    }
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump({"groups": one(render(values), "PrometheusRule")["spec"]["groups"]})
    )
    labels = f'namespace="apps", service="{NAME}"'

    def day(errors: int) -> list[dict[str, str]]:  # of 1000 requests every 10 minutes
        return [
            {
                "series": f'http_requests_total{{{labels}, status="200"}}',
                "values": f"0+{1000 - errors}x160",
            },
            {
                "series": f'http_requests_total{{{labels}, status="500"}}',
                "values": f"0+{errors}x160",
            },
        ]

    def case(errors: int, expected: list[dict[str, Any]]) -> dict[str, Any]:
        at = {"eval_time": "25h", "alertname": "ErrorBudgetExhausted", "exp_alerts": expected}
        return {"interval": "10m", "input_series": day(errors), "alert_rule_test": [at]}

    spent = {
        "exp_labels": {"severity": "warning", "service": NAME},
        "exp_annotations": {
            "summary": f"{NAME} has spent its error budget over 1d",
            "description": "Error ratio over 1d is 2%; the objective allows 0.01.",
        },
    }
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "10m",
        "tests": [case(5, []), case(20, [spent])],
    }
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
