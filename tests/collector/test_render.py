"""Renderers: table, JSON and CSV round-trips, HTML well-formed, self-contained and escaped."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.report.fmt import csv_text, term_text
from collector.report.funnel import FunnelReport, funnel_report
from collector.report.kpi import KpiReport, kpi_report
from collector.report.render import Report, render
from collector.report.text import CSV_FIELDS_FUNNEL, CSV_FIELDS_KPI
from collector.store.records import BatchPrivacy, StoredRow, UsageDay

T = "acme"
HOSTILE = "<script>alert(1)</script>"
STAGES = ["signup", "eval_requested", "run_completed"]


def row(
    metric: str,
    value: float,
    *,
    stat: str = "count",
    agent: str = "a1",
    hour: int = 0,
    scale: float = 2.0,
    mechanism: str = "gaussian",
    dims: dict[str, str] | None = None,
) -> StoredRow:
    start = f"2026-01-01T{hour:02d}:00:00Z"
    end = f"2026-01-01T{hour + 1:02d}:00:00Z"
    return StoredRow(T, agent, hour + 1, start, end, metric, stat, dims or {}, value, mechanism, scale)


def sample_rows(name: str = "signup") -> list[StoredRow]:
    rows: list[StoredRow] = []
    for h in range(6):
        rows += [
            row(name, 100 + 10 * h, hour=h),
            row(name, 30 + h, hour=h, agent="a2", mechanism="laplace", scale=1.5),
            row("eval_requested", 60 + 5 * h, hour=h),
            row("run_completed", 20 + 3 * h - (25 if h == 0 else 0), hour=h),  # a negative noisy count
            row("active", 40 + h, stat="distinct_units", hour=h),
            row("latency", 120.0 + h, stat="mean", mechanism="derived", scale=4.0, hour=h),
            row("latency", 118.0 + h, stat="mean", mechanism="derived", scale=5.0, hour=h, agent="a2"),
            row("ttv", 300.0 + 5 * h, stat="p50", mechanism="derived", scale=20.0, hour=h),
            row("ttv", 900.0 + 5 * h, stat="p90", mechanism="derived", scale=60.0, hour=h),
        ]
        for i, c in enumerate((5, 20, 12, 4)):
            rows.append(
                row("ttv_hist", c + h, stat="histogram", dims={"bucket": f"{i * 60}..{i * 60 + 60}"}, hour=h)
            )
    rows.append(row("ttv_hist", 2, stat="histogram", dims={"bucket": "240.."}, hour=0))
    return rows


def sample_kpi(rows: list[StoredRow] | None = None) -> KpiReport:
    privacy = [
        BatchPrivacy(
            T,
            a,
            h + 1,
            f"2026-01-01T{h:02d}:00:00Z",
            f"2026-01-01T{h + 1:02d}:00:00Z",
            "user",
            None,
            1e-7,
            0.01,
        )
        for h in range(6)
        for a in ("a1", "a2")
    ]
    usage = [UsageDay(T, "2026-01-01", 12, 340, 48_000, 1, {"quota": 1}, 0)]
    return kpi_report(
        rows if rows is not None else sample_rows(),
        privacy,
        usage,
        tenant=T,
        since=None,
        until=None,
        quota={"rows_per_day": 10_000, "bytes_per_month": None},
    )


def sample_funnel(rows: list[StoredRow] | None = None, stages: list[str] = STAGES) -> FunnelReport:
    return funnel_report(
        rows if rows is not None else sample_rows(), tenant=T, stages=stages, ttv_metric="ttv_hist"
    )


def as_text(out: str | bytes) -> str:
    assert isinstance(out, str)
    return out


# --- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [sample_kpi, sample_funnel])
def test_json_round_trip(make: object) -> None:
    report = make()  # type: ignore[operator]
    data = render(report, "json")
    assert isinstance(data, bytes)
    assert msgspec.json.decode(data, type=Report) == report  # type: ignore[arg-type]
    assert json.loads(data)["type"] in ("kpi", "funnel")


def test_json_keeps_negative_counts_raw() -> None:
    data = json.loads(render(sample_kpi(), "json"))
    run = next(s for s in data["series"] if s["metric"] == "run_completed")
    assert run["points"][0]["estimate"]["value"] == -5.0


# --- CSV ---------------------------------------------------------------------------------------


def test_kpi_csv_one_row_per_metric_window_round_trips() -> None:
    report = sample_kpi()
    text = as_text(render(report, "csv"))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_FIELDS_KPI
    windows = [r for r in rows if r["row"] == "window"]
    assert len(windows) == sum(len(s.points) for s in report.series)
    got = {
        (r["metric"], r["stat"], r["dims"], r["window_start"], r["agents"]): (
            float(r["value"]),
            float(r["ci_low"]),
            float(r["ci_high"]),
        )
        for r in windows
    }
    for s in report.series:
        for p in s.points:
            key = (s.metric, s.stat, json.dumps(s.dims, sort_keys=True), p.window_start, ";".join(p.agents))
            assert got[key] == (p.estimate.value, p.estimate.low, p.estimate.high)  # exact: repr floats
    totals = [r for r in rows if r["row"] == "total"]
    assert len(totals) == sum(1 for s in report.series if s.total is not None)


def test_funnel_csv() -> None:
    report = sample_funnel()
    rows = list(csv.DictReader(io.StringIO(as_text(render(report, "csv")), newline="")))
    assert tuple(rows[0]) == CSV_FIELDS_FUNNEL
    stages = [r for r in rows if r["row"] == "stage"]
    assert [r["name"] for r in stages] == STAGES
    assert float(stages[0]["value"]) == report.stages[0].total.value  # type: ignore[union-attr]
    assert sum(r["row"] == "conversion" for r in rows) == len(report.steps) + 1
    assert any(r["row"] == "ttv" for r in rows)


def test_csv_neutralizes_formulas() -> None:
    assert csv_text("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_text("+1") == "'+1"
    assert csv_text("@x") == "'@x"
    assert csv_text("ok") == "ok"
    evil = StoredRow(
        T, "-agent", 1, "=start", "@end", "=cmd|'/c calc'!A1", "+stat", {"=k": "=v"}, -3.0, "gaussian", 1
    )
    for report in (
        sample_kpi([evil]),
        funnel_report([evil], tenant="=t", stages=[evil.metric], ttv_metric="x"),
    ):
        cells = [c for r in csv.reader(io.StringIO(as_text(render(report, "csv")), newline="")) for c in r]
        assert not [c for c in cells if c[:1] in ("=", "+", "@") or (c.startswith("-") and not _is_number(c))]
    text = as_text(render(sample_kpi([evil]), "csv"))
    assert "'=cmd" in text
    assert ",-3.0," in text


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# --- table -------------------------------------------------------------------------------------


def test_kpi_table_clips_counts_for_display_and_is_aligned() -> None:
    text = as_text(render(sample_kpi(), "table"))
    assert "KPI report" in text
    assert "Totals over the range" in text
    assert "Privacy spend" in text
    run_line = next(ln for ln in text.splitlines() if ln.startswith("run_completed") and "00:00 +1h" in ln)
    assert " -5" not in run_line
    assert " 0 " in run_line + " "
    header = next(ln for ln in text.splitlines() if ln.startswith("metric"))
    assert header.index("value") > 0


def test_funnel_table() -> None:
    text = as_text(render(sample_funnel(), "table"))
    assert "Overall conversion" in text
    assert "Time to value" in text
    for s in STAGES:
        assert s in text


def test_table_strips_terminal_escapes() -> None:
    evil = "x\x1b[31mred\x1b[0m\u202e"
    text = as_text(render(sample_kpi([row(evil, 3)]), "table"))
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert term_text("a" * 100, 10) == "a" * 9 + "…"


# --- HTML --------------------------------------------------------------------------------------


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def well_formed(html: str) -> None:
    """Parse as XML: the renderer's own output, no DTD or entities beyond the XML five."""
    ET.fromstring(html.removeprefix("<!DOCTYPE html>"))  # noqa: S314 - our own output, not foreign XML


