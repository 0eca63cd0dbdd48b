"""Differentially private release of one window with OpenDP: one vectorised measurement per metric.

The window's budget (ρ under zCDP, ε under pure DP) is split across metrics by ``weight``. Each metric's
integer vector (counts, fixed-point sums, bucket counts, distinct units) is noised by one OpenDP
measurement built on ``vector_domain(atom_domain(T="i64"))`` — the discrete Gaussian with an L2
metric (zCDP) or the discrete Laplace with an L1 metric (pure) — whose privacy map is checked against
the metric's share before it is invoked. Sensitivities come from :class:`agent.bound.Bounds` only.

Declared dimensions are released in full, zeros included. A metric with an open dimension first
selects partitions with OpenDP's threshold mechanism (``make_gaussian_threshold`` →
Approximate(zCDP), ``make_laplace_threshold`` → Approximate(pure)) at δ = the policy's δ split by
weight: count and distinct_units are released by the threshold mechanism itself (one call); the other
statistics spend half the share on selecting on distinct-unit counts and half on the vector release
over the selected partitions (two calls).

Means and quantiles are post-processing of the released integers (mechanism ``derived``; their scale
is an approximate standard deviation). What a window costs depends on the policy alone, never on the
data, so the ledger can decide before any noise is drawn (:func:`window_cost`).

A metric with per-period bounds (``bound = "period"``) gets, once per period, the share of the
period's budget a full period of windows would give it (:func:`period_cost`), and its measurement's
privacy map is checked at the sensitivity of the whole period vector — which the period's caps make
that of one window. Each window then reuses the measurement, and an optional period total
(:func:`release_period_total`, rows with ``level = "period"``) has its own share of it.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import msgspec

from agent.aggregate import MetricWindow, WindowState, bucket_labels
from agent.bound import Bounds, Sensitivity
from agent.policy import Metric, Policy, per_window_budget, period_budget, policy_digest
from hushmetric.batch import Noise, Row

__all__ = [
    "ExpectedError",
    "Release",
    "expected_error",
    "period_cost",
    "release_period_total",
    "release_window",
    "window_cost",
]

Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


class _OpenDP(NamedTuple):
    dp: Any  # the opendp.prelude module (OpenDP ships no type information)
    vector: Any  # vector_domain(atom_domain(T="i64"))
    counts: Any  # map_domain(atom_domain(T=str), atom_domain(T="i64"))


@functools.cache
def _opendp() -> _OpenDP:
    """OpenDP, imported on the first measurement built: its native library is ~30 MiB resident, which
    an idle daemon, ``status`` or ``ledger`` never needs (issue 12: idle RSS). Importing this module
    stays cheap; the ledger and the integrity check only need :class:`Release`."""
    import opendp.prelude as dp

    dp.enable_features("contrib")  # OpenDP's measurements used here are all in "contrib"
    return _OpenDP(
        dp,
        dp.vector_domain(dp.atom_domain(T="i64")),
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T="i64")),
    )


class Release(msgspec.Struct, frozen=True):
    """One window's released rows and the privacy they spent (ρ under zCDP, ε under pure DP)."""

    start: int
    end: int
    rows: list[Row]
    rho: float | None
    epsilon: float | None
    delta: float | None


class ExpectedError(msgspec.Struct, frozen=True):
    """Noise a metric gets at the policy's budget, per released entry, in the metric's value units.

    ``basis`` names the noised quantity (``count``, ``sum``, ``bucket count``, ``distinct units``);
    for a mean the error of ``sum`` and ``count`` divides by the true count. ``threshold`` is what a
    partition of an open dimension needs to be released: its noisy contribution count for ``count``,
    its noisy distinct-unit count otherwise (see :func:`_partitions`).
    """

    metric: str
    stat: str
    mechanism: str
    basis: str
    scale: float  # σ (gaussian) or b (laplace)
    std: float  # standard deviation of the noise
    half_width_95: float  # 95 % of released values fall within ± this of the truth
    count_std: float | None  # mean only: std of the noisy count
    threshold: float | None
    bound: str = "window"  # what the contribution caps count over: "window" or "period"
    total_std: float | None = None  # period total (its own release), when the policy asks for one


