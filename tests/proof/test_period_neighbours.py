"""Proof family 10c — neighbouring inputs under per-period bounds (issue 15): a unit flooding every
window of a period moves the period's vector (its windows and its total) by at most the bound, and
the privacy loss of the whole period is what the ledger charged once for it.

In process, as family 10b: for Gaussian noise the optimal test between D and a neighbour D' is
linear in the released vector, T = Σ Δ_i·x_i / σ_i², where Δ is the true difference of the two
releases over all of the period's windows and its total. Projected on T the two datasets give
N(μ_D, s²) and N(μ_D', s²): a Gaussian mechanism with ρ̂ = (μ_D' − μ_D)² / (2 s²), the whole loss of
the pair. Estimated from many releases (s from the samples, not the declared σ), ρ̂ must not exceed
the period charge (beyond sampling error) and must come close to it for the worst case, which
attains the bound (so a noise scale calibrated per window instead of per period is caught).

Values are sums on a 1,000-step fixed-point grid, so the discrete Gaussian's σ is hundreds of
steps and it behaves as the continuous one. The populations are fixed; OpenDP's noise is not seeded.
"""

from __future__ import annotations

import math
import statistics

import pytest

from agent.aggregate import MetricWindow, WindowAggregator, WindowState
from agent.bound import Bounds
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec
from agent.release import period_cost, release_period_total, release_window, window_cost
from tests.proof.proofkit import Figures, pick

FAMILY = "10c period bounds"
H = 3600
T0 = 1_767_571_200  # 2026-01-05T00:00:00Z
RELEASES = pick(800, 8000)  # per dataset; each is a whole period: 4 windows and the total
PLANS = ["free", "team"]


def policy() -> Policy:
    return Policy(
        version=1,
        name="period-neighbours",
        budget=Budget(rho=2.0),
        window=WindowSpec(size="6h"),
        attrs={"plan": AttrRule()},
        metrics=[
            Metric(
                name="spend",
                events=["spend"],
                stat="sum",
                lower=0.0,
                upper=1.0,
                dims={"plan": PLANS},
                max_partitions=2,
                max_contributions=2,
                bound="period",
                period_total=0.3,
            )
        ],
    )


def base() -> list[Event]:
    return [
        Event("spend", T0 + w * 6 * H + 60 * i, f"u{w}-{i}", 0.25 + 0.5 * (i % 2), {"plan": PLANS[i % 2]})
        for w in range(4)
        for i in range(40)
    ]


def flood(kind: str) -> list[Event]:
    """One unit: the largest value in both plans, in every window (``every``: five times per window
    and plan — the caps keep the first two per plan; ``spread``: once per window and plan)."""
    repeats = 5 if kind == "every" else 1
    return [
        Event("spend", T0 + w * 6 * H + 3 * H + r, "flooder", 1.0, {"plan": plan})
        for w in range(4)
        for plan in PLANS
        for r in range(repeats)
    ]


def period(p: Policy, events: list[Event]) -> tuple[list[WindowState], MetricWindow]:
    agg = WindowAggregator(p, next_start=T0)
    agg.add(sorted(events, key=lambda e: e.ts))
    states = agg.take_until(T0 + 24 * H)
    total = MetricWindow(Bounds.of(p.metrics[0]))
    for s in states:
        for key, acc in s.metrics[0].parts.items():
            old = total.parts.setdefault(key, [0] * len(acc))
            total.parts[key] = [a + b for a, b in zip(old, acc, strict=True)]
    return states, total


def release(p: Policy, states: list[WindowState], total: MetricWindow) -> list[tuple[float, float]]:
    """(value, σ) of every entry the period releases: its windows' rows, then the total's."""
    rows = [r for s in states for r in release_window(s, p).rows]
    rows += release_period_total([total], p, start=T0, end=T0 + 24 * H).rows
    return [(r.value, r.noise.scale) for r in rows]


def truth(p: Policy, states: list[WindowState], total: MetricWindow) -> list[float]:
    q = Bounds.of(p.metrics[0]).quantum
    keys = [(plan,) for plan in PLANS]
    windows = [s.metrics[0].parts.get(k, [0, 0])[1] * q for s in states for k in keys]
    return windows + [total.parts.get(k, [0, 0])[1] * q for k in keys]


@pytest.mark.parametrize("kind", ["spread"])  # "every" (the worst case) is also in test_neighbours.py
def test_a_unit_flooding_a_period_costs_at_most_the_period_charge(kind: str, figures: Figures) -> None:
    p = policy()
    d = period(p, base())
    dp = period(p, base() + flood(kind))
    delta = [b - a for a, b in zip(truth(p, *d), truth(p, *dp), strict=True)]
    # The bound: the flooder adds at most max_contributions × upper to each of its max_partitions
    # partitions over the whole period, to the windows and to the total alike.
    windows, totals = delta[:-2], delta[-2:]
    assert totals == pytest.approx([2.0, 2.0])
    assert math.fsum(windows) == pytest.approx(4.0)
    assert all(x >= 0 for x in windows)
    assert math.fsum(x * x for x in windows) <= 2 * 2.0**2 + 1e-9  # ‖Δ‖₂² ≤ P·(C·upper)²
    stats: list[list[float]] = [[], []]
    sigmas: list[float] = []
    for i, data in enumerate((d, dp)):
        for _ in range(RELEASES):
            out = release(p, *data)
            sigmas = [s for _, s in out]
            stats[i].append(math.fsum(dl * v / s**2 for dl, (v, s) in zip(delta, out, strict=True)))
    s2 = (statistics.variance(stats[0]) + statistics.variance(stats[1])) / 2
    rho_hat = (statistics.fmean(stats[1]) - statistics.fmean(stats[0])) ** 2 / (2 * s2)
    charged = period_cost(p) + 4 * window_cost(p)[0]  # window_cost is 0: the one metric is per period
    # Exact loss of the pair at the declared scales (the flood attains it for kind "every").
    exact = math.fsum(dl * dl / s**2 for dl, s in zip(delta, sigmas, strict=True)) / 2
    assert exact <= charged * (1 + 1e-9)
    # Sampling error of ρ̂ = μ²/(2s²): the mean difference μ = s·√(2ρ) has standard error s·√(2/N),
    # and s² a relative one of √(1/N) (pooled over 2N samples); four standard errors.
    relative = 2 * math.sqrt(2 / RELEASES) / math.sqrt(2 * exact) + math.sqrt(1 / RELEASES)
    tolerance = 4 * relative * exact
    assert rho_hat <= charged + tolerance
    assert abs(rho_hat - exact) <= tolerance
    if kind == "every":
        assert exact == pytest.approx(charged, rel=1e-6)  # the worst case attains the charge
    figures.record(
        FAMILY,
        f"a unit flooding {kind} window",
        runs=2 * RELEASES,
        charged_rho=f"{charged:.4f}",
        exact_rho=f"{exact:.4f}",
        estimated_rho=f"{rho_hat:.4f}",
    )