def check_html(html: str) -> _Collect:
    well_formed(html)
    parser = _Collect()
    parser.feed(html)
    parser.close()
    assert "script" not in parser.tags
    assert not any(k.startswith("on") for k, _ in parser.attrs)
    for key, value in parser.attrs:
        if key in ("src", "href", "xlink:href"):
            raise AssertionError(f"external reference {key}={value}")
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?://", html)
    assert "@import" not in html
    assert "url(" not in html
    return parser


def test_kpi_html_is_self_contained_and_well_formed() -> None:
    html = as_text(render(sample_kpi(), "html"))
    p = check_html(html)
    assert html.startswith("<!DOCTYPE html>")
    assert p.tags.count("svg") >= 4  # series charts and the histogram
    assert "polygon" in p.tags  # interval bands
    assert "title" in p.tags
    assert "desc" in p.tags
    assert "Content-Security-Policy" in html


def test_funnel_html_has_bars_with_whiskers() -> None:
    html = as_text(render(sample_funnel(), "html"))
    p = check_html(html)
    assert p.tags.count("rect") >= len(STAGES)
    assert 'class="whisker"' in html
    assert "Overall conversion" in html
    assert "Time to value" in html


def test_html_escapes_hostile_names_everywhere() -> None:
    rows = [
        row(HOSTILE, 5, dims={HOSTILE: HOSTILE + "\"'&"}),
        row(HOSTILE, 7, hour=1, agent="a2"),
        row("h", 3, stat="histogram", dims={"bucket": HOSTILE}),
        row("q", 3, stat="mean", mechanism="derived", scale=1, agent=HOSTILE),
    ]
    for report in (
        sample_kpi(rows),
        funnel_report(rows, tenant=T, stages=[HOSTILE, "h"], ttv_metric=HOSTILE),
        funnel_report(rows, tenant=HOSTILE, stages=[HOSTILE], ttv_metric="q"),
    ):
        html = as_text(render(report, "html"))
        check_html(html)
        assert HOSTILE not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_html_of_empty_reports() -> None:
    check_html(as_text(render(kpi_report([], [], [], tenant=T, since=None, until=None), "html")))
    check_html(as_text(render(funnel_report([], tenant=T, stages=[]), "html")))
    check_html(as_text(render(funnel_report([], tenant=T, stages=["a", "b"], ttv_metric="t"), "html")))


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown report format"):
        render(sample_kpi([]), "xml")  # type: ignore[arg-type]


