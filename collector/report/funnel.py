"""The funnel report: stage totals, step and overall conversion, drop-off, time-to-value quantiles.

Public API (pure; DP-released rows in, a frozen msgspec Struct out)::

    funnel_report(rows, *, tenant, stages, ttv_metric=None, stat="count") -> FunnelReport

* ``stages`` are metric names in funnel order. A stage's total is the sum of its ``stat`` rows
  (``count`` or ``distinct_units``) over every window, agent and dimension cell; noise variances add.
  Filter ``rows`` by time before calling (e.g. with :func:`collector.report.kpi.in_range`).
* Step conversion ``stage[i+1] / stage[i]`` and overall conversion ``last / first`` carry a 95 %
  **Fieller** interval (:func:`collector.report.intervals.ratio`): the ratio of two noisy totals, exact for
  Gaussian noise, asymmetric when the earlier stage is small, and unbounded (None) when the earlier
  stage is not clearly above zero — where the delta method would give a misleadingly tight
  symmetric interval. Drop-off is ``stage[i] − stage[i+1]`` with its interval (variances add).
* Noise can make a later stage exceed an earlier one. That is reported as it is (conversion > 1)
  and flagged (``Step.inverted``); a non-positive earlier stage gives ``conversion.value = None``.
  A stage without rows is ``present = False``; steps touching it have no conversion.
* Time to value (``ttv_metric``): from its ``histogram`` rows, pooled over windows and agents,
  quantiles p50/p90/p99 with a test-inversion interval (below); from its quantile rows (``p50``,
  ``p90``…) the values per window and agent with their intervals (quantiles do not pool).

Histogram quantile: bucket counts (clipped at 0 so the CDF is monotone) are interpolated uniformly
within a bucket. The interval is ``{x : |C(x) − q·N| ≤ z·sd(C(x) − q·N)}``, C the noisy count below x;
noise in buckets below x, above x and in x's own bucket is independent, so the sd is exact under the
uniform-within-bucket model. A quantile in an open-ended bucket (``"100.."``) is that bucket's
finite edge, with ``open_side`` set.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence

import msgspec

from collector.report.intervals import (
    CONFIDENCE,
    Z95,
    Estimate,
    NoisySum,
    Ratio,
    estimate,
    ratio,
    row_noise,
)
from collector.report.kpi import parse_bucket, usable
from collector.report.levels import LevelView, level_view
from collector.store.records import StoredRow

__all__ = [
    "BucketTotal",
    "FunnelReport",
    "HistogramQuantile",
    "Stage",
    "Step",
    "TimeToValue",
    "WindowQuantile",
    "funnel_report",
    "histogram_quantile",
    "parse_bucket",
    "parse_quantile_stat",
]

TTV_QUANTILES = (0.5, 0.9, 0.99)


class Stage(msgspec.Struct, frozen=True):
    name: str
    present: bool
    windows: int
    agents: list[str]
    total: Estimate | None
    upper_bound: bool  # distinct units summed over windows or agents


class Step(msgspec.Struct, frozen=True):
    from_stage: str
    to_stage: str
    conversion: Ratio | None
    drop_off: Estimate | None
    inverted: bool  # the later stage's estimate exceeds the earlier one's (noise, or not a funnel)


class HistogramQuantile(msgspec.Struct, frozen=True):
    """A quantile of a pooled histogram; ``low``/``high`` None = unbounded on that side."""

    q: float
    value: float | None
    low: float | None
    high: float | None
    # "above": in a bucket open above, the true quantile is at least ``value``; "below": at most.
    open_side: str | None = None


class WindowQuantile(msgspec.Struct, frozen=True):
    q: float
    stat: str
    window_start: str
    window_end: str
    agent: str
    estimate: Estimate


class BucketTotal(msgspec.Struct, frozen=True):
    """A histogram bucket summed over windows and agents (raw, unclipped)."""

    bucket: str
    low_edge: float | None  # None: open below
    high_edge: float | None  # None: open above
    total: Estimate


class TimeToValue(msgspec.Struct, frozen=True):
    metric: str
    buckets: list[BucketTotal]  # the pooled histogram behind ``pooled``, by lower edge
    pooled: list[HistogramQuantile]  # from histogram rows over the whole range
    histogram_total: Estimate | None  # noisy number of observations behind ``pooled``
    per_window: list[WindowQuantile]  # from released quantile rows


class FunnelReport(msgspec.Struct, frozen=True, tag="funnel"):
    tenant: str
    stat: str
    confidence: float
    stages: list[Stage]
    steps: list[Step]
    overall: Ratio | None
    ttv: TimeToValue | None
    notes: list[str]


_QUANTILE_STAT = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


def parse_quantile_stat(stat: str) -> float | None:
    """``"p90"`` → 0.9, ``"p99.9"`` → 0.999; None for anything else."""
    match = _QUANTILE_STAT.match(stat)
    if match is None:
        return None
    q = float(match[1]) / 100.0
    return q if 0.0 < q < 1.0 else None


def _bisect(f: Callable[[float], float], rising: bool) -> float:
    """The t in [0, 1] where ``f`` changes sign (f(0) and f(1) differ in sign by the caller's check)."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2.0
        if (f(mid) >= 0.0) == rising:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2.0


def histogram_quantile(  # noqa: C901  # one walk over the buckets with its edge cases (open ends, empty)
    buckets: Sequence[tuple[float, float, NoisySum]], q: float
) -> HistogramQuantile:
    """Quantile ``q`` of a noisy histogram (bucket edges and noisy counts, disjoint, sorted or not)."""
    bs = sorted(buckets, key=lambda b: (b[0], b[1]))
    counts = [max(b[2].value, 0.0) for b in bs]
    var = [_effective_var(b[2]) for b in bs]
    n = sum(counts)
    if not bs or n <= 0.0:
        return HistogramQuantile(q, None, None, None)
    target = q * n
    below = [0.0]
    for c in counts:
        below.append(below[-1] + c)
    var_below = [0.0]
    for v in var:
        var_below.append(var_below[-1] + v)
    var_all = var_below[-1]

    def at(k: int, t: float) -> tuple[float, float]:
        """D = C(x) − qN and its sd at fraction t of bucket k."""
        d = below[k] + t * counts[k] - target
        v = (1 - q) ** 2 * var_below[k] + q * q * (var_all - var_below[k + 1]) + (t - q) ** 2 * var[k]
        return d, math.sqrt(v)

    def x_of(k: int, t: float, side: str) -> float | None:
        """x at fraction t of bucket k; inside an open-ended bucket, the conservative edge or None."""
        lo, hi = bs[k][0], bs[k][1]
        if not (math.isinf(lo) or math.isinf(hi)):
            return lo + t * (hi - lo)
        if t == 0.0 and not math.isinf(lo):
            return lo
        if t == 1.0 and not math.isinf(hi):
            return hi
        edge = lo if side == "low" else hi
        return None if math.isinf(edge) else edge

    # Point estimate: first bucket where the cumulative count reaches the target.
    value: float | None = None
    open_side: str | None = None
    for k, c in enumerate(counts):
        if below[k + 1] >= target and c > 0.0:
            t = (target - below[k]) / c
            lo, hi = bs[k][0], bs[k][1]
            if math.isinf(hi):
                value, open_side = lo, "above"
            elif math.isinf(lo):
                value, open_side = hi, "below"
            else:
                value = lo + t * (hi - lo)
            break

    # Lower bound: smallest x with D(x) + z·sd(x) >= 0.
    low: float | None = None
    for k in range(len(bs)):
        d0, s0 = at(k, 0.0)
        if d0 + Z95 * s0 >= 0.0:
            low = x_of(k, 0.0, "low")
            break
        d1, s1 = at(k, 1.0)
        if d1 + Z95 * s1 >= 0.0:

            def f_low(t: float, k: int = k) -> float:
                d, s = at(k, t)
                return d + Z95 * s

            low = x_of(k, _bisect(f_low, rising=True), "low")
            break
    # Upper bound: largest x with D(x) − z·sd(x) <= 0.
    high: float | None = None
    for k in reversed(range(len(bs))):
        d1, s1 = at(k, 1.0)
        if d1 - Z95 * s1 <= 0.0:
            high = x_of(k, 1.0, "high")
            break
        d0, s0 = at(k, 0.0)
        if d0 - Z95 * s0 <= 0.0:

            def f_high(t: float, k: int = k) -> float:
                d, s = at(k, t)
                return d - Z95 * s

            high = x_of(k, _bisect(f_high, rising=True), "high")
            break
    return HistogramQuantile(q, value, low, high, open_side)


def _effective_var(noisy: NoisySum) -> float:
    return (estimate(noisy).half_width / Z95) ** 2


def _stage(name: str, rows: list[StoredRow], view: LevelView) -> Stage:
    if not rows:
        return Stage(name, False, 0, [], None, False)
    noisy = view.total(rows)
    windows = {(r.window_start, r.window_end) for r in rows}
    agents = sorted({r.agent for r in rows})
    upper = rows[0].stat == "distinct_units" and (len(windows) > 1 or len(agents) > 1)
    return Stage(name, True, len(windows), agents, estimate(noisy), upper)


def _ttv(metric: str, view: LevelView, notes: list[str]) -> TimeToValue:
    buckets: dict[tuple[float, float], list[StoredRow]] = defaultdict(list)
    names: dict[tuple[float, float], str] = {}
    bad = 0
    per_window: list[WindowQuantile] = []
    for r in view.rows:
        if r.metric != metric:
            continue
        if r.stat == "histogram":
            edges = parse_bucket(r.dims.get("bucket", ""))
            if edges is None:
                bad += 1
                continue
            buckets[edges].append(r)
            names.setdefault(edges, r.dims["bucket"])
        elif (q := parse_quantile_stat(r.stat)) is not None:
            per_window.append(
                WindowQuantile(
                    q,
                    r.stat,
                    r.window_start,
                    r.window_end,
                    r.agent,
                    estimate(row_noise(r.value, r.mechanism, r.scale)),
                )
            )
    if bad:
        notes.append(f"time to value: ignored {bad} histogram row(s) without a bucket like '0..10'")
    edges_sorted = sorted(buckets)
    overlapping = any(a[1] > b[0] for a, b in itertools.pairwise(edges_sorted))
    pooled: list[HistogramQuantile] = []
    hist_total: Estimate | None = None
    bucket_totals = [
        BucketTotal(
            names[e],
            None if math.isinf(e[0]) else e[0],
            None if math.isinf(e[1]) else e[1],
            estimate(view.total(buckets[e])),
        )
        for e in edges_sorted
    ]
    if buckets and overlapping:
        notes.append("time to value: histogram buckets overlap; no pooled quantiles")
    elif buckets:
        summed = [(lo, hi, view.total(parts)) for (lo, hi), parts in buckets.items()]
        pooled = [histogram_quantile(summed, q) for q in TTV_QUANTILES]
        hist_total = estimate(view.total([r for parts in buckets.values() for r in parts]))
    if not buckets and not per_window:
        notes.append(f"time to value: no histogram or quantile rows for metric {metric!r}")
    per_window.sort(key=lambda w: (w.window_start, w.agent, w.q))
    return TimeToValue(metric, bucket_totals, pooled, hist_total, per_window)


def funnel_report(
    rows: Sequence[StoredRow],
    *,
    tenant: str,
    stages: Sequence[str],
    ttv_metric: str | None = None,
    stat: str = "count",
) -> FunnelReport:
    """Build the funnel of ``tenant`` through ``stages``; see the module docstring."""
    notes: list[str] = []
    own = [r for r in rows if r.tenant == tenant]
    if len(own) != len(rows):
        notes.append(f"ignored {len(rows) - len(own)} row(s) of other tenants")
    kept = [r for r in own if usable(r)]
    if len(kept) != len(own):
        notes.append(f"skipped {len(own) - len(kept)} row(s) with a non-finite value or scale")
    # Period totals and their windows as consistent estimates (collector.report.levels); rows of
    # agents without totals pass through as released.
    view = level_view(kept)
    by_metric: dict[str, list[StoredRow]] = defaultdict(list)
    for r in view.rows:
        if r.stat == stat:
            by_metric[r.metric].append(r)
    stage_list = [_stage(name, by_metric.get(name, []), view) for name in stages]
    for s in stage_list:
        if not s.present:
            notes.append(f"stage {s.name!r} has no {stat!r} rows in the range")
    if any(s.upper_bound for s in stage_list):
        notes.append(
            "distinct_units summed over windows or agents is an upper bound on distinct units; "
            "conversions between such totals are approximate"
        )
    sums = {s.name: view.total(by_metric[s.name]) for s in stage_list if s.present}
    steps: list[Step] = []
    for a, b in itertools.pairwise(stage_list):
        if not (a.present and b.present):
            steps.append(Step(a.name, b.name, None, None, False))
            continue
        sa, sb = sums[a.name], sums[b.name]
        inverted = sb.value > sa.value
        if inverted:
            notes.append(
                f"stage {b.name!r} exceeds the earlier stage {a.name!r}: DP noise, or events that "
                "do not form a strict funnel; conversion above 1 is reported as estimated"
            )
        steps.append(Step(a.name, b.name, ratio(sb, sa), estimate(sa.plus(sb, sign=-1.0)), inverted))
    overall: Ratio | None = None
    if len(stage_list) >= 2 and stage_list[0].present and stage_list[-1].present:
        overall = ratio(sums[stage_list[-1].name], sums[stage_list[0].name])
    if any(s.conversion is not None and s.conversion.value is None for s in steps):
        notes.append("a stage estimate is not positive: conversion from it is undefined")
    ttv = _ttv(ttv_metric, view, notes) if ttv_metric else None
    return FunnelReport(
        tenant=tenant,
        stat=stat,
        confidence=CONFIDENCE,
        stages=stage_list,
        steps=steps,
        overall=overall,
        ttv=ttv,
        notes=notes,
    )
