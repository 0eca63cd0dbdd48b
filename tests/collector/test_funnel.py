"""Funnel math: stage totals, conversions with Fieller intervals, drop-off, inversions, time to value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.report.funnel import (
    FunnelReport,
    funnel_report,
    histogram_quantile,
    parse_bucket,
    parse_quantile_stat,
)
from collector.report.intervals import Z95, row_noise
from collector.store.records import StoredRow

T = "acme"
STAGES = ["signup", "eval", "run"]


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
    tenant: str = T,
) -> StoredRow:
    start = f"2026-01-01T{hour:02d}:00:00Z"
    end = f"2026-01-01T{hour + 1:02d}:00:00Z"
    return StoredRow(tenant, agent, 1, start, end, metric, stat, dims or {}, value, mechanism, scale)


def funnel(rows: list[StoredRow], stages: list[str] = STAGES, **kw: object) -> FunnelReport:
    return funnel_report(rows, tenant=T, stages=stages, **kw)  # type: ignore[arg-type]


def test_stage_totals_sum_windows_agents_and_dims() -> None:
    rows = [
        row("signup", 60, hour=0, scale=3),
        row("signup", 40, hour=1, scale=4, agent="a2"),
        row("eval", 30, dims={"region": "eu"}),
        row("eval", 20, dims={"region": "us"}),
        row("run", 10),
        row("signup", 999, stat="sum"),  # another stat: not part of the funnel
    ]
    r = funnel(rows)
    signup, ev, run = r.stages
    assert signup.total is not None
    assert signup.total.value == 100
    assert signup.total.std == pytest.approx(5.0)
    assert signup.windows == 2
    assert signup.agents == ["a1", "a2"]
    assert ev.total is not None
    assert ev.total.value == 50
    assert run.total is not None
    assert run.total.value == 10


def test_conversions_and_drop_off() -> None:
    r = funnel([row("signup", 100), row("eval", 50), row("run", 10)])
    s1, s2 = r.steps
    assert s1.conversion is not None
    assert s1.conversion.value == 0.5
    assert s1.conversion.low is not None
    assert s1.conversion.high is not None
    assert s1.conversion.low < 0.5 < s1.conversion.high
    assert s1.drop_off is not None
    assert s1.drop_off.value == 50
    assert s1.drop_off.std == pytest.approx(math.sqrt(8))  # variances add for a difference too
    assert s2.conversion is not None
    assert s2.conversion.value == pytest.approx(0.2)
    assert r.overall is not None
    assert r.overall.value == pytest.approx(0.1)
    assert not any(s.inverted for s in r.steps)


def test_fieller_interval_matches_the_definition() -> None:
    """At each bound, (b − r·a)² = z²(σb² + r²σa²)."""
    a, b, sa, sb = 80.0, 20.0, 4.0, 3.0
    r = funnel([row("signup", a, scale=sa), row("eval", b, scale=sb)], ["signup", "eval"])
    c = r.steps[0].conversion
    assert c is not None
    assert c.low is not None
    assert c.high is not None
    for bound in (c.low, c.high):
        assert (b - bound * a) ** 2 == pytest.approx(Z95**2 * (sb**2 + bound**2 * sa**2))


def test_later_stage_larger_is_reported_and_flagged() -> None:
    r = funnel([row("signup", 10), row("eval", 12), row("run", 3)])
    s1, s2 = r.steps
    assert s1.inverted
    assert not s2.inverted
    assert s1.conversion is not None
    assert s1.conversion.value == pytest.approx(1.2)
    assert s1.drop_off is not None
    assert s1.drop_off.value == -2
    assert any("exceeds" in n for n in r.notes)


def test_non_positive_earlier_stage_gives_undefined_conversion() -> None:
    r = funnel([row("signup", -1.5), row("eval", 2.0)], ["signup", "eval"])
    (s,) = r.steps
    assert s.conversion is not None
    assert s.conversion.value is None
    assert s.conversion.low is None
    assert s.conversion.high is None
    assert r.overall is not None
    assert r.overall.value is None
    assert any("undefined" in n for n in r.notes)


def test_missing_stage() -> None:
    r = funnel([row("signup", 10), row("run", 3)])
    assert not r.stages[1].present
    assert r.stages[1].total is None
    assert all(s.conversion is None for s in r.steps)
    assert r.overall is not None
    assert r.overall.value == pytest.approx(0.3)
    assert any("'eval'" in n for n in r.notes)


def test_empty_inputs() -> None:
    r = funnel([])
    assert [s.present for s in r.stages] == [False, False, False]
    assert r.overall is None
    assert r.ttv is None
    assert funnel_report([], tenant=T, stages=[]).steps == []
    one = funnel_report([row("signup", 5)], tenant=T, stages=["signup"])
    assert one.steps == []
    assert one.overall is None


def test_distinct_units_funnel_is_flagged_upper_bound_over_windows() -> None:
    rows = [
        row("signup", 10, stat="distinct_units", hour=0),
        row("signup", 10, stat="distinct_units", hour=1),
        row("eval", 5, stat="distinct_units"),
    ]
    r = funnel(rows, ["signup", "eval"], stat="distinct_units")
    assert r.stages[0].upper_bound
    assert not r.stages[1].upper_bound
    assert r.stages[0].total is not None
    assert r.stages[0].total.value == 20


def test_other_tenants_ignored() -> None:
    r = funnel([row("signup", 10), row("signup", 1000, tenant="evil")], ["signup"])
    assert r.stages[0].total is not None
    assert r.stages[0].total.value == 10
    assert any("other tenants" in n for n in r.notes)


# --- time to value -----------------------------------------------------------------------------


def test_parse_bucket_and_quantile_stat() -> None:
    assert parse_bucket("0..10") == (0.0, 10.0)
    assert parse_bucket("1e+06..2e+06") == (1e6, 2e6)
    assert parse_bucket("100..") == (100.0, math.inf)
    assert parse_bucket("..0") == (-math.inf, 0.0)
    for bad in ("", "10", "a..b", "5..5", "nan..1", "9..3"):
        assert parse_bucket(bad) is None
    assert parse_quantile_stat("p50") == 0.5
    assert parse_quantile_stat("p99.9") == pytest.approx(0.999)
    assert parse_quantile_stat("p0") is None
    assert parse_quantile_stat("count") is None


def test_histogram_quantile_noise_free_is_interpolated() -> None:
    buckets = [(0.0, 10.0, row_noise(50, "gaussian", 0)), (10.0, 20.0, row_noise(50, "gaussian", 0))]
    h = histogram_quantile(buckets, 0.5)
    assert h.value == pytest.approx(10.0)
    assert h.low == pytest.approx(10.0)
    assert h.high == pytest.approx(10.0)
    assert histogram_quantile(buckets, 0.25).value == pytest.approx(5.0)


def test_histogram_quantile_interval_brackets_and_widens_with_noise() -> None:
    counts = [5, 20, 30, 25, 10, 5, 3, 2]

    def hq(scale: float) -> tuple[float, float, float]:
        b = [(i * 10.0, i * 10.0 + 10, row_noise(c, "gaussian", scale)) for i, c in enumerate(counts)]
        h = histogram_quantile(b, 0.9)
        assert h.value is not None
        assert h.low is not None
        assert h.high is not None
        return h.low, h.value, h.high

    lo1, v1, hi1 = hq(1.0)
    lo5, v5, hi5 = hq(5.0)
    assert lo1 <= v1 <= hi1
    assert lo5 <= v5 <= hi5
    assert hi5 - lo5 > hi1 - lo1


def test_histogram_quantile_open_ended_bucket() -> None:
    b = [(0.0, 10.0, row_noise(1, "gaussian", 1)), (10.0, math.inf, row_noise(99, "gaussian", 1))]
    h = histogram_quantile(b, 0.9)
    assert h.open_side == "above"
    assert h.value == 10.0
    assert h.high is None
    b = [(-math.inf, 0.0, row_noise(99, "gaussian", 1)), (0.0, 10.0, row_noise(1, "gaussian", 1))]
    h = histogram_quantile(b, 0.1)
    assert h.open_side == "below"
    assert h.value == 0.0
    assert h.low is None


def test_histogram_quantile_all_non_positive() -> None:
    h = histogram_quantile([(0.0, 1.0, row_noise(-3, "gaussian", 1))], 0.5)
    assert h.value is None
    assert h.low is None
    assert h.high is None


def test_ttv_from_histogram_rows_pooled_over_windows_and_agents() -> None:
    rows = [
        row("ttv", 30, stat="histogram", dims={"bucket": "0..60"}, hour=0),
        row("ttv", 30, stat="histogram", dims={"bucket": "0..60"}, hour=1, agent="a2"),
        row("ttv", 40, stat="histogram", dims={"bucket": "60..120"}),
        row("ttv", 1, stat="histogram", dims={"bucket": "bogus"}),
    ]
    r = funnel(rows, ["signup"], ttv_metric="ttv")
    assert r.ttv is not None
    assert r.ttv.histogram_total is not None
    assert r.ttv.histogram_total.value == 100
    p50 = r.ttv.pooled[0]
    assert p50.q == 0.5
    assert p50.value == pytest.approx(50.0)
    assert any("bucket" in n for n in r.notes)


def test_ttv_from_quantile_rows_per_window() -> None:
    rows = [
        row("ttv", 42, stat="p50", mechanism="derived", scale=3, hour=1),
        row("ttv", 40, stat="p50", mechanism="derived", scale=3, hour=0),
        row("ttv", 90, stat="p90", mechanism="derived", scale=8, hour=0),
    ]
    r = funnel(rows, ["signup"], ttv_metric="ttv")
    assert r.ttv is not None
    assert r.ttv.pooled == []
    assert [(w.stat, w.estimate.value) for w in r.ttv.per_window] == [("p50", 40), ("p90", 90), ("p50", 42)]


def test_ttv_missing_metric_is_noted() -> None:
    r = funnel([], ["signup"], ttv_metric="nope")
    assert r.ttv is not None
    assert not r.ttv.pooled
    assert not r.ttv.per_window
    assert any("'nope'" in n for n in r.notes)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(min_value=-50, max_value=500, allow_nan=False), min_size=1, max_size=8),
    st.floats(min_value=0, max_value=50, allow_nan=False),
    st.sampled_from([0.1, 0.5, 0.9, 0.99]),
)
def test_histogram_quantile_bounds_are_ordered(counts: list[float], scale: float, q: float) -> None:
    b = [(i * 10.0, i * 10.0 + 10, row_noise(c, "laplace", scale)) for i, c in enumerate(counts)]
    h = histogram_quantile(b, q)
    if h.value is None:
        assert sum(max(c, 0) for c in counts) == 0
        return
    assert h.low is not None
    assert h.high is not None
    assert h.low <= h.value + 1e-6
    assert h.value <= h.high + 1e-6


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=0, max_size=5))
def test_funnel_never_crashes_on_any_stage_values(values: list[float]) -> None:
    stages = [f"s{i}" for i in range(len(values))]
    r = funnel([row(n, v) for n, v in zip(stages, values, strict=True)], stages)
    assert len(r.steps) == max(len(values) - 1, 0)
    for s in r.steps:
        assert s.conversion is not None
        c = s.conversion
        if c.low is not None and c.high is not None and c.value is not None:
            assert c.low <= c.value + 1e-9
            assert c.value <= c.high + 1e-9
