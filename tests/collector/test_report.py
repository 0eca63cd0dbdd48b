"""KPI report math: intervals per mechanism, aggregation across agents, totals, quota, privacy spend."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.report.intervals import LN20, Z95, estimate, ratio, row_noise, total
from collector.report.kpi import KpiReport, in_range, kpi_report, parse_bound
from collector.store.records import BatchPrivacy, StoredRow, UsageDay

T = "acme"


def row(
    metric: str = "signup",
    value: float = 10.0,
    *,
    stat: str = "count",
    agent: str = "a1",
    start: str = "2026-01-01T00:00:00Z",
    end: str = "2026-01-01T01:00:00Z",
    mechanism: str = "gaussian",
    scale: float = 2.0,
    dims: dict[str, str] | None = None,
    tenant: str = T,
    seq: int = 1,
) -> StoredRow:
    return StoredRow(tenant, agent, seq, start, end, metric, stat, dims or {}, value, mechanism, scale)


def report(rows: list[StoredRow], **kw: object) -> KpiReport:
    return kpi_report(rows, [], [], tenant=T, since=None, until=None, **kw)  # type: ignore[arg-type]


# --- single-row intervals ----------------------------------------------------------------------


def test_gaussian_interval_is_1_96_sigma() -> None:
    e = estimate(row_noise(10.0, "gaussian", 2.0))
    assert e.method == "gaussian"
    assert e.std == 2.0
    assert e.low == pytest.approx(10 - Z95 * 2)
    assert e.high == pytest.approx(10 + Z95 * 2)


def test_laplace_interval_is_exact_quantile() -> None:
    e = estimate(row_noise(10.0, "laplace", 3.0))
    assert e.method == "laplace"
    assert e.std == pytest.approx(3.0 * math.sqrt(2))
    assert e.high - 10 == pytest.approx(3.0 * math.log(20))
    # P(|Laplace(b)| > b ln 20) = exp(-ln 20) = 5 %
    assert math.exp(-(e.high - 10) / 3.0) == pytest.approx(0.05)


def test_derived_interval_uses_scale_as_std() -> None:
    e = estimate(row_noise(0.5, "derived", 0.1))
    assert e.method == "normal"
    assert (e.low, e.high) == pytest.approx((0.5 - Z95 * 0.1, 0.5 + Z95 * 0.1))


def test_zero_scale_is_exact() -> None:
    e = estimate(row_noise(7.0, "gaussian", 0.0))
    assert (e.low, e.value, e.high, e.method) == (7.0, 7.0, 7.0, "exact")


def test_sum_of_gaussians_adds_variances() -> None:
    s = total([row_noise(1.0, "gaussian", 3.0), row_noise(2.0, "gaussian", 4.0)])
    e = estimate(s)
    assert e.value == 3.0
    assert e.std == pytest.approx(5.0)
    assert e.method == "gaussian"


def test_sum_of_laplace_uses_cornish_fisher_between_normal_and_single_laplace() -> None:
    b = 2.0
    e = estimate(total([row_noise(0.0, "laplace", b), row_noise(0.0, "laplace", b)]))
    assert e.method == "cornish-fisher"
    normal_half = Z95 * math.sqrt(2 * 2 * b * b)
    assert normal_half < e.high < normal_half * 1.1


def test_laplace_plus_zero_noise_row_stays_exact_laplace() -> None:
    e = estimate(total([row_noise(5.0, "gaussian", 0.0), row_noise(1.0, "laplace", 1.0)]))
    assert e.method == "laplace"
    assert e.high == pytest.approx(6.0 + LN20)


def test_intervals_cover_about_95_percent() -> None:
    """Empirical coverage of the sum intervals, including the Cornish–Fisher case."""
    rng = random.Random(7)
    cases = {"gauss": [("gaussian", 2.0)], "laplace": [("laplace", 1.5)], "mixed": [("laplace", 2.0)] * 3}
    for name, parts in cases.items():
        hits, trials = 0, 4000
        for _ in range(trials):
            noisy = total(
                [
                    row_noise(
                        rng.gauss(0, s) if m == "gaussian" else rng.expovariate(1 / s) * rng.choice((-1, 1)),
                        m,
                        s,
                    )
                    for m, s in parts
                ]
            )
            e = estimate(noisy)
            hits += e.low <= 0.0 <= e.high
        assert 0.93 < hits / trials < 0.97, name


# --- ratios ------------------------------------------------------------------------------------


def test_fieller_ratio_is_asymmetric_and_contains_point() -> None:
    q = ratio(row_noise(30.0, "gaussian", 5.0), row_noise(60.0, "gaussian", 5.0))
    assert q.value == 0.5
    assert q.low is not None
    assert q.high is not None
    assert q.low < 0.5 < q.high
    assert (q.high - 0.5) > (0.5 - q.low)  # skewed up, as a ratio is


def test_fieller_unbounded_when_denominator_is_noise() -> None:
    q = ratio(row_noise(3.0, "gaussian", 5.0), row_noise(4.0, "gaussian", 5.0))
    assert q.value == 0.75
    assert q.low is None
    assert q.high is None


def test_ratio_with_non_positive_denominator_has_no_value() -> None:
    q = ratio(row_noise(3.0, "gaussian", 1.0), row_noise(-2.0, "gaussian", 1.0))
    assert q.value is None


# --- the report --------------------------------------------------------------------------------


def test_additive_stats_sum_across_agents() -> None:
    r = report([row(value=10, agent="a1", scale=3), row(value=5, agent="a2", scale=4)])
    (s,) = r.series
    (p,) = s.points
    assert p.agents == ["a1", "a2"]
    assert p.estimate.value == 15
    assert p.estimate.std == pytest.approx(5.0)
    assert s.total == p.estimate
    assert not s.upper_bound


def test_totals_over_windows() -> None:
    rows = [
        row(value=10, start="2026-01-01T00:00:00Z", end="2026-01-01T01:00:00Z", scale=3),
        row(value=20, start="2026-01-01T01:00:00Z", end="2026-01-01T02:00:00Z", scale=4),
    ]
    (s,) = report(rows).series
    assert [p.estimate.value for p in s.points] == [10, 20]
    assert s.total is not None
    assert s.total.value == 30
    assert s.total.std == pytest.approx(5.0)


def test_distinct_units_across_agents_is_flagged_upper_bound() -> None:
    r = report([row(stat="distinct_units", agent="a1"), row(stat="distinct_units", agent="a2")])
    assert r.series[0].upper_bound
    assert any("upper bound" in n for n in r.notes)


def test_non_additive_stats_listed_per_agent_without_total() -> None:
    r = report(
        [
            row(stat="mean", value=1.5, agent="a1", mechanism="derived", scale=0.1),
            row(stat="mean", value=2.5, agent="a2", mechanism="derived", scale=0.2),
            row(stat="p50", value=30, agent="a1", mechanism="derived", scale=3),
        ]
    )
    mean, p50 = r.series
    assert mean.stat == "mean"
    assert p50.stat == "p50"
    assert [p.agents for p in mean.points] == [["a1"], ["a2"]]
    assert mean.total is None
    assert p50.total is None
    assert not mean.additive


def test_dims_and_histograms_are_separate_series() -> None:
    r = report(
        [
            row(dims={"region": "eu"}),
            row(dims={"region": "us"}),
            row(metric="ttv", stat="histogram", dims={"bucket": "0..10"}),
            row(metric="ttv", stat="histogram", dims={"bucket": "10..20"}),
        ]
    )
    assert [(s.metric, s.dims) for s in r.series] == [
        ("signup", {"region": "eu"}),
        ("signup", {"region": "us"}),
        ("ttv", {"bucket": "0..10"}),
        ("ttv", {"bucket": "10..20"}),
    ]


def test_negative_counts_are_kept_raw() -> None:
    (s,) = report([row(value=-3.0)]).series
    assert s.points[0].estimate.value == -3.0


def test_other_tenants_and_non_finite_rows_are_ignored() -> None:
    r = report([row(), row(tenant="other"), row(value=math.nan), row(scale=math.inf)])
    assert len(r.series) == 1
    assert r.series[0].points[0].estimate.value == 10
    assert any("other tenants" in n for n in r.notes)
    assert any("non-finite" in n for n in r.notes)


def test_unknown_mechanism_is_noted_and_treated_as_std() -> None:
    r = report([row(mechanism="mystery", scale=1.0)])
    assert r.series[0].points[0].estimate.method == "normal"
    assert any("mystery" in n for n in r.notes)


def test_range_filter_is_half_open_on_window_start() -> None:
    rows = [
        row(start="2026-01-01T23:00:00Z", end="2026-01-02T00:00:00Z"),
        row(start="2026-01-02T00:00:00Z", end="2026-01-02T01:00:00Z"),
        row(start="2026-01-03T00:00:00Z", end="2026-01-03T01:00:00Z"),
    ]
    r = kpi_report(rows, [], [], tenant=T, since="2026-01-02", until="2026-01-03T00:00:00Z")
    assert [p.window_start for p in r.series[0].points] == ["2026-01-02T00:00:00Z"]


def test_parse_bound() -> None:
    assert parse_bound(None) is None
    assert parse_bound("2026-01-02") == parse_bound("2026-01-02T00:00:00Z")
    with pytest.raises(ValueError, match="offset"):
        parse_bound("2026-01-02T00:00:00")
    assert not in_range("garbage", 0.0, None)


def test_empty_inputs() -> None:
    r = kpi_report([], [], [], tenant=T, since=None, until=None)
    assert r.series == []
    assert r.quota == []
    assert r.privacy.total == []
    assert r.usage.rows == 0


def usage(day: str, rows: int, nbytes: int, refused: dict[str, int] | None = None) -> UsageDay:
    return UsageDay(T, day, 1, rows, nbytes, 0, refused or {}, 0)


def test_quota_use_is_peak_period() -> None:
    days = [
        usage("2026-01-01", 100, 1000, {"quota": 2}),
        usage("2026-01-02", 300, 500),
        usage("2026-02-01", 50, 50),
    ]
    quota = {
        "rows_per_day": 1000,
        "bytes_per_month": 10_000,
        "batches_per_day": None,
        "max_batch_bytes": 65536,
    }
    r = kpi_report([], [], days, tenant=T, since=None, until=None, quota=quota)
    q = {x.name: x for x in r.quota}
    assert (q["rows_per_day"].used, q["rows_per_day"].period, q["rows_per_day"].fraction) == (
        300,
        "2026-01-02",
        0.3,
    )
    assert (q["bytes_per_month"].used, q["bytes_per_month"].period) == (1500, "2026-01")
    assert q["batches_per_day"].limit is None
    assert q["batches_per_day"].fraction is None
    assert q["max_batch_bytes"].used is None
    assert r.usage.rows == 450
    assert r.usage.refused == {"quota": 2}


def test_usage_days_filtered_by_overlap() -> None:
    days = [usage("2026-01-01", 1, 1), usage("2026-01-02", 2, 2), usage("2026-01-03", 4, 4)]
    r = kpi_report([], [], days, tenant=T, since="2026-01-01T12:00:00Z", until="2026-01-03")
    assert [d.day for d in r.usage.days] == ["2026-01-01", "2026-01-02"]


def test_privacy_spend_per_agent_and_day() -> None:
    def bp(agent: str, start: str, rho: float | None, eps: float | None = None) -> BatchPrivacy:
        return BatchPrivacy(T, agent, 1, start, start, "user", eps, 1e-7 if rho else None, rho)

    batches = [
        bp("a1", "2026-01-01T00:00:00Z", 0.01),
        bp("a1", "2026-01-01T01:00:00Z", 0.02),
        bp("a2", "2026-01-02T00:00:00Z", None, 0.5),
    ]
    r = kpi_report([], batches, [], tenant=T, since=None, until=None)
    agents = {ln.key: ln for ln in r.privacy.by_agent}
    assert agents["a1"].rho == pytest.approx(0.03)
    assert agents["a1"].epsilon is None
    assert agents["a1"].batches == 2
    assert agents["a2"].epsilon == 0.5
    assert agents["a2"].rho is None
    days = {ln.key: ln for ln in r.privacy.by_day}
    assert set(days) == {"2026-01-01", "2026-01-02"}
    (tot,) = r.privacy.total
    assert tot.batches == 3
    assert tot.delta == pytest.approx(2e-7)


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
scales = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(finite, st.sampled_from(["gaussian", "laplace", "derived", "x"]), scales),
        min_size=1,
        max_size=6,
    )
)
def test_interval_always_contains_value(parts: list[tuple[float, str, float]]) -> None:
    e = estimate(total([row_noise(v, m, s) for v, m, s in parts]))
    assert e.low <= e.value <= e.high
    assert math.isfinite(e.low)
    assert math.isfinite(e.high)