# --- property: arbitrary strings from agents never break a renderer ----------------------------

text = st.text(max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    metric=text,
    agent=text,
    dims=st.dictionaries(text, text, max_size=3),
    bucket=text,
    value=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    scale=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    stamp=st.sampled_from(["2026-01-01T00:00:00Z", "garbage", "", "2026-01-01T00:00:00+02:00"]),
)
def test_renderers_never_crash_on_arbitrary_strings(
    metric: str, agent: str, dims: dict[str, str], bucket: str, value: float, scale: float, stamp: str
) -> None:
    rows = [
        StoredRow(T, agent, 1, stamp, stamp, metric, "count", dims, value, "gaussian", scale),
        StoredRow(T, agent, 2, stamp, stamp, metric, "p50", dims, value, "derived", scale),
        StoredRow(
            T,
            agent,
            3,
            stamp,
            stamp,
            metric,
            "histogram",
            {**dims, "bucket": bucket},
            value,
            "laplace",
            scale,
        ),
    ]
    reports: list[Report] = [
        kpi_report(rows, [], [], tenant=T, since=None, until=None),
        funnel_report(rows, tenant=T, stages=[metric, metric], ttv_metric=metric),
    ]
    for report in reports:
        for fmt in ("table", "json", "csv"):
            render(report, fmt)  # type: ignore[arg-type]
        html = as_text(render(report, "html"))
        well_formed(html)
        assert msgspec.json.decode(render(report, "json"), type=Report) == report  # type: ignore[arg-type]


def test_inverted_and_undefined_steps_render_flagged() -> None:
    rows = [row("a", 10), row("b", 14), row("c", -2), row("d", 1)]
    report = funnel_report(rows, tenant=T, stages=["a", "b", "c", "d"])
    table = as_text(render(report, "table"))
    assert "140.0% [" in table
    assert "undefined" in table
    assert "! a later stage" in table
    assert "-14.3%" not in table  # conversions are clipped at 0 for display like counts
    html = as_text(render(report, "html"))
    check_html(html)
    assert html.count("later stage larger") == 2
    data = json.loads(render(report, "json"))
    assert data["steps"][1]["conversion"]["value"] == pytest.approx(-2 / 14)  # raw in JSON
