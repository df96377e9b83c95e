"""The gates a promotion into a stage requires, as declared in ``environments/pipeline.yaml``.

Parsed and checked when the repository is loaded (bad durations, unknown time zones, keys
that are not P-256 public keys fail there, with file:line), so a promotion never finds a
broken gate half-way.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformctl.documents import key_text
from platformctl.errors import InputError
from platformctl.yamlio import located

_PEM_BEGIN, _PEM_END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
# SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0x04 || X || Y) }
_P256_SPKI_HEADER = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04"
GATE_ORDER = ("freeze", "soak", "registry", "signature", "argocd", "slo", "budget")
NETWORK_GATES = frozenset({"registry", "signature", "argocd", "slo", "budget"})
# Prometheus's units too (a retention it reports: ``1y``, ``2w``, ``500ms``)
_DURATION_PART = re.compile(r"([0-9]+)(ms|[ywdhms])")
_UNIT_SECONDS = {"y": 31_536_000, "w": 604_800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 1e-3}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_SLO_WINDOW = dt.timedelta(hours=1)
_SELECTOR = 'namespace="${namespace}", service="${service}"'


@dataclass(frozen=True)
class Objective:
    """One PromQL query whose single value must stay below or above a threshold."""

    name: str
    query: str
    threshold: float
    below: bool
    unit: str = "number"

    def met_by(self, value: float) -> bool:
        return value < self.threshold if self.below else value > self.threshold


# The seeds' objectives: p95 < 200 ms, error ratio < 1 %, throughput > 1000 requests/min.
# Metric names are those of prometheus_client-style HTTP instrumentation; the labels are the
# ones the service chart's ServiceMonitor puts on every series.
DEFAULT_OBJECTIVES = (
    Objective(
        "p95-latency",
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
        f"{{{_SELECTOR}}}[${{window}}])))",
        0.2,
        below=True,
        unit="seconds",
    ),
    Objective(
        "error-ratio",
        # A service that never answered 5xx has no such series: that is 0 %, not "no data".
        f'(sum(rate(http_requests_total{{{_SELECTOR}, status=~"5.."}}[${{window}}])) or vector(0))'
        f" / sum(rate(http_requests_total{{{_SELECTOR}}}[${{window}}]))",
        0.01,
        below=True,
        unit="ratio",
    ),
    Objective(
        "throughput",
        f"sum(rate(http_requests_total{{{_SELECTOR}}}[${{window}}])) * 60",
        1000,
        below=False,
        unit="per-minute",
    ),
)


@dataclass(frozen=True)
class SloGate:
    window: dt.timedelta
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES


@dataclass(frozen=True)
class BudgetGate:
    """The target's own health: no burn-rate alert firing, at least ``minimum`` (a share, 0
    to 1) of its error budget left."""

    minimum: float = 0.0


@dataclass(frozen=True)
class FreezeWindow:
    """A date range (``start``/``end`` set) or a weekly window (``weekly`` set), local time."""

    name: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    weekly: tuple[tuple[int, dt.time], tuple[int, dt.time]] | None = None

    def contains(self, local: dt.datetime) -> bool:
        if self.weekly is None:
            assert self.start is not None
            assert self.end is not None
            return self.start <= local.replace(tzinfo=None) < self.end
        (first_day, first_time), (last_day, last_time) = self.weekly
        minute = _week_minute(local.weekday(), local.time())
        start, end = _week_minute(first_day, first_time), _week_minute(last_day, last_time)
        return start <= minute < end if start <= end else minute >= start or minute < end

    def describe(self) -> str:
        if self.weekly is None:
            assert self.start is not None
            assert self.end is not None
            return f"{self.name} ({self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M})"
        (first_day, first_time), (last_day, last_time) = self.weekly
        return (
            f"{self.name} (weekly {WEEKDAYS[first_day]} {first_time:%H:%M} "
            f"to {WEEKDAYS[last_day]} {last_time:%H:%M})"
        )


def _week_minute(day: int, time: dt.time) -> int:
    return day * 1440 + time.hour * 60 + time.minute


@dataclass(frozen=True)
class FreezeGate:
    timezone: ZoneInfo
    windows: tuple[FreezeWindow, ...]

    def open_window(self, now: dt.datetime) -> FreezeWindow | None:
        local = now.astimezone(self.timezone)
        return next((w for w in self.windows if w.contains(local)), None)


@dataclass(frozen=True)
class Gates:
    """The gates of one stage; ``None`` means the gate is not required there."""

    registry: bool = False
    signature_keys: tuple[str, ...] | None = None
    argocd: bool = False
    slo: SloGate | None = None
    budget: BudgetGate | None = None
    soak: dt.timedelta | None = None
    freeze: FreezeGate | None = None
    declared: tuple[str, ...] = field(default=())

    @property
    def names(self) -> tuple[str, ...]:
        """Declared gates, in the order they are evaluated (cheap and local first)."""
        return tuple(name for name in GATE_ORDER if name in self.declared)


def parse_duration(text: str) -> dt.timedelta:
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return dt.timedelta(seconds=seconds)


def format_duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return sign + "".join(parts[:2])


def parse_gates(raw: Mapping[str, Any] | None, path: Path, where: Sequence[str | int]) -> Gates:
    """Gates of one stage from its (schema-valid) ``gates:`` mapping."""
    if not raw:
        return Gates()

    def fail(keys: Sequence[str | int], message: str) -> InputError:
        key_path = [*where, *keys]
        return InputError(f"{located(path, key_path)}: {key_text(key_path)}: {message}")

    def duration(keys: Sequence[str | int], text: str) -> dt.timedelta:
        value = parse_duration(text)
        if value <= dt.timedelta(0):
            raise fail(keys, f"'{text}' is not a positive duration")
        return value

    soak = duration(["soak", "minimum"], raw["soak"]["minimum"]) if "soak" in raw else None
    slo = None
    if "slo" in raw:
        window_text = raw["slo"].get("window")
        window = (
            duration(["slo", "window"], window_text) if window_text else soak or DEFAULT_SLO_WINDOW
        )
        objectives = tuple(
            Objective(
                item["name"],
                item["query"],
                float(item["below"] if "below" in item else item["above"]),
                below="below" in item,
                unit=item.get("unit", "number"),
            )
            for item in raw["slo"].get("objectives", ())
        )
        slo = SloGate(window, objectives or DEFAULT_OBJECTIVES)
    keys = None
    if "signature" in raw:
        keys = tuple(raw["signature"]["publicKeys"])
        for index, pem in enumerate(keys):
            problem = _public_key_problem(pem)
            if problem:
                raise fail(["signature", "publicKeys", index], problem)
    freeze = _parse_freeze(raw["freeze"], fail) if "freeze" in raw else None
    budget = None
    if "budget" in raw:
        text = raw["budget"].get("minimum", "0%")
        share = float(text.removesuffix("%")) / 100  # the schema allows digits and a '%' only
        if share > 1:
            raise fail(
                ["budget", "minimum"], f"'{text}' is more than the whole budget (0% to 100%)"
            )
        budget = BudgetGate(share)
    return Gates(
        registry="registry" in raw,
        signature_keys=keys,
        argocd="argocd" in raw,
        slo=slo,
        budget=budget,
        soak=soak,
        freeze=freeze,
        declared=tuple(raw),
    )


def _public_key_problem(pem: str) -> str | None:
    """Whether ``pem`` is an ECDSA P-256 public key, checked on its DER bytes.

    Every P-256 SubjectPublicKeyInfo is the same 26-byte header and an uncompressed point, so
    the repo loads without importing cryptography (~50 ms); the gate parses the key fully.
    """
    lines = [line.strip() for line in pem.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _PEM_BEGIN or lines[-1] != _PEM_END:
        return "not a PEM public key (-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----)"
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        return "not a PEM public key (the base64 body does not decode)"
    if len(der) != len(_P256_SPKI_HEADER) + 64 or not der.startswith(_P256_SPKI_HEADER):
        return "cosign keys are ECDSA P-256 (cosign generate-key-pair)"
    return None


def _parse_freeze(
    raw: Mapping[str, Any], fail: Callable[[Sequence[str | int], str], InputError]
) -> FreezeGate:
    try:
        zone = ZoneInfo(raw["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(["freeze", "timezone"], f"unknown time zone '{raw['timezone']}'") from None
    windows = []
    for index, item in enumerate(raw["windows"]):
        keys: list[str | int] = ["freeze", "windows", index]
        try:
            if "weekly" in item:
                keys.append("weekly")
                first, last = (_weekly_point(item["weekly"][k]) for k in ("from", "until"))
                windows.append(FreezeWindow(item["name"], weekly=(first, last)))
                continue
            start, end = (dt.datetime.fromisoformat(item[k]) for k in ("from", "until"))
        except ValueError as error:
            raise fail(keys, f"not a valid time ({error})") from None
        if end <= start:
            raise fail([*keys, "until"], "the window ends before it starts")
        windows.append(FreezeWindow(item["name"], start=start, end=end))
    return FreezeGate(zone, tuple(windows))


def _weekly_point(text: str) -> tuple[int, dt.time]:
    day, _, clock = text.partition(" ")
    return WEEKDAYS.index(day), dt.time.fromisoformat(clock)
