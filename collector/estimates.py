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

and for a sum over a subset A of the windows (covariances −v_i·v_j/(V + u) included)

    Var Σ_A t̂_i = V_A − V_A² / (V + u)           (V_A = Σ_{i∈A} v_i; A = all gives Var T̂)

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

__all__ = [
    "Consistent",
    "Estimate",
    "Observation",
    "Released",
    "consistent",
    "consistent_rows",
    "noise_variance",
]


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
    ident: Hashable = None  # tells apart rows that are otherwise equal (e.g. a stored row's index)


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


class Consistent:
    """Consistent estimates of a set of released values, and of sums of them with the right variance.

    ``estimates`` maps every released value to its estimate. Window values combined with a period
    total are correlated (their noise shares the total's): :meth:`sum` accounts for that, so the
    interval of a whole period's windows is the total's, not the wider sum of the parts.
    """

    __slots__ = ("_groups", "estimates")

    def __init__(self) -> None:
        self.estimates: dict[Released, Estimate] = {}
        # window value -> (its period row, V + u of the group, its own raw variance)
        self._groups: dict[Released, tuple[Released, float, float]] = {}

    def paired(self, row: Released) -> bool:
        """Whether ``row`` is a window value combined with its period total."""
        return row in self._groups

    def sum(self, rows: Iterable[Released]) -> Estimate:
        """The estimate of the sum of ``rows`` (window or period values; each counted once)."""
        value = 0.0
        variance = 0.0
        partial: dict[Released, tuple[float, float]] = {}  # period row -> (V_A, V + u)
        for row in dict.fromkeys(rows):
            estimate = self.estimates[row]
            value += estimate.value
            group = self._groups.get(row)
            if group is None:
                variance += estimate.variance
                continue
            total, whole, own = group
            seen, _ = partial.get(total, (0.0, whole))
            partial[total] = (seen + own, whole)
        for v_a, whole in partial.values():
            variance += max(v_a - v_a * v_a / whole, 0.0)
        return Estimate(value, variance)


def _tiles(windows: Sequence[Released], total: Released) -> bool:
    """Whether ``windows`` (sorted by start) cover ``total``'s span end to end, each once."""
    at = total.start
    for w in windows:
        if w.start != at or w.end <= w.start:
            return False
        at = w.end
    return bool(windows) and at == total.end


def consistent_rows(rows: Iterable[Released]) -> Consistent:
    """Estimates for every released value: each period row with the window rows of its series that
    lie inside its span, combined by :func:`consistent` when they cover the span exactly (one value
    per window, no gap: a total of windows that are not all here cannot be split among those that
    are); any other row stands as released.

    A sum mixing a period total with its own windows counts the same quantity twice: callers sum
    either windows or totals (reports sum windows; their estimates add up to the totals)."""
    windows: dict[Hashable, list[Released]] = {}
    totals: list[Released] = []
    for row in rows:
        if row.level == "period":
            totals.append(row)
        else:
            windows.setdefault(row.series, []).append(row)
    out = Consistent()
    for total in totals:
        inside = sorted(
            (w for w in windows.get(total.series, []) if total.start <= w.start and w.end <= total.end),
            key=lambda w: w.start,
        )
        if not _tiles(inside, total):
            out.estimates[total] = Estimate(total.value, noise_variance(total.mechanism, total.scale))
            continue
        observations = [Observation(w.value, noise_variance(w.mechanism, w.scale)) for w in inside]
        u = noise_variance(total.mechanism, total.scale)
        estimates, whole = consistent(observations, Observation(total.value, u))
        out.estimates[total] = whole
        out.estimates.update(zip(inside, estimates, strict=True))
        var_sum = math.fsum(o.variance for o in observations)
        if inside and var_sum > 0:
            for w, o in zip(inside, observations, strict=True):
                out._groups[w] = (total, var_sum + u, o.variance)
    for series in windows.values():
        for w in series:
            if w not in out.estimates:
                out.estimates[w] = Estimate(w.value, noise_variance(w.mechanism, w.scale))
    return out
