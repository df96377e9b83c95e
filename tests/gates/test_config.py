"""Gate declarations: validated at load with file:line; freeze windows, durations, trailers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from platformctl.errors import InputError
from platformctl.gates.config import (
    FreezeGate,
    FreezeWindow,
    format_duration,
    parse_duration,
)
from platformctl.gates.results import GateReport, GateResult, Verdict, parse_trailer
from platformctl.gates.runner import GateOptions, evaluate
from platformctl.model import load_repo
from tests.conftest import PROJECT_ROOT, edit_yaml, init_repo
from tests.gates.conftest import Gated


def _with_gates(repo: Path, stage: str, gates: dict[str, Any]) -> None:
    def change(pipeline: Any) -> None:
        for item in pipeline["stages"]:
            if item["name"] == stage:
                item["gates"] = gates

    edit_yaml(repo / "environments/pipeline.yaml", change, sequence_indent=4)


def _load_error(repo: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_repo(repo)
    return str(caught.value)


def test_this_repository_declares_its_gates() -> None:
    repo = load_repo(PROJECT_ROOT)
    assert repo.environment("dev").gates.names == ()
    assert repo.environment("staging").gates.names == ("registry", "argocd")
    production = repo.environment("production").gates
    assert production.names == ("freeze", "soak", "registry", "signature", "argocd", "slo")
    assert production.soak == dt.timedelta(hours=24)
    assert production.slo is not None
    assert production.slo.window == dt.timedelta(hours=24)  # the soak window
    assert [o.name for o in production.slo.objectives] == [
        "p95-latency",
        "error-ratio",
        "throughput",
    ]


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        (
            {"soak": {"minimum": "0s"}},
            "stages #3.gates.soak.minimum: '0s' is not a positive duration",
        ),
        (
            {"soak": {"minimum": "3 days"}},
            "stages #3.gates.soak.minimum: '3 days' is not a duration",
        ),
        ({"freeze": {"timezone": "Mars/Olympus", "windows": []}}, "unknown time zone"),
        (
            {
                "freeze": {
                    "timezone": "UTC",
                    "windows": [{"name": "x", "from": "2026-02-01", "until": "2026-01-01"}],
                }
            },
            "the window ends before it starts",
        ),
        (
            {
                "freeze": {
                    "timezone": "UTC",
                    "windows": [
                        {"name": "x", "weekly": {"from": "fri 25:00", "until": "mon 07:00"}}
                    ],
                }
            },
            "not a valid time",
        ),
        (
            {
                "signature": {
                    "publicKeys": ["-----BEGIN PUBLIC KEY-----\n@@@@\n-----END PUBLIC KEY-----\n"]
                }
            },
            "not a PEM public key",
        ),
        ({"slo": {"objectives": [{"name": "p95", "query": "up"}]}}, "is not valid under any"),
        ({"canary": {}}, "unknown key 'canary'"),
    ],
)
def test_bad_gate_declarations_are_refused_at_load_with_a_location(
    repo: Path, gates: dict[str, Any], message: str
) -> None:
    _with_gates(repo, "production", gates)
    error = _load_error(repo)
    assert "environments/pipeline.yaml:" in error
    assert message in error


def test_gates_that_ask_the_stage_before_need_its_endpoint(repo: Path) -> None:
    def drop_endpoints(settings: Any) -> None:
        settings.pop("endpoints")

    edit_yaml(repo / "environments/staging/environment.yaml", drop_endpoints)
    _with_gates(repo, "production", {"slo": {}})
    error = _load_error(repo)
    assert "the slo gate of production asks staging, which has no endpoints.prometheus" in error
    assert "environments/staging/environment.yaml" in error


def test_rsa_keys_are_not_cosign_keys(repo: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    _with_gates(repo, "production", {"signature": {"publicKeys": [pem]}})
    assert "cosign keys are ECDSA P-256" in _load_error(repo)


def test_durations_round_trip_to_what_people_write() -> None:
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_duration("2d") == dt.timedelta(days=2)
    # and Prometheus's units, in which it reports a retention
    assert parse_duration("1y2w") == dt.timedelta(days=379)
    assert parse_duration("1m500ms") == dt.timedelta(seconds=60.5)
    assert format_duration(dt.timedelta(days=2, hours=3, minutes=4)) == "2d3h"
    assert format_duration(dt.timedelta(seconds=42)) == "42s"
    assert format_duration(dt.timedelta(minutes=-5)) == "-5m"


def test_weekly_windows_wrap_around_the_week_in_their_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    weekend = FreezeWindow(
        "weekend", weekly=((4, dt.time(16, 0)), (0, dt.time(7, 0)))
    )  # fri 16:00 to mon 07:00
    gate = FreezeGate(berlin, (weekend,))

    def at(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text).replace(tzinfo=berlin).astimezone(dt.UTC)

    assert gate.open_window(at("2026-11-20 15:59")) is None  # Friday afternoon
    assert gate.open_window(at("2026-11-20 16:00")) is weekend
    assert gate.open_window(at("2026-11-22 23:00")) is weekend  # Sunday night
    assert gate.open_window(at("2026-11-23 06:59")) is weekend  # Monday morning
    assert gate.open_window(at("2026-11-23 07:00")) is None
    # 15:30 UTC on a Friday in winter is 16:30 in Berlin: frozen
    assert gate.open_window(dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)) is weekend


def test_date_windows_are_local_and_end_exclusive() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    window = FreezeWindow("year-end", start=dt.datetime(2026, 12, 28), end=dt.datetime(2027, 1, 4))
    gate = FreezeGate(tokyo, (window,))
    # 2026-12-27 16:00 UTC is already 2026-12-28 01:00 in Tokyo
    assert gate.open_window(dt.datetime(2026, 12, 27, 16, 0, tzinfo=dt.UTC)) is window
    assert gate.open_window(dt.datetime(2027, 1, 3, 15, 0, tzinfo=dt.UTC)) is None


def test_soak_and_freeze_are_decided_from_git_and_the_clock(gated: Gated) -> None:
    """The local gates through the runner, at chosen instants (no network is asked)."""
    gated.gates(
        "production",
        {
            "freeze": {
                "timezone": "UTC",
                "windows": [{"name": "launch", "from": "2030-01-01", "until": "2030-01-02"}],
            },
            "soak": {"minimum": "2d"},
        },
    )
    gated.commit("local gates")
    repo = load_repo(gated.root)
    production, staging = repo.environment("production"), repo.environment("staging")
    image = repo.release("svc-a", "staging").image

    def run(now: dt.datetime) -> GateReport:
        report, _ = evaluate(repo, production, staging, [("svc-a", image)], GateOptions(now=now))
        return report

    now = dt.datetime.now(dt.UTC)
    fine = run(now)
    assert [r.verdict for r in fine.results] == [Verdict.passed, Verdict.passed]
    early = run(now - dt.timedelta(days=2))  # one day after the image reached staging
    assert early.results[1].verdict is Verdict.failed
    assert "in staging < 2d" in early.results[1].measured
    frozen = run(dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC))
    assert frozen.results[0].verdict is Verdict.failed
    assert frozen.error() is not None


def test_evidence_trailers_parse_back() -> None:
    result = GateResult("slo", "api", Verdict.failed, "p95-latency 340 ms ≥ 200 ms over 1h")
    assert parse_trailer(result.trailer()) == result
    environment_wide = GateResult("freeze", None, Verdict.passed, "no freeze window open")
    assert parse_trailer(environment_wide.trailer()) == environment_wide
    assert parse_trailer("slo/api maybe (?)") is None


def test_without_gates_the_release_tests_see_a_bare_pipeline(tmp_path: Path) -> None:
    bare = load_repo(init_repo(tmp_path / "bare"))
    assert all(not env.gates.names for env in bare.environments)
    gated = load_repo(init_repo(tmp_path / "gated", gates=True))
    assert gated.environment("production").gates.names


def test_a_missing_component_fails_with_its_install_command() -> None:
    from tests.support.components import require

    with pytest.raises(pytest.fail.Exception, match="apt-get install -y no-such-package"):
        require("no-such-binary-here", "no-such-package")
