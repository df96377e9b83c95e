"""Tables on a terminal: aligned whatever the colour, colour only where it is wanted; ages."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest

from platformctl.output import colour_enabled, text_table, with_age

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_keeps_the_columns_aligned() -> None:
    rows = [["slo", "failed", "p95 450 ms"], ["soak", "passed", "2 days"]]
    plain = text_table(["gate", "result", "measured"], rows)
    painted = text_table(["gate", "result", "measured"], rows, colour=True)
    assert painted != plain
    assert ANSI.sub("", painted) == plain
    assert "\x1b[31mfailed\x1b[0m" in painted
    assert "\x1b[32mpassed\x1b[0m" in painted


@pytest.mark.parametrize(
    ("variables", "tty", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"TERM": "dumb"}, True, False),
    ],
    ids=["terminal", "pipe", "no-color", "dumb-terminal"],
)
def test_colour_only_on_a_terminal_that_wants_it(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], tty: bool, expected: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    stream = Terminal() if tty else io.StringIO()
    assert colour_enabled(stream) is expected


NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-22T16:13:04+00:00", "2026-11-22 16:13 UTC (8 days ago)"),
        ("2026-12-01T13:30:00+02:00", "2026-12-01 11:30 UTC (30 minutes ago)"),
        ("2026-12-01T10:59:00+00:00", "2026-12-01 10:59 UTC (1 hour ago)"),
        ("2026-12-01T11:59:30+00:00", "2026-12-01 11:59 UTC (just now)"),
        ("2026-12-02T00:00:00+00:00", "2026-12-02 00:00 UTC (in the future)"),
        ("not a time", "not a time"),
    ],
)
def test_times_are_utc_with_their_age(timestamp: str, expected: str) -> None:
    assert with_age(timestamp, NOW) == expected
