"""Printing tables as aligned text, Markdown or JSON, the same way for every command."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, TextIO

from platformctl.errors import redact


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# Cells that are verdicts, coloured on a terminal: green, red, yellow (SGR codes).
_VERDICT_COLOURS = {
    "passed": "32",
    "ok": "32",
    "Synced": "32",
    "failed": "31",
    "MISSING": "31",
    "skipped": "33",
    "overridden": "33",
    "missing": "33",
}


def colour_enabled(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal (click strips escapes from anything else), never with
    NO_COLOR (no-color.org) or TERM=dumb."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream or sys.stdout
    return os.environ.get("TERM") != "dumb" and hasattr(stream, "isatty") and stream.isatty()


def _paint(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m"


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, colour: bool = False
) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: Sequence[str], header: bool = False) -> str:
        padded = []
        for value, width in zip(values, widths, strict=True):
            code = "1" if header else _VERDICT_COLOURS.get(value)
            shown = _paint(value, code) if colour and code else value
            padded.append(shown + " " * (width - len(value)))
        return "  ".join(padded).rstrip()

    lines = [line([h.upper() for h in headers], header=True)]
    lines += [line(row) for row in cells]
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(escape(_cell(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_table(fmt: OutputFormat, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The table in ``fmt``, with the credentials of any URL in a cell redacted."""
    if fmt is OutputFormat.markdown:
        return redact(markdown_table(headers, rows))
    return redact(text_table(headers, rows, colour=colour_enabled()))


def with_age(timestamp: str, now: dt.datetime | None = None) -> str:
    """An ISO time as ``2026-11-22 16:13 UTC (9 days ago)``: UTC for the record, the age for
    the reader. Text that is not an ISO time is returned as it is."""
    when, age = time_and_age(timestamp, now)
    return f"{when} ({age})" if age is not None else when


def time_and_age(timestamp: str, now: dt.datetime | None = None) -> tuple[str, str | None]:
    """``with_age``'s two halves (``2026-11-22 16:13 UTC``, ``9 days ago``), for a page that
    sets them apart; (the text, None) for text that is not an ISO time."""
    try:
        when = dt.datetime.fromisoformat(timestamp).astimezone(dt.UTC)
    except ValueError:
        return timestamp, None
    seconds = ((now or dt.datetime.now(dt.UTC)) - when).total_seconds()
    return f"{when:%Y-%m-%d %H:%M} UTC", _age(seconds)


def _age(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def to_json(payload: Any) -> str:
    """JSON for scripts, with the credentials of any URL in it redacted."""
    return redact(json.dumps(payload, indent=2, sort_keys=False, default=str))