class _Noiser(NamedTuple):
    measurement: Any  # opendp.mod.Measurement (OpenDP ships no type information)
    scale: float  # in integer units
    d_in: Any
    spend: float  # ρ or ε the privacy map reports for d_in
    delta: float


class _MetricPlan(NamedTuple):
    metric: Metric
    bounds: Bounds
    mechanism: Literal["gaussian", "laplace"]
    vector: _Noiser | None  # stat over a fixed list of partitions
    threshold: _Noiser | None  # open dimensions: partition selection (and counts, for count/distinct)
    threshold_value: int
    total: _Noiser | None = None  # period bounds with a period total: that release's measurement

    @property
    def spend(self) -> float:
        """Per window for window bounds; once per period for period bounds (the total included)."""
        return sum(n.spend for n in (self.vector, self.threshold, self.total) if n is not None)

    @property
    def per_period(self) -> bool:
        return self.metric.bound == "period"

    @property
    def delta(self) -> float:
        return self.threshold.delta if self.threshold is not None else 0.0


class _WindowPlan(NamedTuple):
    zcdp: bool
    metrics: list[_MetricPlan]
    spend: float  # every window: the metrics bounded per window
    delta: float
    period_spend: float  # once per period: the metrics bounded per period, their totals included


def _fits(meas: Any, d_in: Any, share: float) -> tuple[bool, float, float]:
    out = meas.map(d_in)
    spend, delta = out if isinstance(out, tuple) else (out, 0.0)
    return spend <= share, float(spend), float(delta)


def _vector_noiser(zcdp: bool, sens: Sensitivity, share: float) -> _Noiser:
    """The cheapest vector measurement whose privacy map at the sensitivity fits ``share``."""
    d_in = sens.l2 if zcdp else sens.l1
    scale = d_in / math.sqrt(2.0 * share) if zcdp else d_in / share
    dp, vector, _ = _opendp()
    make = dp.m.make_gaussian if zcdp else dp.m.make_laplace
    metric = dp.l2_distance(T="f64") if zcdp else dp.l1_distance(T="f64")
    for _ in range(64):  # OpenDP rounds its maps conservatively; nudge the scale up by ulps
        meas = make(vector, metric, scale=scale)
        ok, spend, _ = _fits(meas, float(d_in), share)
        if ok:
            return _Noiser(meas, scale, float(d_in), spend, 0.0)
        scale = math.nextafter(scale * (1 + 1e-12), math.inf)
    raise RuntimeError(f"no noise scale fits share {share}")  # pragma: no cover - OpenDP contract


def _threshold_noiser(zcdp: bool, sens: Sensitivity, share: float, delta: float) -> tuple[_Noiser, int]:
    """Threshold measurement with the budget's scale and the smallest threshold meeting ``delta``."""
    base = _vector_noiser(zcdp, Sensitivity(1, sens.l1, sens.l2, sens.linf), share).scale
    dp, _, counts = _opendp()
    metric = (dp.l02inf_distance if zcdp else dp.l01inf_distance)(dp.absolute_distance(T="f64"))
    make = dp.m.make_gaussian_threshold if zcdp else dp.m.make_laplace_threshold
    d_in = (sens.l0, float(sens.l2 if zcdp else sens.l1), float(sens.linf))
    scale = base

    def fits(threshold: int) -> tuple[bool, Any, float, float]:
        meas: Any = make(counts, metric, scale=scale, threshold=threshold)
        out = meas.map(d_in)
        return out[0] <= share and out[1] <= delta, meas, float(out[0]), float(out[1])

    for _ in range(64):
        if fits(1 << 62)[0]:
            break
        scale = math.nextafter(scale * (1 + 1e-12), math.inf)
    lo = math.ceil(sens.linf) - 1  # OpenDP refuses thresholds below the l-infinity sensitivity
    hi = lo + 1
    while not fits(hi)[0]:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # smallest threshold that fits
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid)[0] else (mid, hi)
    _, meas, spend, used = fits(hi)
    return _Noiser(meas, scale, d_in, spend, used), hi


