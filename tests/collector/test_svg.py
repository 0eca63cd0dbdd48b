"""collector.report.svg: pure chart builders; untrusted text escaped, output well-formed, ticks round."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.report.svg import Line, bar_chart, esc, nice_ticks, series_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, not foreign XML


@given(st.text())
def test_escaped_text_is_safe_as_xml_content_and_attribute(text: str) -> None:
    out = esc(text)
    assert not set("<>\"'") & set(out)
    element = parse(f'<t a="{out}">{out}</t>')
    kept = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]", "\ufffd", text)
    kept = kept.replace("\r\n", "\n").replace("\r", "\n")  # XML's own line-end normalisation
    assert (element.text or "") == kept
    assert element.get("a") == re.sub("[\t\n]", " ", kept)  # and attribute-value normalisation


def test_control_characters_become_replacement_characters() -> None:
    assert esc("a\x00b\x1bc\ud800") == "a\ufffdb\ufffdc\ufffd"
    assert esc('<script>"x"</script>') == "&lt;script&gt;&quot;x&quot;&lt;/script&gt;"


@given(
    lo=st.floats(-1e9, 1e9, allow_nan=False),
    span=st.floats(1e-3, 1e9, allow_nan=False),
    count=st.integers(2, 8),
)
def test_ticks_are_ascending_few_and_cover_the_range(lo: float, span: float, count: int) -> None:
    hi = lo + span
    ticks = nice_ticks(lo, hi, count)
    assert ticks == sorted(ticks)
    assert 1 <= len(ticks) <= 20
    if len(ticks) > 1:
        step = ticks[1] - ticks[0]
        assert ticks[0] <= lo + abs(step) * 1e-6
        assert ticks[-1] >= hi - abs(step) * 1e-6


@pytest.mark.parametrize(("lo", "hi"), [(5.0, 5.0), (math.nan, 1.0), (0.0, math.inf)])
def test_degenerate_ranges_give_one_finite_tick(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert len(ticks) >= 1
    assert all(math.isfinite(t) for t in ticks)


def test_a_bar_chart_is_labelled_and_escapes_agent_text() -> None:
    svg = bar_chart(
        chart_id="c1",
        title="stages <1>",
        desc="d",
        labels=["<b>", "ok"],
        values=[3.0, -1.0],  # a negative noisy count is drawn clipped at 0
        lows=[1.0, None],
        highs=[5.0, None],
        value_labels=["3", "-1"],
    )
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-t c1-d"
    assert root.find(f"{SVG}title").text == "stages <1>"  # type: ignore[union-attr]
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert "nan" not in svg.lower()


def test_a_series_chart_stays_finite_with_flat_or_empty_lines() -> None:
    flat = Line(
        "m <x>", xs=[0.0, 3600.0], values=[2.0, 2.0], lows=[2.0, 2.0], highs=[2.0, 2.0], tips=["a", "b"]
    )
    for lines in ([flat], [], [flat, flat]):
        svg = series_chart(
            chart_id="s", title="t", desc="d", lines=lines, x_labels=("start", "end"), floor_zero=True
        )
        parse(svg)
        assert "nan" not in svg.lower()
        assert "inf" not in svg.lower()
