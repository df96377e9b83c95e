"""``platform promote`` through every gate, end to end: the evidence, refusals, overrides,
unreachable endpoints, --wait and notifications."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT, edit_yaml, git
from tests.gates.conftest import (
    IMAGE_LINE,
    STAGED,
    Gated,
    Webhook,
    production_gates,
    settle,
    staging_endpoints,
)
from tests.gates.test_health import HEALTHY, _wait_for_data
from tests.support.argocd import AppState, FakeArgoCD
from tests.support.components import free_port
from tests.support.prometheus import RunningPrometheus

Cli = Callable[..., Any]
PUSH_AND_WAIT = ("--push", "--wait", "--wait-interval", "0.01")


@pytest.fixture
def ready(
    gated: Gated,
    argocd: tuple[FakeArgoCD, str],
    prometheus: RunningPrometheus,
    webhook: Webhook,
) -> Gated:
    """Production requires every gate; staging runs svc-a healthy and svc-b slow, both
    Synced and Healthy in Argo CD."""
    fake, url = argocd
    staging_endpoints(gated, url, prometheus.url)
    gated.gates("production", production_gates(gated))
    gated.endpoints(
        "production", notifications={"webhook": {"urlEnv": "PLATFORM_WEBHOOK_PRODUCTION"}}
    )
    gated.commit("production requires every gate")
    settle(fake, "staging", list(STAGED), gated.head())
    prometheus.workload.set("svc-a", **HEALTHY)
    prometheus.workload.set("svc-b", per_second=30.0, error_ratio=0.0, latency=0.4)
    _wait_for_data(prometheus, "svc-a")
    _wait_for_data(prometheus, "svc-b")
    return gated


def _message(root: Path) -> str:
    return git(root, "log", "-1", "--format=%B")


def _untouched(root: Path, head: str) -> None:
    assert git(root, "rev-parse", "HEAD").strip() == head
    assert git(root, "status", "--porcelain") == ""


def test_promotion_into_production_applies_every_gate_and_records_the_evidence(
    ready: Gated, cli: Cli, webhook: Webhook
) -> None:
    result = cli(ready.root, "promote", "svc-a", "--to", "production")
    assert result.exit_code == 0, result.output
    table = result.stdout.split("\n\n")[0]
    for gate in ("freeze", "soak", "registry", "signature", "argocd", "slo"):
        assert gate in table
    assert "failed" not in table
    assert re.search(r"soak +svc-a +passed +(2d23h|3d\w*) in staging ≥ 1d", table), table
    message = _message(ready.root)
    gates = [line for line in message.splitlines() if line.startswith("Platform-Gate: ")]
    assert [g.split()[1] for g in gates] == [
        "freeze",
        "soak/svc-a",
        "registry/svc-a",
        "signature/svc-a",
        "argocd/svc-a",
        "slo/svc-a",
        "slo/svc-a",
        "slo/svc-a",
        "policy",
    ]
    assert all(" passed (" in g for g in gates)
    history = cli(ready.root, "history", "svc-a", "--env", "production", "-o", "json")
    recorded = {(g["gate"], g["verdict"]) for g in json.loads(history.stdout)[0]["gates"]}
    assert ("soak", "passed") in recorded
    assert ("policy", "passed") in recorded
    [event] = webhook.received
    assert event["text"].startswith(f"✅ promote(svc-a): staging → production {STAGED['svc-a']}")
    assert "gates: ✓ freeze, ✓ soak/svc-a" in json.dumps(event, ensure_ascii=False)


def test_a_failing_gate_refuses_with_the_table_and_an_override_is_recorded(
    ready: Gated, cli: Cli, webhook: Webhook
) -> None:
    head = ready.head()
    refused = cli(ready.root, "promote", "svc-b", "--to", "production")
    assert refused.exit_code == 1, refused.output
    assert re.search(r"slo +svc-b +failed +p95-latency 488 ms ≥ 200 ms", refused.stdout)
    assert "--override slo --reason TEXT" in refused.stderr
    _untouched(ready.root, head)
    [event] = webhook.received
    assert event["text"].startswith("❌ promote(svc-b)")

    overridden = cli(
        ready.root,
        "promote",
        "svc-b",
        "--to",
        "production",
        "--override",
        "slo",
        "--reason",
        "latency regression accepted by the SRE on call",
    )
    assert overridden.exit_code == 0, overridden.output
    message = _message(ready.root)
    assert "Platform-Override: slo" in message
    assert (
        "Platform-Gate: slo/svc-b overridden "
        "(latency regression accepted by the SRE on call)" in message
    )
    assert "Platform-Gate: registry/svc-b passed" in message


def test_an_unreachable_gate_fails_closed_naming_the_endpoint(
    gated: Gated, cli: Cli, argocd: tuple[FakeArgoCD, str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gated.endpoints(
        "staging", endpoints={"argocd": {"url": dead, "tokenEnv": "ARGOCD_TOKEN_STAGING"}}
    )
    gated.gates("production", {"argocd": {}})
    head = gated.commit("production asks staging's Argo CD")
    result = cli(gated.root, "promote", "svc-a", "--to", "production")
    assert result.exit_code == 3, result.output
    assert f"Argo CD at {dead} unreachable" in result.stdout
    assert "--override argocd --reason TEXT" in result.stderr
    _untouched(gated.root, head)
    forced = cli(
        gated.root,
        "promote",
        "svc-a",
        "--to",
        "production",
        "--override",
        "argocd",
        "--reason",
        "Argo CD down; checked staging by hand",
    )
    assert forced.exit_code == 0, forced.output


def test_freeze_and_soak_refuse_from_the_calendar_and_git(gated: Gated, cli: Cli) -> None:
    gated.gates(
        "production",
        {
            "freeze": {
                "timezone": "America/New_York",
                "windows": [{"name": "release-party", "from": "2020-01-01", "until": "2099-01-01"}],
            },
            "soak": {"minimum": "7d"},
        },
    )
    head = gated.commit("a long freeze and a week of soak")
    result = cli(gated.root, "promote", "svc-a", "--to", "production")
    assert result.exit_code == 1
    assert "release-party (2020-01-01 00:00 to 2099-01-01 00:00) is open" in result.stdout
    assert "in staging < 7d" in result.stdout
    assert "--override freeze --override soak" in result.stderr
    _untouched(gated.root, head)


def test_the_registry_gate_fills_in_the_digest_of_a_tag_from_dev(gated: Gated, cli: Cli) -> None:
    digest = gated.push("svc-a", "1.5.0")
    gated.set_image("dev", "svc-a", "1.5.0")
    gated.gates("staging", {"registry": {}})
    gated.commit("dev runs a CI tag")
    result = cli(gated.root, "promote", "svc-a", "--to", "staging")
    assert result.exit_code == 0, result.output
    [line] = IMAGE_LINE.findall((gated.root / "environments/staging/svc-a.yaml").read_text())
    repository = f"{gated.registry.host}/svc-a"
    assert line == f'image: {{repository: {repository}, tag: 1.5.0, digest: "{digest}"}}'
    assert "Platform-Gate: registry/svc-a passed (1.5.0 → sha256:" in _message(gated.root)


def test_bad_gate_options_are_usage_errors_that_change_nothing(
    gated: Gated, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARGOCD_TOKEN_PRODUCTION", raising=False)
    gated.gates("production", {"soak": {"minimum": "1h"}})
    head = gated.commit("soak only")
    cases = [
        (["--override", "slo", "--reason", "x"], "production does not require that gate"),
        (["--override", "vibes", "--reason", "x"], "--override vibes: no such gate"),
        (["--override", "soak"], "--override needs --reason"),
        (["--wait"], "--wait needs --push"),
        (["--offline"], "--offline only goes with --dry-run"),
        (["--wait", "--pull-request"], "--wait cannot follow a pull request"),
        (["--wait", "--dry-run"], "--wait and --dry-run together"),
        (["--push", "--wait"], "needs a token in $ARGOCD_TOKEN_PRODUCTION"),
    ]
    for extra, message in cases:
        result = cli(gated.root, "promote", "svc-a", "--to", "production", *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.stderr, (extra, result.stderr)
        _untouched(gated.root, head)


@pytest.fixture
def pushed(gated: Gated, tmp_path: Path, argocd: tuple[FakeArgoCD, str]) -> tuple[Path, FakeArgoCD]:
    """A clone of ``gated`` pushing to a bare remote that the fake Argo CD 'watches'."""
    fake, url = argocd
    gated.endpoints(
        "production", endpoints={"argocd": {"url": url, "tokenEnv": "ARGOCD_TOKEN_PRODUCTION"}}
    )
    gated.commit("production's Argo CD")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(gated.root), str(bare)], check=True)
    clone = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    git(clone, "config", "user.email", "dev@example.com")
    git(clone, "config", "user.name", "Dev")
    for service in STAGED:
        fake.apps[f"{service}-production"] = AppState(revision=gated.head())
    fake.on_refresh = lambda _name: git(bare, "rev-parse", "main").strip()
    return clone, fake


def test_wait_follows_the_push_to_synced_and_healthy(
    pushed: tuple[Path, FakeArgoCD], cli: Cli
) -> None:
    clone, _ = pushed
    result = cli(clone, "promote", "svc-a", "--to", "production", *PUSH_AND_WAIT)
    assert result.exit_code == 0, result.output
    commit = git(clone, "rev-parse", "HEAD").strip()
    assert f"svc-a-production: Synced/Healthy at {commit[:12]} after" in result.stdout
    assert "(3 polls)" in result.stdout

    rolled = cli(clone, "rollback", "svc-a", "-e", "production", *PUSH_AND_WAIT, "-o", "json")
    assert rolled.exit_code == 0, rolled.output
    payload = json.loads(rolled.stdout)
    assert payload["waited"][0]["application"] == "svc-a-production"
    assert payload["waited"][0]["state"].startswith("Synced/Healthy at")


def test_wait_times_out_with_the_last_state_and_keeps_the_push(
    pushed: tuple[Path, FakeArgoCD], cli: Cli
) -> None:
    clone, fake = pushed
    fake.on_refresh = lambda _name: None
    fake.apps["svc-a-production"].health = "Degraded"
    promote = ("promote", "svc-a", "--to", "production")
    result = cli(clone, *promote, *PUSH_AND_WAIT, "--wait-timeout", "0.3")
    assert result.exit_code == 4, result.output  # the step that failed: --wait
    assert "last seen: Synced/Degraded" in result.stderr
    assert git(clone, "status", "-sb").startswith("## main...origin/main\n")  # pushed


def test_a_failed_notification_is_reported_and_the_promotion_stands(
    gated: Gated, cli: Cli, webhook: Webhook
) -> None:
    webhook.status = 500
    gated.endpoints(
        "production", notifications={"webhook": {"urlEnv": "PLATFORM_WEBHOOK_PRODUCTION"}}
    )
    head = gated.commit("production notifies")
    result = cli(gated.root, "promote", "svc-a", "--to", "production")
    assert result.exit_code == 0, result.output
    assert git(gated.root, "rev-parse", "HEAD~1").strip() == head
    assert "warning: notification failed: webhook at 127.0.0.1 answered 500" in result.stderr
    assert "secret" not in result.output  # the webhook URL is a secret
    assert len(webhook.received) == 1


def test_this_repository_lists_the_gates_of_production(cli: Cli) -> None:
    result = cli(
        PROJECT_ROOT,
        "promote",
        "--all",
        "--to",
        "production",
        "--dry-run",
        "--offline",
        "--output",
        "json",
    )
    assert result.exit_code in (0, 1), result.output  # the calendar decides freeze and soak
    payload = json.loads(result.stdout)
    gates = {(g["gate"], g["verdict"]) for g in payload["gates"]}
    for network_gate in ("registry", "signature", "argocd", "slo"):
        assert (network_gate, "skipped") in gates
    assert {"freeze", "soak"} <= {gate for gate, _ in gates}
    assert payload["refused"] == (result.exit_code == 1)


def test_a_failed_rollback_is_notified_and_changes_nothing(
    gated: Gated, cli: Cli, webhook: Webhook
) -> None:
    gated.endpoints(
        "production", notifications={"webhook": {"urlEnv": "PLATFORM_WEBHOOK_PRODUCTION"}}
    )
    head = gated.commit("production notifies")
    result = cli(gated.root, "rollback", "svc-a", "--env", "production", "--push")
    assert result.exit_code == 3, result.output
    assert "no git remote to push to" in result.stderr
    _untouched(gated.root, head)
    [event] = webhook.received
    assert event["text"].startswith("❌ rollback(svc-a): production")
    assert "no git remote to push to" in event["blocks"][0]["text"]["text"]


def test_wait_without_an_argocd_endpoint_is_refused_before_anything_is_pushed(
    gated: Gated, cli: Cli, webhook: Webhook
) -> None:
    def no_endpoints(settings: Any) -> None:
        settings.pop("endpoints")

    edit_yaml(gated.root / "environments/production/environment.yaml", no_endpoints)
    head = gated.commit("production has no Argo CD endpoint")
    result = cli(gated.root, "promote", "svc-a", "--to", "production", "--push", "--wait")
    assert result.exit_code == 2, result.output
    assert "--wait needs endpoints.argocd in production/environment.yaml" in result.stderr
    _untouched(gated.root, head)
    assert webhook.received == []  # a usage error is not news