def _metric_plan(metric: Metric, zcdp: bool, share: float, delta: float) -> _MetricPlan:
    bounds = Bounds.of(metric)
    mechanism: Literal["gaussian", "laplace"] = "gaussian" if zcdp else "laplace"
    sens = bounds.sensitivity(metric.stat)
    if not any(spec == "open" for spec in metric.dims.values()):
        return _MetricPlan(metric, bounds, mechanism, _vector_noiser(zcdp, sens, share), None, 0)
    if metric.stat in ("count", "distinct_units"):
        threshold, t = _threshold_noiser(zcdp, sens, share, delta)
        return _MetricPlan(metric, bounds, mechanism, None, threshold, t)
    threshold, t = _threshold_noiser(zcdp, bounds.selection(), share / 2, delta)
    vector = _vector_noiser(zcdp, sens, share / 2)
    return _MetricPlan(metric, bounds, mechanism, vector, threshold, t)


_plans: dict[tuple[str, float | None], _WindowPlan] = {}
_plans_lock = threading.Lock()


def _plan(policy: Policy, budget: float | None) -> _WindowPlan:
    """Measurements for a policy, built once (construction and threshold search are not free)."""
    key = (policy_digest(policy), budget)
    with _plans_lock:
        cached = _plans.get(key)
    if cached is not None:
        return cached
    zcdp = policy.budget.mechanism == "zcdp"
    total = per_window_budget(policy) if budget is None else budget
    # A period-bounded metric gets, once per period, the share a full period of windows would give it.
    whole = period_budget(policy, per_window=budget)
    weights = sum(m.weight for m in policy.metrics)
    open_weights = sum(m.weight for m in policy.metrics if "open" in m.dims.values())
    metrics = []
    for m in policy.metrics:
        delta = policy.budget.delta * m.weight / open_weights if open_weights else policy.budget.delta
        if m.bound == "window":
            metrics.append(_metric_plan(m, zcdp, total * m.weight / weights, delta))
            continue
        # Period bounds: the privacy map of each measurement is checked at the sensitivity of the
        # whole period vector (the same formula as one window's: the caps hold over the period), so
        # its spend is what the period costs, whatever the number of windows.
        share = whole * m.weight / weights
        mplan = _metric_plan(m, zcdp, share * (1.0 - m.period_total), delta)
        if m.period_total:
            sens = mplan.bounds.sensitivity(m.stat)
            mplan = mplan._replace(total=_vector_noiser(zcdp, sens, share * m.period_total))
        metrics.append(mplan)
    plan = _WindowPlan(
        zcdp,
        metrics,
        math.fsum(p.spend for p in metrics if not p.per_period),
        math.fsum(p.delta for p in metrics),
        math.fsum(p.spend for p in metrics if p.per_period),
    )
    with _plans_lock:
        if len(_plans) >= 64:
            _plans.clear()
        _plans[key] = plan
    return plan


def window_cost(policy: Policy, *, budget: float | None = None) -> tuple[float, float]:
    """(ρ or ε, δ) that releasing any window under ``policy`` spends for its window-bounded metrics;
    depends on the policy alone."""
    plan = _plan(policy, budget)
    return plan.spend, plan.delta


def period_cost(policy: Policy, *, budget: float | None = None) -> float:
    """ρ (ε) the period-bounded metrics spend once per period, period totals included: charged with
    the first window of a period that is released. Depends on the policy alone."""
    return _plan(policy, budget).period_spend


def _key_text(key: tuple[str, ...]) -> str:
    return msgspec.json.encode(key).decode()


def _key_of(text: str) -> tuple[str, ...]:
    return tuple(msgspec.json.decode(text, type=list[str]))


def _partitions(plan: _MetricPlan, mw: MetricWindow) -> tuple[list[tuple[str, ...]], dict[str, int] | None]:
    """The partitions to release: all declared combinations, or those the threshold selects."""
    if plan.threshold is None:
        specs = [spec for spec in plan.metric.dims.values() if spec != "open"]
        return [tuple(combo) for combo in itertools.product(*specs)], None
    # Select on distinct units (sensitivity 1 per partition) unless the threshold releases the counts.
    slot = 1 if plan.vector is None and plan.metric.stat == "count" else 0
    counts = {_key_text(k): acc[slot] for k, acc in mw.parts.items()}
    selected: dict[str, int] = plan.threshold.measurement(counts)
    return sorted(_key_of(k) for k in selected), selected


