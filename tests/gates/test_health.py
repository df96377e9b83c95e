"""SLO gate against a real Prometheus; Argo CD gate and --wait against recorded API shapes."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from platformctl.argocd import ArgoCD, WaitTimedOut, wait_until_synced
from platformctl.gates.config import DEFAULT_OBJECTIVES, Objective, SloGate
from platformctl.gates.health import check_argocd, check_slo
from platformctl.gates.results import Verdict
from platformctl.git import Git
from platformctl.httpapi import EndpointError, EndpointUnreachable
from platformctl.model import Endpoint, load_repo
from platformctl.prometheus import Prometheus
from tests.gates.conftest import SERVICES, Gated
from tests.release.fleet import image
from tests.support.argocd import AppState, FakeArgoCD
from tests.support.components import free_port
from tests.support.prometheus import RunningPrometheus

WINDOW = dt.timedelta(seconds=5)
HEALTHY = {"per_second": 30.0, "error_ratio": 0.002, "latency": 0.08}


def _wait_for_data(prometheus: RunningPrometheus, service: str) -> None:
    """Until the window holds enough scrapes of ``service`` for rate() to mean something."""
    api = Prometheus(Endpoint(prometheus.url))
    query = f'count_over_time(http_requests_total{{service="{service}",status="200"}}[5s])'
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        value = api.value(query)
        if value is not None and value >= 4:
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus has no data for {service} after 30 s")


def _slo(
    prometheus: RunningPrometheus, gated: Gated, service: str
) -> dict[str, tuple[Verdict, str]]:
    release = load_repo(gated.root).release(service, "staging")
    results = check_slo(
        Prometheus(Endpoint(prometheus.url)),
        SloGate(WINDOW),
        release,
        dt.datetime.now(dt.UTC),
    )
    return {r.measured.split()[0]: (r.verdict, r.measured) for r in results}


def test_slo_gate_passes_a_healthy_service_and_names_each_failure(
    prometheus: RunningPrometheus, gated: Gated
) -> None:
    workload = prometheus.workload
    healthy_service, slow_service, erroring_service, idle_service = SERVICES
    workload.set(healthy_service, **HEALTHY)
    workload.set(slow_service, per_second=30.0, error_ratio=0.002, latency=0.4)
    workload.set(erroring_service, per_second=30.0, error_ratio=0.05, latency=0.08)
    workload.set(idle_service, per_second=5.0, error_ratio=0.0, latency=0.08)
    for service in SERVICES:
        _wait_for_data(prometheus, service)

    healthy = _slo(prometheus, gated, healthy_service)
    assert {verdict for verdict, _ in healthy.values()} == {Verdict.passed}, healthy
    assert "< 200 ms" in healthy["p95-latency"][1]
    assert "/min > 1000/min" in healthy["throughput"][1]

    slow = _slo(prometheus, gated, slow_service)
    assert slow["p95-latency"][0] is Verdict.failed
    assert "≥ 200 ms" in slow["p95-latency"][1]
    assert slow["error-ratio"][0] is Verdict.passed

    erroring = _slo(prometheus, gated, erroring_service)
    assert erroring["error-ratio"][0] is Verdict.failed
    assert erroring["p95-latency"][0] is Verdict.passed

    idle = _slo(prometheus, gated, idle_service)
    assert idle["throughput"][0] is Verdict.failed
    assert idle["p95-latency"][0] is Verdict.passed


def test_slo_gate_follows_the_service_into_a_failing_state(
    prometheus: RunningPrometheus, gated: Gated
) -> None:
    prometheus.workload.set("svc-a", **HEALTHY)
    _wait_for_data(prometheus, "svc-a")
    assert _slo(prometheus, gated, "svc-a")["p95-latency"][0] is Verdict.passed
    prometheus.workload.set("svc-a", per_second=30.0, error_ratio=0.002, latency=0.9)
    time.sleep(WINDOW.total_seconds() + 2.5)  # the window now holds only slow requests
    assert _slo(prometheus, gated, "svc-a")["p95-latency"][0] is Verdict.failed
    prometheus.workload.set("svc-a", **HEALTHY)


def test_no_data_bad_queries_and_a_dead_prometheus(
    prometheus: RunningPrometheus, gated: Gated
) -> None:
    release = load_repo(gated.root).release("svc-a", "staging")
    api = Prometheus(Endpoint(prometheus.url))
    silent = Objective(
        "p95-latency", DEFAULT_OBJECTIVES[0].query.replace("${service}", "ghost"), 0.2, below=True
    )
    [result] = check_slo(api, SloGate(WINDOW, (silent,)), release, dt.datetime.now(dt.UTC))
    assert result.verdict is Verdict.failed
    assert "no data over 5s" in result.measured
    with pytest.raises(EndpointError, match=r"Prometheus .* answered 400"):
        api.value("sum(rate(http_requests_total[5s]")
    with pytest.raises(EndpointError, match=r"returned .* series, not one"):
        api.value("http_requests_total")
    dead = Prometheus(Endpoint(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(
        EndpointUnreachable, match=r"Prometheus at http://127\.0\.0\.1:\d+ unreachable"
    ):
        dead.value("1")


def _argocd_case(gated: Gated, argocd: tuple[FakeArgoCD, str]) -> tuple[ArgoCD, FakeArgoCD]:
    fake, url = argocd
    return ArgoCD(Endpoint(url, "ARGOCD_TOKEN_STAGING")), fake


def test_argocd_gate_reads_sync_health_and_the_deployed_revision(
    gated: Gated, argocd: tuple[FakeArgoCD, str]
) -> None:
    client, fake = _argocd_case(gated, argocd)
    release = load_repo(gated.root).release("svc-a", "staging")
    git = Git(gated.root)
    head = gated.head()
    fake.apps["svc-a-staging"] = AppState(revision=head, image=release.image.reference)
    passed = check_argocd(client, git, release)
    assert passed.verdict is Verdict.passed, passed
    assert passed.measured == f"svc-a-staging Synced/Healthy at {head[:12]}"

    fake.apps["svc-a-staging"] = AppState(health="Degraded", revision=head)
    degraded = check_argocd(client, git, release)
    assert degraded.verdict is Verdict.failed
    assert "Synced/Degraded" in degraded.measured

    # Synced and Healthy, but at a commit from before the image reached staging
    before = git.run("rev-parse", "HEAD~1").strip()
    fake.apps["svc-a-staging"] = AppState(revision=before)
    stale = check_argocd(client, git, release)
    assert stale.verdict is Verdict.failed
    first = image("svc-a", 1).label  # what the repository's first commit deploys
    assert f"which deploys {first}, not {release.image.label}" in stale.measured

    fake.apps["svc-a-staging"] = AppState(revision="f" * 40)
    unknown = check_argocd(client, git, release)
    assert "this clone does not have (git fetch)" in unknown.measured

    with pytest.raises(EndpointError, match=r'404 .* "svc-b-staging" not found'):
        check_argocd(client, git, load_repo(gated.root).release("svc-b", "staging"))


def test_argocd_needs_its_token(
    gated: Gated, argocd: tuple[FakeArgoCD, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = argocd
    monkeypatch.setenv("ARGOCD_TOKEN_STAGING", "not-the-token")
    with pytest.raises(EndpointError, match=r"answered 401 .* token signature is invalid"):
        ArgoCD(Endpoint(url, "ARGOCD_TOKEN_STAGING")).application("x")
    monkeypatch.delenv("ARGOCD_TOKEN_STAGING")
    from platformctl.errors import InputError

    with pytest.raises(InputError, match=r"needs a token in \$ARGOCD_TOKEN_STAGING"):
        ArgoCD(Endpoint(url, "ARGOCD_TOKEN_STAGING"))


def test_wait_refreshes_then_polls_until_synced_at_the_commit(
    gated: Gated, argocd: tuple[FakeArgoCD, str]
) -> None:
    client, fake = _argocd_case(gated, argocd)
    head = gated.head()
    fake.apps["svc-a-staging"] = AppState(revision="0" * 40)
    fake.on_refresh = lambda _name: head
    fake.polls_to_sync = 3
    waited = wait_until_synced(
        client, "svc-a-staging", git=Git(gated.root), commit=head, timeout=30, interval=0.01
    )
    assert waited.state.settled
    assert waited.state.revision == head
    assert waited.polls == 4
    assert fake.requests[0].query == {"refresh": ["normal"]}
    assert all(not r.query for r in fake.requests[1:])

    fake.apps["svc-a-staging"] = AppState(sync="OutOfSync", revision="0" * 40)
    fake.on_refresh = lambda _name: None  # Argo CD never picks the commit up
    with pytest.raises(
        WaitTimedOut, match=r"not Synced and Healthy .* last seen: OutOfSync/Healthy"
    ):
        wait_until_synced(
            client,
            "svc-a-staging",
            git=Git(gated.root),
            commit=head,
            timeout=0.05,
            interval=0.01,
        )
