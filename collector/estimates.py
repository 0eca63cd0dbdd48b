"""Consistent estimates over release levels: weighted least squares of window values and their
period total, so that windows add up to the total and every estimate has a known variance.

Pure: values and declared noise in, estimates out. No store or report imports (reports call it).

An agent with per-period bounds and a period total releases, for one metric, statistic and
partition, the window values x_1…x_k (noise variances v_i) and the period total y (variance u),
each with independent noise around the true values t_1…t_k and Σ t_i. Least squares weighted by the
inverse variances,

    minimise  Σ_i (t̂_i − x_i)² / v_i  +  (Σ_i t̂_i − y)² / u,

has a closed form for this two-level tree. With S = Σ x_i and V = Σ v_i:

    T̂   = (S/V + y/u) / (1/V + 1/u)          Var T̂   = 1 / (1/V + 1/u)
    t̂_i = x_i + (v_i / V)·(T̂ − S)            Var t̂_i = v_i − v_i² / (V + u)

so Σ t̂_i = T̂ exactly, the estimates are unbiased (linear in unbiased observations with weights
that sum right), and each variance is at most that of the raw value. It is the minimum-variance
unbiased linear combination (Gauss–Markov) because the noise is independent with known variances.
Estimation only post-processes released values: it costs no privacy. Clipping or rounding, if a
report wants them, come after estimation, never before (a clipped input would bias the total).

The noise variance of a released value follows from its declared mechanism and scale: σ² for
``gaussian``, 2b² for ``laplace``, scale² for ``derived`` (an approximate standard deviation).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import NamedTuple

__all__ = ["Estimate", "Observation", "Released", "consistent", "consistent_rows", "noise_variance"]


class Observation(NamedTuple):
    value: float
    variance: float  # of the noise; > 0


class Estimate(NamedTuple):
    value: float
    variance: float

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)


class Released(NamedTuple):
    """A released value as the estimator needs it. ``series`` identifies what windows and totals
    belong together (e.g. agent, metric, stat and dims); ``level`` is ``window`` or ``period``."""

    series: Hashable
    level: str
    start: int  # epoch seconds
    end: int
    value: float
    mechanism: str
    scale: float


def noise_variance(mechanism: str, scale: float) -> float:
    """Variance of a released value's noise from its declared mechanism and scale."""
    return 2.0 * scale * scale if mechanism == "laplace" else scale * scale


def consistent(windows: Sequence[Observation], total: Observation | None) -> tuple[list[Estimate], Estimate]:
    """Weighted least squares over one period: estimates of the windows and of their total.

    Without a total (or with no windows) the raw values stand, and the total is their sum. A zero
    variance (an exact value) is kept exactly."""
    summed = math.fsum(w.value for w in windows)
    var_sum = math.fsum(w.variance for w in windows)
    if total is None or not windows:
        raw = [Estimate(w.value, w.variance) for w in windows]
        if total is not None:  # a total with no window released alongside it
            return raw, Estimate(total.value, total.variance)
        return raw, Estimate(summed, var_sum)
    if var_sum <= 0.0:  # exact windows (no noise): they are the truth, and so is their sum
        return [Estimate(w.value, 0.0) for w in windows], Estimate(summed, 0.0)
    u = max(total.variance, 0.0)  # an exact total (u = 0) is the limit of the formulas below
    value = total.value if u == 0.0 else (summed / var_sum + total.value / u) / (1.0 / var_sum + 1.0 / u)
    variance = 0.0 if u == 0.0 else 1.0 / (1.0 / var_sum + 1.0 / u)
    gap = value - summed
    estimates = [
        Estimate(w.value + (w.variance / var_sum) * gap, max(w.variance - w.variance**2 / (var_sum + u), 0.0))
        for w in windows
    ]
    return estimates, Estimate(value, variance)


def consistent_rows(rows: Iterable[Released]) -> dict[Released, Estimate]:
    """Estimates for every released value: each period row with the window rows of its series that
    lie inside its span, combined by :func:`consistent`; window rows without a period row, and
    period rows, estimated as themselves when nothing pairs with them."""
    windows: dict[Hashable, list[Released]] = {}
    totals: list[Released] = []
    for row in rows:
        if row.level == "period":
            totals.append(row)
        else:
            windows.setdefault(row.series, []).append(row)
    out: dict[Released, Estimate] = {}
    for total in totals:
        inside = [w for w in windows.get(total.series, []) if total.start <= w.start and w.end <= total.end]
        observations = [Observation(w.value, noise_variance(w.mechanism, w.scale)) for w in inside]
        estimates, whole = consistent(
            observations, Observation(total.value, noise_variance(total.mechanism, total.scale))
        )
        out[total] = whole
        out.update(zip(inside, estimates, strict=True))
    for series in windows.values():
        for w in series:
            if w not in out:
                out[w] = Estimate(w.value, noise_variance(w.mechanism, w.scale))
    return out