def _dims(metric: Metric, key: tuple[str, ...], **extra: str) -> dict[str, str]:
    return {**dict(zip(metric.dims, key, strict=True)), **extra}


def _rows(plan: _MetricPlan, mw: MetricWindow, level: str = "window") -> list[Row]:
    metric, bounds = plan.metric, plan.bounds
    keys, selected = _partitions(plan, mw)
    if plan.vector is None:  # count / distinct_units over an open dimension: the threshold released them
        assert plan.threshold is not None and selected is not None
        noise = Noise(plan.mechanism, plan.threshold.scale)
        return [
            Row(metric.name, metric.stat, _dims(metric, k), float(selected[_key_text(k)]), noise, level)
            for k in keys
        ]
    stat = metric.stat
    width = {"count": 1, "sum": 1, "distinct_units": 1, "mean": 2}.get(stat, len(metric.buckets) - 1)
    zeros = [0] * (width + 1)
    accs = [mw.parts.get(k, zeros) for k in keys]
    if stat == "mean":
        w = bounds.mean_count_weight
        data = [a[1] for a in accs] + [a[2] * w for a in accs]
    elif stat == "distinct_units":
        data = [a[0] for a in accs]
    else:  # count, sum: accs[1]; histogram, quantiles: accs[1:]
        data = [x for a in accs for x in a[1:]]
    if not data:
        return []
    noisy: list[int] = plan.vector.measurement(data)
    sigma = plan.vector.scale
    noise = Noise(plan.mechanism, sigma)
    std = sigma if plan.mechanism == "gaussian" else sigma * math.sqrt(2.0)
    q = bounds.quantum
    rows: list[Row] = []
    if stat in ("count", "distinct_units"):
        rows = [
            Row(metric.name, stat, _dims(metric, k), float(v), noise, level)
            for k, v in zip(keys, noisy, strict=True)
        ]
    elif stat == "sum":
        scaled = Noise(plan.mechanism, sigma * q)
        rows = [
            Row(metric.name, stat, _dims(metric, k), v * q, scaled, level)
            for k, v in zip(keys, noisy, strict=True)
        ]
    elif stat == "mean":
        n = len(keys)
        w = bounds.mean_count_weight
        for i, k in enumerate(keys):
            mean, sd = _mean(noisy[i] * q, noisy[n + i] / w, std * q, std / w, bounds)
            rows.append(Row(metric.name, stat, _dims(metric, k), mean, Noise("derived", sd), level))
    else:
        labels = bucket_labels(metric.buckets)
        b = len(labels)
        for i, k in enumerate(keys):
            counts = noisy[i * b : (i + 1) * b]
            if stat == "histogram":
                rows.extend(
                    Row(metric.name, stat, _dims(metric, k, bucket=lab), float(c), noise, level)
                    for lab, c in zip(labels, counts, strict=True)
                )
            else:
                for qq in metric.quantiles:
                    value, sd = _quantile(counts, metric.buckets, qq, std)
                    rows.append(
                        Row(metric.name, f"p{qq * 100:g}", _dims(metric, k), value, Noise("derived", sd))
                    )
    return rows


def _mean(
    total: float, count: float, sum_std: float, count_std: float, bounds: Bounds
) -> tuple[float, float]:
    """Noisy sum / noisy count, kept within the bounds; std by the delta method, at most the range."""
    span = bounds.upper - bounds.lower
    n = max(count, 1.0)
    mean = min(max(total / n, bounds.lower), bounds.upper)
    sd = math.sqrt(sum_std**2 + (mean * count_std) ** 2) / n
    return mean, min(sd, span)


