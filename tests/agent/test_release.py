"""DP release: declared scales match the budget, and the spread of released values matches them.

OpenDP's samplers cannot be seeded, so the statistical checks use tolerances: with N releases of k
entries the relative standard error of an empirical std is about 1/sqrt(2·N·k) (≈ 2–4 % here); the
tolerances (±15 %, ±25 % for derived statistics) are many standard errors wide — stable — yet a scale
off by a factor 2 (or √2) falls far outside them.
"""

from __future__ import annotations

import math
import statistics

import pytest

from agent.aggregate import WindowAggregator, WindowState
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, per_window_budget
from agent.release import expected_error, release_window, window_cost

N = 400


def policy(*metrics: Metric, budget: Budget | None = None) -> Policy:
    return Policy(
        version=1,
        name="t",
        budget=budget or Budget(rho=24.0),  # 1 ρ per 1 h window
        attrs={"os": AttrRule(), "page": AttrRule()},
        metrics=list(metrics),
    )


def state_of(p: Policy, events: list[Event]) -> WindowState:
    agg = WindowAggregator(p)
    agg.add(events)
    (state,) = agg.flush()
    return state


def spread(
    p: Policy, state: WindowState, stat: str, n: int = N, metric: int = 0
) -> tuple[dict[str, list[float]], float]:
    """Released values of one metric per dims over n releases, and the declared scale."""
    values: dict[str, list[float]] = {}
    scales = set()
    for _ in range(n):
        for row in release_window(state, p).rows:
            if row.stat == stat and row.metric == p.metrics[metric].name:
                values.setdefault(repr(sorted(row.dims.items())), []).append(row.value)
                scales.add(row.noise.scale)
    assert len(scales) == 1
    return values, scales.pop()


def pooled_std(values: dict[str, list[float]], truth: dict[str, float]) -> float:
    sq = [(v - truth[k]) ** 2 for k, vs in values.items() for v in vs]
    return math.sqrt(sum(sq) / len(sq))


OS = ["linux", "mac", "win", "bsd"]


def os_events(n_units: int = 40, per_unit: int = 3) -> list[Event]:
    return [
        Event("hit", 10.0, f"u{u}", value=float(u % 7), attrs={"os": OS[u % 3]})
        for u in range(n_units)
        for _ in range(per_unit)
    ]


def test_gaussian_count_scale_matches_budget_and_spread() -> None:
    m = Metric(
        name="hits", events=["hit"], stat="count", dims={"os": OS}, max_partitions=1, max_contributions=2
    )
    p = policy(m, Metric(name="other", events=["x"], stat="count", weight=3.0))
    state = state_of(p, os_events())
    share = per_window_budget(p) * 1.0 / 4.0
    sigma = math.sqrt(1) * 2 / math.sqrt(2 * share)  # Δ2 = sqrt(P)·C; σ² = Δ²/(2ρ)
    values, declared = spread(p, state, "count")
    assert declared == pytest.approx(sigma, rel=1e-9)
    assert declared >= sigma
    truth = {repr([("os", o)]): float(2 * sum(1 for u in range(40) if OS[u % 3] == o)) for o in OS}
    assert set(values) == set(truth)  # "bsd" is declared: released although nobody used it
    empirical = pooled_std(values, truth)
    assert empirical == pytest.approx(declared, rel=0.15), (empirical, declared)
    for key, vs in values.items():  # unbiased
        assert abs(statistics.fmean(vs) - truth[key]) < 5 * declared / math.sqrt(len(vs))


def test_gaussian_fixed_point_sum() -> None:
    m = Metric(name="lat", events=["hit"], stat="sum", lower=0, upper=10, max_contributions=3)
    p = policy(m)
    state = state_of(p, os_events())
    values, declared = spread(p, state, "sum")
    # Δ2 = C·max|bound| = 30 (in value units); ρ = 1
    assert declared == pytest.approx(30 / math.sqrt(2.0), rel=1e-9)
    truth = {"[]": float(sum(3 * (u % 7) for u in range(40)))}
    assert pooled_std(values, truth) == pytest.approx(declared, rel=0.15)


