"""Gate results: the evidence table a promotion prints and records in its commit trailers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from platformctl.errors import EnvironmentProblem, PlatformError, RefusedError


class Verdict(StrEnum):
    passed = "passed"
    failed = "failed"
    skipped = "skipped"
    overridden = "overridden"


@dataclass(frozen=True)
class GateResult:
    gate: str
    service: str | None  # None: the gate is about the environment (freeze)
    verdict: Verdict
    measured: str
    # nothing answered: the gate failed closed, not on a measurement
    unreachable: bool = False

    @property
    def subject(self) -> str:
        return f"{self.gate}/{self.service}" if self.service else self.gate

    def trailer(self) -> str:
        """``Platform-Gate: soak/api passed (26h3m ≥ 24h)``: one line, parseable back."""
        return f"{self.subject} {self.verdict} ({' '.join(self.measured.split())})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "service": self.service,
            "verdict": str(self.verdict),
            "measured": self.measured,
            "unreachable": self.unreachable,
        }


_TRAILER = re.compile(
    r"^(?P<gate>[a-z]+)(?:/(?P<service>[-a-z0-9]+))? (?P<verdict>[a-z]+) \((?P<measured>.*)\)$"
)


def parse_trailer(text: str) -> GateResult | None:
    match = _TRAILER.match(text)
    if match is None or match["verdict"] not in Verdict.__members__:
        return None
    return GateResult(match["gate"], match["service"], Verdict(match["verdict"]), match["measured"])


@dataclass
class GateReport:
    environment: str
    results: list[GateResult] = field(default_factory=list)
    # gate -> the recorded reason it was overridden
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if r.verdict is Verdict.failed]

    def error(self) -> PlatformError | None:
        """Why the promotion is refused (None if it is not).

        Only unreachable gates: exit 3 (fix the network or override); any measured failure:
        exit 1. Either way the message names the first failure and the override flag.
        """
        failed = self.failed
        if not failed:
            return None
        first = failed[0]
        gates = " ".join(f"--override {g}" for g in dict.fromkeys(r.gate for r in failed))
        message = (
            f"{len(failed)} gate check(s) failed for {self.environment}, first: "
            f"{first.subject}: {first.measured}"
        )
        hint = f"fix it, or override with {gates} --reason TEXT (recorded in the commit)"
        if all(r.unreachable for r in failed):
            return GateUnreachable(message, hint=hint)
        return GateRefused(message, hint=hint)

    def trailers(self) -> list[str]:
        lines = [f"Platform-Gate: {result.trailer()}" for result in self.results]
        lines += [f"Platform-Override: {gate}" for gate in self.overrides]
        return lines


class GateRefused(RefusedError):
    """A gate measured something it does not accept."""


class GateUnreachable(EnvironmentProblem):
    """A gate could not ask its endpoint and failed closed."""
