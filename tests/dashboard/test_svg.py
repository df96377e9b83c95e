"""The charts of ``dashboard.svg``: well-formed SVG, one mark per value, text escaped, no
``style`` attribute (the page's CSP refuses them)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from platformctl.dashboard.svg import Series, bar_chart, strip_chart

HOSTILE = '</title><script>alert("x")</script> & <b>'


def _parse(markup: str) -> ET.Element:
    root = ET.fromstring(markup)
    assert root.tag == "svg"
    assert root.get("role") == "img"
    assert root.get("viewBox", "").startswith("0 0 ")
    for element in root.iter():
        assert "style" not in element.attrib, element.tag
        assert not element.tag.endswith("script")
    return root


def _describe(series: str, group: str, value: float) -> str:
    return f"{series} in {group}: {value:g}"


def test_a_bar_for_every_value_of_every_series() -> None:
    markup = bar_chart(
        "c1",
        "Deployments",
        "per week",
        ["11-02", "11-09", "11-16"],
        [Series("staging", [3, 0, 1]), Series("production", [1, 2, 0])],
        _describe,
    )
    root = _parse(markup)
    title = root.find("title")
    desc = root.find("desc")
    assert title is not None
    assert title.text == "Deployments"
    assert desc is not None
    assert desc.text == "per week"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    bars = [r for r in root.iter("rect") if "bar" in r.get("class", "")]
    assert len(bars) == 6
    # group by group, series by series; a bar's height is its share of the axis maximum
    assert [float(b.get("data-value", "")) for b in bars] == [3, 1, 0, 2, 1, 0]
    assert [b.findtext("title") for b in bars][:2] == [
        "staging in 11-02: 3",
        "production in 11-02: 1",
    ]
    heights = [float(b.get("height", "")) for b in bars]
    assert heights[0] == pytest.approx(3 * heights[4])
    assert heights[2] == 0
    assert {b.get("class") for b in bars} == {"bar series-0", "bar series-1"}


def test_hostile_text_is_escaped_everywhere_it_appears() -> None:
    markup = bar_chart(
        HOSTILE, HOSTILE, HOSTILE, [HOSTILE], [Series(HOSTILE, [1])], lambda *_: HOSTILE
    )
    root = _parse(markup)  # it parses: nothing closed the title early or opened a script
    texts = [element.text for element in root.iter() if element.text]
    assert texts.count(HOSTILE) >= 5  # title, desc, the bar's title, the group, the legend
    assert "<script>" not in markup
    strip = strip_chart(HOSTILE, HOSTILE, HOSTILE, [Series(HOSTILE, [5], [(HOSTILE, 5)])], str)
    assert "<script>" not in strip
    assert HOSTILE in [e.text for e in _parse(strip).iter()]


def test_a_dot_per_value_and_a_line_per_mark() -> None:
    markup = strip_chart(
        "lead",
        "Lead time",
        "one dot per release",
        [
            Series("staging", [3600, 7200, 36000], [("median", 7200), ("p90", 36000)]),
            Series("production", [], []),
            Series("qa", [60], [("median", 60)]),
        ],
        lambda seconds: f"{seconds / 3600:g}h",
    )
    root = _parse(markup)
    dots = list(root.iter("circle"))
    assert [float(d.get("data-value", "")) for d in dots] == [3600, 7200, 36000, 60]
    assert next(d.findtext("title") for d in dots) == "staging: 1h"
    marks = [m for m in root.iter("line") if m.get("class") == "mark"]
    assert [m.findtext("title") for m in marks] == [
        "staging median: 2h",
        "staging p90: 10h",
        "qa median: 0.0166667h",
    ]
    # the largest value is at the right end of the axis, zero at its left
    xs = [float(d.get("cx", "")) for d in dots]
    assert xs[2] == max(xs)
    assert xs[0] < xs[1] < xs[2]


def test_every_series_needs_a_value_per_group() -> None:
    with pytest.raises(ValueError, match="one value per group"):
        bar_chart("c", "t", "d", ["a", "b"], [Series("s", [1])], _describe)


def test_all_zero_bars_still_draw_an_axis() -> None:
    root = _parse(bar_chart("z", "t", "d", ["a"], [Series("s", [0])], _describe))
    (bar,) = [r for r in root.iter("rect") if "bar" in r.get("class", "")]
    assert float(bar.get("height", "")) == 0


def test_equal_values_are_drawn_apart_and_counts_get_whole_ticks() -> None:
    strip = _parse(strip_chart("s", "t", "d", [Series("a", [0, 0, 0, 5])], str))
    dots = list(strip.iter("circle"))
    assert len({d.get("cy") for d in dots[:3]}) == 3
    assert len({d.get("cx") for d in dots[:3]}) == 1
    bars = _parse(bar_chart("b", "t", "d", ["w"], [Series("a", [5])], _describe))
    ticks = [t.text for t in bars.iter("text") if "tick" in t.get("class", "")]
    assert ticks == ["0", "5"]
    halves = _parse(bar_chart("h", "t", "d", ["w"], [Series("a", [0.5])], _describe))
    assert [t.text for t in halves.iter("text") if "tick" in t.get("class", "")] == [
        "0",
        "0.25",
        "0.5",
    ]