def test_laplace_count_and_sum() -> None:
    budget = Budget(mechanism="pure", epsilon=24.0)
    p = policy(
        Metric(
            name="hits", events=["hit"], stat="count", dims={"os": OS}, max_partitions=1, max_contributions=2
        ),
        Metric(name="lat", events=["hit"], stat="sum", lower=-5, upper=10, max_contributions=1),
        budget=budget,
    )
    state = state_of(p, os_events())
    values, b = spread(p, state, "count")
    assert b == pytest.approx(2 / 0.5, rel=1e-9)  # Δ1 = P·C = 2, ε share = 0.5
    truth = {repr([("os", o)]): float(2 * sum(1 for u in range(40) if OS[u % 3] == o)) for o in OS}
    assert pooled_std(values, truth) == pytest.approx(b * math.sqrt(2.0), rel=0.15)
    sums, b_sum = spread(p, state, "sum", n=3 * N, metric=1)  # one entry per release: more releases
    assert b_sum == pytest.approx(10 / 0.5, rel=1e-9)  # Δ1 = C·max(|lower|, |upper|) = 10
    assert pooled_std(sums, {"[]": float(sum(u % 7 for u in range(40)))}) == pytest.approx(
        b_sum * math.sqrt(2.0), rel=0.15
    )
    rel = release_window(state, p)
    assert rel.epsilon is not None
    assert rel.rho is None
    assert rel.delta is None
    assert rel.epsilon <= per_window_budget(p)
    assert rel.epsilon == pytest.approx(1.0)


def test_mean_is_derived_and_its_scale_is_roughly_right() -> None:
    m = Metric(name="lat", events=["hit"], stat="mean", lower=0, upper=10, max_contributions=1)
    p = policy(m, budget=Budget(rho=2400.0))
    events = [Event("hit", 10.0, f"u{u}", value=float(u % 5) + 2.5) for u in range(200)]
    state = state_of(p, events)
    values, _ = spread(p, state, "mean", n=1)
    rows = [r for _ in range(N) for r in release_window(state, p).rows]
    assert {r.noise.mechanism for r in rows} == {"derived"}
    means = [r.value for r in rows]
    declared = statistics.fmean(r.noise.scale for r in rows)
    assert statistics.fmean(means) == pytest.approx(4.5, abs=5 * declared / math.sqrt(N))
    assert statistics.pstdev(means) == pytest.approx(declared, rel=0.25)
    assert values


def test_histogram_and_quantiles() -> None:
    edges = [0.0, 10.0, 20.0, 30.0, 40.0]
    p = policy(
        Metric(name="h", events=["hit"], stat="histogram", lower=0, upper=40, buckets=edges),
        Metric(
            name="q", events=["hit"], stat="quantiles", lower=0, upper=40, buckets=edges, quantiles=[0.5, 0.9]
        ),
    )
    events = [Event("hit", 10.0, f"u{u}", value=float(u % 40)) for u in range(400)]
    state = state_of(p, events)
    values, sigma = spread(p, state, "histogram", n=100)
    assert set(values) == {repr([("bucket", b)]) for b in ("0..10", "10..20", "20..30", "30..40")}
    assert sigma == pytest.approx(1 / math.sqrt(2 * 0.5), rel=1e-9)
    truth = dict.fromkeys(values, 100.0)
    assert pooled_std(values, truth) == pytest.approx(sigma, rel=0.25)
    rows = [r for r in release_window(state, p).rows if r.metric == "q"]
    assert [r.stat for r in rows] == ["p50", "p90"]
    assert rows[0].value == pytest.approx(20.0, abs=2.0)
    assert rows[1].value == pytest.approx(36.0, abs=2.0)
    assert all(r.noise.mechanism == "derived" and 0 < r.noise.scale <= 40 for r in rows)


