"""Printing tables as aligned text, Markdown or JSON, the same way for every command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

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


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


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
    return redact(text_table(headers, rows))


def to_json(payload: Any) -> str:
    """JSON for scripts, with the credentials of any URL in it redacted."""
    return redact(json.dumps(payload, indent=2, sort_keys=False, default=str))