def _quantile(counts: Sequence[int], edges: Sequence[float], q: float, std: float) -> tuple[float, float]:
    """Quantile of a noisy histogram, linear within its bucket; approximate std of the estimate."""
    clipped = [max(c, 0) for c in counts]
    total = sum(clipped)
    span = edges[-1] - edges[0]
    if total <= 0:
        return (edges[0] + edges[-1]) / 2, span / math.sqrt(12.0)
    target = q * total
    cum = 0.0
    for i, c in enumerate(clipped):
        if c > 0 and cum + c >= target:
            lo, hi = edges[i], edges[i + 1]
            value = lo + (hi - lo) * (target - cum) / c
            # error of the cumulative count (i+1 noisy buckets) over the bucket's density, plus
            # the within-bucket interpolation error
            sd = math.sqrt(((std * math.sqrt(i + 1)) * (hi - lo) / c) ** 2 + (hi - lo) ** 2 / 12.0)
            return value, min(sd, span)
        cum += c
    return edges[-1], span / math.sqrt(12.0)  # pragma: no cover - float rounding at the top


def release_window(
    state: WindowState, policy: Policy, *, budget: float | None = None, period_charge: bool = False
) -> Release:
    """Noise and release one closed window. ``budget`` overrides the window's total ρ (or ε).

    The spend reported is what the measurements' privacy maps say for the policy's bounds — the same
    for every window of the policy, whatever its data (see :func:`window_cost`). With
    ``period_charge`` (the first window of its period released) it includes what the period-bounded
    metrics cost for the whole period (:func:`period_cost`); every other window of the period then
    reuses their measurements at no further charge: together they are one Gaussian (Laplace)
    mechanism on the period's vector, whose sensitivity the period bounds cap.
    """
    plan = _plan(policy, budget)
    rows: list[Row] = []
    for mplan, mw in zip(plan.metrics, state.metrics, strict=True):
        rows.extend(_rows(mplan, mw))
    delta = plan.delta if plan.delta > 0 else None
    spend = plan.spend + (plan.period_spend if period_charge else 0.0)
    return Release(
        start=state.start,
        end=state.end,
        rows=rows,
        rho=spend if plan.zcdp else None,
        epsilon=None if plan.zcdp else spend,
        delta=delta,
    )


def release_period_total(
    totals: Sequence[MetricWindow | None],
    policy: Policy,
    *,
    start: int,
    end: int,
    budget: float | None = None,
) -> Release:
    """Noise and release the period totals (rows with ``level = "period"``) of the metrics that ask
    for one, from ``totals`` (per metric in policy order: the sum of the accumulators of the period's
    released windows; None for metrics without a total). Spends nothing here: the period's first
    window already paid for it (:func:`period_cost`). ``budget`` as for :func:`release_window`."""
    plan = _plan(policy, budget)
    rows: list[Row] = []
    for mplan, mw in zip(plan.metrics, totals, strict=True):
        if mplan.total is not None:
            rows.extend(_rows(mplan._replace(vector=mplan.total), mw or MetricWindow(mplan.bounds), "period"))
    return Release(
        start=start,
        end=end,
        rows=rows,
        rho=0.0 if plan.zcdp else None,
        epsilon=None if plan.zcdp else 0.0,
        delta=None,
    )


_BASIS = {"count": "count", "sum": "sum", "mean": "sum", "distinct_units": "distinct units"}


def expected_error(policy: Policy, *, budget: float | None = None) -> list[ExpectedError]:
    """Per metric: the noise each released entry gets at the policy's window budget. Pure and cheap."""
    out: list[ExpectedError] = []
    for p in _plan(policy, budget).metrics:
        m, q = p.metric, p.bounds.quantum
        noiser = p.vector if p.vector is not None else p.threshold
        assert noiser is not None
        laplace = p.mechanism == "laplace"
        per = math.sqrt(2.0) if laplace else 1.0
        half = math.log(20.0) if laplace else Z95  # P(|X| > b·ln 20) = 5 % for Laplace(b)
        scale, basis, count_std = noiser.scale, _BASIS.get(m.stat, "bucket count"), None
        if m.stat in ("sum", "mean"):
            scale *= q
        if m.stat == "mean":
            count_std = noiser.scale * per / p.bounds.mean_count_weight
        threshold = float(p.threshold_value) if p.threshold is not None else None
        total_std = None
        if p.total is not None:
            total_std = p.total.scale * per * (q if m.stat == "sum" else 1.0)
        out.append(
            ExpectedError(
                m.name,
                m.stat,
                p.mechanism,
                basis,
                scale,
                scale * per,
                scale * half,
                count_std,
                threshold,
                m.bound,
                total_std,
            )
        )
    return out