def test_distinct_units() -> None:
    p = policy(Metric(name="users", events=["hit"], stat="distinct_units", max_partitions=2))
    state = state_of(p, os_events(n_units=30))
    values, sigma = spread(p, state, "distinct_units", n=200)
    assert sigma == pytest.approx(math.sqrt(2) / math.sqrt(2), rel=1e-9)  # Δ2 = sqrt(P), ρ = 1
    assert pooled_std(values, {"[]": 30.0}) == pytest.approx(sigma, rel=0.25)


def test_partition_selection_keeps_frequent_and_drops_rare_values() -> None:
    p = policy(
        Metric(name="pages", events=["hit"], stat="count", dims={"page": "open"}),
        Metric(name="paged", events=["hit"], stat="sum", lower=0, upper=10, dims={"page": "open"}),
    )
    events = [Event("hit", 10.0, f"u{u}", value=1.0, attrs={"page": "home"}) for u in range(300)]
    events.append(Event("hit", 10.0, "loner", value=1.0, attrs={"page": "secret-project"}))
    state = state_of(p, events)
    seen: dict[tuple[str, str], int] = {}
    for _ in range(200):
        rel = release_window(state, p)
        for row in rel.rows:
            seen[row.metric, row.dims["page"]] = seen.get((row.metric, row.dims["page"]), 0) + 1
    assert seen == {("pages", "home"): 200, ("paged", "home"): 200}
    assert rel.delta is not None
    assert 0 < rel.delta <= p.budget.delta
    assert rel.rho is not None
    assert rel.rho <= per_window_budget(p)
    errors = {e.metric: e for e in expected_error(p)}
    assert errors["pages"].threshold is not None
    assert 1 < errors["pages"].threshold < 300


@pytest.mark.parametrize("mechanism", ["zcdp", "pure"])
def test_threshold_released_counts_have_the_declared_scale(mechanism: str) -> None:
    budget = Budget(rho=24.0) if mechanism == "zcdp" else Budget(mechanism="pure", epsilon=24.0)
    m = Metric(name="pages", events=["hit"], stat="count", dims={"page": "open"}, max_contributions=10)
    p = policy(m, budget=budget)
    events = [Event("hit", 10.0, f"u{u}", attrs={"page": "home"}) for u in range(300) for _ in range(10)]
    values, scale = spread(p, state_of(p, events), "count", n=2 * N)
    assert scale == pytest.approx(10 / math.sqrt(2) if mechanism == "zcdp" else 10.0, rel=1e-9)
    std = scale if mechanism == "zcdp" else scale * math.sqrt(2)
    assert pooled_std(values, {repr([("page", "home")]): 3000.0}) == pytest.approx(std, rel=0.15)


def test_cost_depends_on_policy_only_and_budget_override() -> None:
    p = policy(
        Metric(name="hits", events=["hit"], stat="count"), Metric(name="v", events=["hit"], stat="sum")
    )
    empty = state_of(p, [Event("hit", 10.0, "u")])
    full = state_of(p, os_events())
    a, b = release_window(empty, p), release_window(full, p)
    assert a.rho == b.rho == window_cost(p)[0]
    assert a.rho is not None
    assert 1.0 * (1 - 1e-9) <= a.rho <= 1.0
    half = release_window(full, p, budget=0.5)
    assert half.rho == pytest.approx(0.5)
    assert half.rows[0].noise.scale == pytest.approx(b.rows[0].noise.scale * math.sqrt(2))


def test_expected_error_matches_released_scales() -> None:
    p = policy(
        Metric(name="hits", events=["hit"], stat="count", dims={"os": OS}),
        Metric(name="lat", events=["hit"], stat="sum", lower=0, upper=10),
    )
    rel = release_window(state_of(p, os_events()), p)
    errors = {e.metric: e for e in expected_error(p)}
    released = {r.metric: r.noise.scale for r in rel.rows}
    for name in ("hits", "lat"):
        assert errors[name].scale == pytest.approx(released[name])
        assert errors[name].half_width_95 == pytest.approx(1.959964 * released[name], rel=1e-6)
