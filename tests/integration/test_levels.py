"""Release levels end to end, with OpenDP's own noise: the agent releases a period's windows and its
total (per-period bounds), the collector's estimator combines them.

Checked (issue 15, "Measuring"): estimates are unbiased away from clipping, the empirical variances
of raw and consistent values match the declared ones, and windows add up to their total. N = 600
periods: the relative standard error of an empirical variance is √(2/N) ≈ 5.8 %, so ±20 % is 3.5 of
them — stable, yet a scale off by √2 (a charge split wrongly) falls outside.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from agent.aggregate import MetricWindow, WindowAggregator
from agent.bound import Bounds
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec
from agent.release import release_period_total, release_window
from collector.estimates import Observation, consistent, noise_variance

H = 3600
T = 1_767_571_200  # 2026-01-05T00:00:00Z
N = 600
K = 4
TRUTH = [30, 10, 50, 20]  # signups per 6 h window: far from zero, nothing clipped


def policy() -> Policy:
    return Policy(
        version=1,
        name="levels",
        budget=Budget(rho=0.05),  # small, so the noise is large against float rounding
        window=WindowSpec(size="6h"),
        attrs={"plan": AttrRule()},
        metrics=[
            Metric(
                name="signup",
                events=["signup"],
                stat="count",
                dims={"plan": ["free"]},
                bound="period",
                period_total=0.3,
            )
        ],
    )


def test_consistent_estimates_from_real_releases() -> None:
    p = policy()
    agg = WindowAggregator(p, next_start=T)
    agg.add(
        [
            Event("signup", T + w * 6 * H + i, f"u{w}-{i}", attrs={"plan": "free"})
            for w, n in enumerate(TRUTH)
            for i in range(n)
        ]
    )
    states = agg.take_until(T + 24 * H)
    summed = MetricWindow(Bounds.of(p.metrics[0]))
    for s in states:
        for key, acc in s.metrics[0].parts.items():
            old = summed.parts.setdefault(key, [0] * len(acc))
            summed.parts[key] = [a + b for a, b in zip(old, acc, strict=True)]
    raw, first, whole = [], [], []
    declared: tuple[float, float, float] | None = None
    for _ in range(N):
        windows = [release_window(s, p).rows[0] for s in states]
        (total,) = release_period_total([summed], p, start=T, end=T + 24 * H).rows
        assert total.level == "period"
        assert all(w.level == "window" for w in windows)
        obs = [Observation(w.value, noise_variance(w.noise.mechanism, w.noise.scale)) for w in windows]
        estimates, estimate = consistent(
            obs, Observation(total.value, noise_variance("gaussian", total.noise.scale))
        )
        assert math.isclose(
            math.fsum(e.value for e in estimates), estimate.value, rel_tol=1e-12, abs_tol=1e-9
        )
        raw.append(windows[0].value)
        first.append(estimates[0].value)
        whole.append(estimate.value)
        declared = (obs[0].variance, estimates[0].variance, estimate.variance)
    assert declared is not None
    for samples, truth, variance in (
        (raw, TRUTH[0], declared[0]),
        (first, TRUTH[0], declared[1]),
        (whole, sum(TRUTH), declared[2]),
    ):
        assert abs(statistics.fmean(samples) - truth) <= 4.0 * math.sqrt(variance / N)
        assert statistics.variance(samples) == pytest.approx(variance, rel=0.20)


def test_validate_and_tune_through_the_cli(tmp_path: Path) -> None:
    """A new user's view: validate names the period-bounded metrics of the shipped policy; tune
    compares the three settings and, given a sample, shows what the caps drop."""
    from agent.sources.demo import write_dataset
    from tests.integration.agentkit import init_agent

    agent = init_agent(tmp_path / "site")
    assert "per-day bounds (charged once per day): signup, eval_requested" in agent.ok("validate")
    sample = tmp_path / "sample.jsonl"
    write_dataset(sample, users=200, days=1)
    doc = agent.json("tune", "--input", str(sample))
    levels = {r["metric"]: r for r in doc["levels"]}
    assert levels["signup"]["bound"] == "period"
    assert levels["signup"]["window_bound_window"] == pytest.approx(
        2 * levels["signup"]["period_bound_window"]
    )
    clipped = {(r["metric"], r["bound"]): r for r in doc["clipping"]}
    assert clipped[("signup", "period")]["contributions"] == 200
    assert clipped[("signup", "period")]["dropped"] == 0
    text = agent.ok("tune", "--input", str(sample))
    assert "window bounds" in text
    assert "units clipped" in text
