"""Consistent estimates over release levels: optimality, consistency, unbiasedness and variances.

The estimator is pure, so the statistical checks feed it seeded Gaussian noise around known truths
(the end-to-end check with OpenDP's noise is tests/integration/test_levels.py). With N = 4,000
periods the relative standard error of an empirical variance is √(2/N) ≈ 2.2 %; the ±10 % tolerance
is 4.5 of them, and a mean is checked to within 4.5 standard errors.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.estimates import Observation, Released, consistent, consistent_rows, noise_variance

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
variances = st.floats(min_value=1e-3, max_value=1e6)
observations = st.builds(Observation, values, variances)


@given(st.lists(observations, min_size=1, max_size=30), observations)
def test_windows_add_up_to_the_total_and_the_solution_is_least_squares(
    windows: list[Observation], total: Observation
) -> None:
    estimates, whole = consistent(windows, total)
    scale = max([abs(w.value) for w in windows] + [abs(total.value), 1.0])
    assert math.isclose(
        math.fsum(e.value for e in estimates), whole.value, rel_tol=1e-9, abs_tol=1e-9 * scale
    )
    # Optimality: the gradient of Σ (t_i − x_i)²/v_i + (Σ t_i − y)²/u vanishes at the estimates.
    residual = (whole.value - total.value) / total.variance
    for w, e in zip(windows, estimates, strict=True):
        gradient = (e.value - w.value) / w.variance + residual
        assert abs(gradient) * w.variance <= 1e-6 * scale
    # No estimate is noisier than its raw value, and the total beats both of its sources.
    assert all(e.variance <= w.variance * (1 + 1e-12) for w, e in zip(windows, estimates, strict=True))
    assert whole.variance <= min(total.variance, math.fsum(w.variance for w in windows)) * (1 + 1e-12)


def test_without_a_total_the_raw_values_stand() -> None:
    windows = [Observation(3.0, 4.0), Observation(-1.0, 4.0)]
    estimates, whole = consistent(windows, None)
    assert [e.value for e in estimates] == [3.0, -1.0]
    assert whole == (2.0, 8.0)


def test_an_exact_total_is_kept_and_the_windows_take_up_the_gap() -> None:
    estimates, whole = consistent([Observation(3.0, 1.0), Observation(5.0, 3.0)], Observation(12.0, 0.0))
    assert whole == (12.0, 0.0)
    assert [e.value for e in estimates] == [4.0, 8.0]


@pytest.mark.parametrize("k", [4, 24])
def test_estimates_are_unbiased_and_their_variances_are_the_declared_ones(k: int) -> None:
    rng = random.Random(15)
    truth = [10.0 * (i % 3) for i in range(k)]
    sigma_w, sigma_t = 2.0, 3.0
    n = 4000
    firsts, wholes = [], []
    declared = None
    for _ in range(n):
        windows = [Observation(t + rng.gauss(0.0, sigma_w), sigma_w**2) for t in truth]
        total = Observation(sum(truth) + rng.gauss(0.0, sigma_t), sigma_t**2)
        estimates, whole = consistent(windows, total)
        firsts.append(estimates[0].value)
        wholes.append(whole.value)
        declared = (estimates[0].variance, whole.variance)
    assert declared is not None
    for samples, true, variance in ((firsts, truth[0], declared[0]), (wholes, sum(truth), declared[1])):
        assert abs(statistics.fmean(samples) - true) <= 4.5 * math.sqrt(variance / n)
        assert statistics.variance(samples) == pytest.approx(variance, rel=0.10)


def test_rows_pair_with_the_total_of_their_series_and_span() -> None:
    def row(series: str, level: str, start: int, end: int, value: float) -> Released:
        return Released(series, level, start, end, value, "gaussian", 1.0)

    windows = [row("a", "window", h, h + 1, 1.0) for h in range(4)]
    outside = row("a", "window", 4, 5, 7.0)  # the next period
    other = row("b", "window", 0, 1, 5.0)  # another series
    total = row("a", "period", 0, 4, 8.0)
    out = consistent_rows([*windows, outside, other, total]).estimates
    assert out[total].value == pytest.approx(7.2)  # (S/V + y/u) / (1/V + 1/u) = (4/4 + 8) / (1/4 + 1)
    assert math.fsum(out[w].value for w in windows) == pytest.approx(out[total].value)
    assert out[outside] == (7.0, 1.0)
    assert out[other] == (5.0, 1.0)


def test_noise_variance_from_the_declared_scale() -> None:
    assert noise_variance("gaussian", 3.0) == 9.0
    assert noise_variance("laplace", 3.0) == 18.0
    assert noise_variance("derived", 3.0) == 9.0


def test_sums_of_windows_carry_their_covariance() -> None:
    """A whole period's windows have the total's variance; part of them less than the sum of their
    own variances (negative covariance); Monte Carlo confirms the declared variance of a part."""
    rng = random.Random(7)
    truth = [5.0, 9.0, 2.0, 4.0]
    parts = []
    declared = None
    for _ in range(4000):
        rows = [
            Released("a", "window", h, h + 1, t + rng.gauss(0.0, 2.0), "gaussian", 2.0)
            for h, t in enumerate(truth)
        ]
        total = Released("a", "period", 0, 4, sum(truth) + rng.gauss(0.0, 3.0), "gaussian", 3.0)
        est = consistent_rows([*rows, total])
        whole = est.sum(rows)
        assert whole.value == pytest.approx(est.estimates[total].value)
        assert whole.variance == pytest.approx(est.estimates[total].variance)
        part = est.sum(rows[:2])
        parts.append(part.value)
        declared = part.variance
        assert part.variance < est.estimates[rows[0]].variance + est.estimates[rows[1]].variance
    assert declared is not None
    assert statistics.variance(parts) == pytest.approx(declared, rel=0.10)
    assert abs(statistics.fmean(parts) - 14.0) <= 4.5 * math.sqrt(declared / 4000)


def test_a_total_pairs_only_with_windows_that_tile_its_span() -> None:
    """A report range that cuts a period, or a window released twice, leaves the raw values."""

    def row(level: str, start: int, end: int, value: float, ident: int = 0) -> Released:
        return Released("a", level, start, end, value, "gaussian", 1.0, ident)

    total = row("period", 0, 4, 10.0)
    missing = [row("window", h, h + 1, 2.0) for h in (0, 1, 3)]
    twice = [row("window", h, h + 1, 2.0) for h in range(4)] + [row("window", 2, 3, 2.5, 1)]
    for windows in (missing, twice):
        out = consistent_rows([*windows, total])
        assert all(out.estimates[w] == (w.value, 1.0) for w in windows)
        assert out.estimates[total] == (
            10.0,
            1.0,
        )
        assert not any(out.paired(w) for w in windows)
