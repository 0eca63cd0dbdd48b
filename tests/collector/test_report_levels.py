"""Reports over release levels: consistent window estimates, totals with covariance, old rows as before."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from collector.report.intervals import estimate, row_noise, total
from collector.report.levels import level_view
from collector.store.records import StoredRow

DAY = "2026-01-05"


def stamp(hour: int) -> str:
    return f"{DAY}T{hour:02d}:00:00Z" if hour < 24 else "2026-01-06T00:00:00Z"


def row(h: int, value: float, *, agent: str = "e1", level: str = "window", scale: float = 2.0) -> StoredRow:
    """Window ``h`` (6 h) of the day, or with ``level = "period"`` the day's total."""
    start, end = (stamp(6 * h), stamp(6 * h + 6)) if level == "window" else (stamp(0), stamp(24))
    return StoredRow("acme", agent, h + 1, start, end, "signup", "count", {}, value, "gaussian", scale, level)


def test_rows_without_totals_pass_through_and_sum_as_before() -> None:
    rows = [row(h, 10.0 + h) for h in range(4)]
    view = level_view(rows)
    assert view.rows == rows
    assert view.total(view.rows) == total([row_noise(r.value, r.mechanism, r.scale) for r in rows])


def test_windows_become_consistent_estimates_and_the_day_has_the_totals_variance() -> None:
    windows = [row(h, v) for h, v in enumerate([10.0, 12.0, 9.0, 11.0])]
    day = row(0, 50.0, level="period", scale=3.0)
    other = row(0, 7.0, agent="e2")  # another agent, no total: raw
    view = level_view([*windows, day, other])
    assert len(view.rows) == 5
    assert all(r.level == "window" for r in view.rows)
    mine = [r for r in view.rows if r.agent == "e1"]
    whole = view.total(mine)
    v, u = 4 * 4.0, 9.0
    expected = (42.0 / v + 50.0 / u) / (1 / v + 1 / u)
    assert whole.value == pytest.approx(expected)
    assert whole.var == pytest.approx(1 / (1 / v + 1 / u))
    assert math.fsum(r.value for r in mine) == pytest.approx(expected)
    assert all(r.scale < 2.0 for r in mine)  # each window is more precise than released
    both = view.total(view.rows)
    assert both.value == pytest.approx(expected + 7.0)
    assert both.var == pytest.approx(whole.var + 4.0)
    assert (
        estimate(whole).high - estimate(whole).low
        < estimate(total([row_noise(42.0, "gaussian", 4.0)])).high
        - estimate(total([row_noise(42.0, "gaussian", 4.0)])).low
    )


def test_a_partial_sum_is_unbiased_with_its_declared_variance() -> None:
    rng = random.Random(3)
    truth = [10.0, 12.0, 9.0, 11.0]
    sums, declared = [], 0.0
    for _ in range(3000):
        windows = [row(h, t + rng.gauss(0, 2.0)) for h, t in enumerate(truth)]
        day = row(0, sum(truth) + rng.gauss(0, 3.0), level="period", scale=3.0)
        view = level_view([*windows, day])
        part = view.total(view.rows[:2])
        sums.append(part.value)
        declared = part.var
    assert abs(statistics.fmean(sums) - 22.0) <= 4.5 * math.sqrt(declared / 3000)
    assert statistics.variance(sums) == pytest.approx(declared, rel=0.12)
