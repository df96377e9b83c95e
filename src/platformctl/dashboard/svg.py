"""Charts as SVG markup, drawn on the server: the page needs no script to show them.

Pure functions of the numbers they are given. Every text is escaped (a label may be a tag or a
reason someone typed); colours come from classes in ``static/dashboard.css`` and
``currentColor``, never from a ``style`` attribute, so the page's CSP holds and dark mode
applies. Each chart is an ``role="img"`` with a ``<title>`` and ``<desc>``; every bar or dot
carries its own ``<title>`` (the value a screen reader or a hover gives), and the page puts the
same numbers in a table.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
# Room for the labels left of the plot (series names) and under it (group labels).
LEFT, RIGHT, TOP, BOTTOM = 96, 16, 16, 40
BAR_HEIGHT = 200
STRIP_ROW = 32
SERIES_CLASSES = 6  # .series-0 .. .series-5 in dashboard.css, then they repeat


@dataclass(frozen=True)
class Series:
    """One named row of values: one bar per group, or one dot per value."""

    name: str
    values: Sequence[float]
    # (label, value): vertical marks drawn across the row (a median, a p90)
    marks: Sequence[tuple[str, float]] = ()


def _number(value: float) -> str:
    """A coordinate: short and locale-free."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _open(chart_id: str, title: str, desc: str, height: float) -> list[str]:
    ident = escape(chart_id)
    return [
        # inline in HTML, the parser puts it in the SVG namespace: no xmlns (no URL in a page)
        f'<svg class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {_number(height)}" '
        f'aria-labelledby="{ident}-title {ident}-desc">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
    ]


def _nice_top(largest: float) -> float:
    """The axis maximum: 1, 2 or 5 times a power of ten, at or above ``largest``."""
    if largest <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(largest))
    for step in (1, 2, 5, 10):
        if step * power >= largest:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop ends at 10


def _legend(series: Sequence[Series], y: float) -> list[str]:
    parts = []
    x = float(LEFT)
    for index, one in enumerate(series):
        css = f"series-{index % SERIES_CLASSES}"
        parts.append(
            f'<rect class="swatch {css}" x="{_number(x)}" y="{_number(y - 9)}" '
            'width="10" height="10"/>'
        )
        parts.append(f'<text class="label" x="{_number(x + 14)}" y="{_number(y)}">')
        parts.append(f"{escape(one.name)}</text>")
        x += 24 + 7 * len(one.name)
    return parts


def bar_chart(
    chart_id: str,
    title: str,
    desc: str,
    groups: Sequence[str],
    series: Sequence[Series],
    describe: Callable[[str, str, float], str],
) -> Markup:
    """Grouped bars: for each of ``groups`` (left to right) one bar per series, every bar
    present (a zero is a bar of height 0 with its title, so each value can be read).
    ``describe(series, group, value)`` is a bar's ``<title>``."""
    if any(len(one.values) != len(groups) for one in series):
        raise ValueError("every series needs one value per group")
    height = TOP + BAR_HEIGHT + BOTTOM + 16
    top = _nice_top(max((v for one in series for v in one.values), default=0))
    plot = WIDTH - LEFT - RIGHT
    slot = plot / max(len(groups), 1)
    bar = slot * 0.8 / max(len(series), 1)
    base = TOP + BAR_HEIGHT
    parts = _open(chart_id, title, desc, height)
    parts.append(
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" '
        'stroke="currentColor"/>'
    )
    counts = all(float(v).is_integer() for one in series for v in one.values)
    for tick in (0.0, top / 2, top):
        if counts and not tick.is_integer():
            continue  # counts get whole ticks: no 2.5 deployments
        y = base - BAR_HEIGHT * tick / top
        parts.append(
            f'<text class="label tick" x="{LEFT - 6}" y="{_number(y + 4)}" '
            f'text-anchor="end">{escape(f"{tick:g}")}</text>'
        )
    for g, group in enumerate(groups):
        x0 = LEFT + g * slot + slot * 0.1
        for s, one in enumerate(series):
            value = one.values[g]
            h = BAR_HEIGHT * value / top
            css = f"series-{s % SERIES_CLASSES}"
            parts.append(
                f'<rect class="bar {css}" x="{_number(x0 + s * bar)}" y="{_number(base - h)}" '
                f'width="{_number(bar)}" height="{_number(h)}" data-value="{_number(value)}">'
                f"<title>{escape(describe(one.name, group, value))}</title></rect>"
            )
        parts.append(
            f'<text class="label" x="{_number(x0 + slot * 0.4)}" y="{base + 16}" '
            f'text-anchor="middle">{escape(group)}</text>'
        )
    parts += _legend(series, height - 8)
    parts.append("</svg>")
    return Markup("".join(parts))


def strip_chart(
    chart_id: str,
    title: str,
    desc: str,
    series: Sequence[Series],
    shown: Callable[[float], str],
) -> Markup:
    """One row per series, a dot per value on a shared axis from 0 (``shown`` writes a value
    for the ticks and the dots' titles), with the series' ``marks`` as short vertical lines."""
    height = TOP + STRIP_ROW * max(len(series), 1) + BOTTOM
    largest = max(
        (v for one in series for v in [*one.values, *(m for _, m in one.marks)]), default=0
    )
    top = largest if largest > 0 else 1.0
    plot = WIDTH - LEFT - RIGHT

    def x_of(value: float) -> str:
        return _number(LEFT + plot * value / top)

    parts = _open(chart_id, title, desc, height)
    base = TOP + STRIP_ROW * len(series)
    parts.append(
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" '
        'stroke="currentColor"/>'
    )
    for tick in (0.0, top / 2, top):
        parts.append(
            f'<text class="label tick" x="{x_of(tick)}" y="{base + 16}" '
            f'text-anchor="middle">{escape(shown(tick))}</text>'
        )
    for row, one in enumerate(series):
        y = TOP + STRIP_ROW * row + STRIP_ROW / 2
        css = f"series-{row % SERIES_CLASSES}"
        parts.append(
            f'<text class="label" x="{LEFT - 6}" y="{_number(y + 4)}" '
            f'text-anchor="end">{escape(one.name)}</text>'
        )
        seen: Counter[float] = Counter()
        for value in one.values:
            # equal values side by side, above and below the row's line, not on one another
            k = seen[value]
            seen[value] += 1
            dy = min((k + 1) // 2 * 5, STRIP_ROW // 2 - 4) * (1 if k % 2 else -1)
            parts.append(
                f'<circle class="dot {css}" cx="{x_of(value)}" cy="{_number(y + dy)}" r="4" '
                f'data-value="{_number(value)}"><title>{escape(one.name)}: '
                f"{escape(shown(value))}</title></circle>"
            )
        for label, value in one.marks:
            parts.append(
                f'<line class="mark" x1="{x_of(value)}" y1="{_number(y - 10)}" '
                f'x2="{x_of(value)}" y2="{_number(y + 10)}" stroke="currentColor">'
                f"<title>{escape(one.name)} {escape(label)}: {escape(shown(value))}</title>"
                "</line>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
