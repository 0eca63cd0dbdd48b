"""What per-period bounds and period totals buy, per metric, before a policy goes live (``tune``).

Pure: it re-plans the policy with each metric's bound switched (the release planner computes the
noise), never touches data. For every metric that can take period bounds it compares the noise of
a window value and of a period total under

* ``window`` bounds: k windows of ρ_m/k each; a period total is the sum of k windows (√k × σ_w);
* ``period`` bounds: the whole period vector for ρ_m, each window with the noise of one release;
* ``period`` bounds with a period total (``levels``): windows and total combined by weighted least
  squares, as the collector does (collector/estimates.py has the derivation):
  Var T̂ = 1/(1/(k·v) + 1/u), Var t̂ = v − v²/(k·v + u).

A period bound also has a cost the noise does not show: a unit active in many windows of a period
reaches its caps sooner, and what it contributes past them is dropped (``contributions_dropped`` in
the run report and ``status``). Choose ``max_contributions`` for the period.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import msgspec

from agent.aggregate import WindowAggregator
from agent.model import Event
from agent.policy import Metric, Policy, period_seconds
from agent.release import Z95, expected_error

__all__ = ["DEFAULT_TOTAL_SHARE", "Clipping", "LevelComparison", "clipping", "compare_levels"]

DEFAULT_TOTAL_SHARE = 0.3  # windows within 1.2× and totals within 1.5× of one release at k = 4
_PERIOD_STATS = ("count", "sum", "histogram")  # a period total exists for these (not derived ones)


class LevelComparison(msgspec.Struct, frozen=True):
    """95 % half-widths of one released entry (a window value) and of a period total, per setting."""

    metric: str
    stat: str
    bound: str  # what the policy uses now: "window" or "period"
    windows: int  # k, windows per period
    window_bound_window: float
    window_bound_total: float
    period_bound_window: float
    period_bound_total: float
    levels_window: float | None  # None: no period total for this statistic
    levels_total: float | None
    total_share: float | None  # the split the levels columns assume


def _with(policy: Policy, name: str, bound: str, total: float) -> Policy:
    metrics = [
        msgspec.structs.replace(m, bound=bound, period_total=total) if m.name == name else m
        for m in policy.metrics
    ]
    return msgspec.structs.replace(policy, metrics=metrics)


def _std(policy: Policy, name: str) -> tuple[float, float | None]:
    (e,) = [e for e in expected_error(policy) if e.metric == name]
    return e.std, e.total_std


def compare_levels(policy: Policy) -> list[LevelComparison]:
    """Per metric that can take period bounds (declared dimensions; not distinct_units)."""
    k = max(1, period_seconds(policy) // policy.window_seconds)
    out = []
    for m in policy.metrics:
        if m.stat == "distinct_units" or "open" in m.dims.values():
            continue
        win, _ = _std(_with(policy, m.name, "window", 0.0), m.name)
        per, _ = _std(_with(policy, m.name, "period", 0.0), m.name)
        levels_window = levels_total = share = None
        if m.stat in _PERIOD_STATS:
            share = m.period_total or DEFAULT_TOTAL_SHARE
            w, t = _std(_with(policy, m.name, "period", share), m.name)
            assert t is not None
            v, u = w * w, t * t
            levels_window = Z95 * math.sqrt(v - v * v / (k * v + u))
            levels_total = Z95 * math.sqrt(1.0 / (1.0 / (k * v) + 1.0 / u))
        root_k = math.sqrt(k)
        out.append(
            LevelComparison(
                m.name,
                m.stat,
                m.bound,
                k,
                Z95 * win,
                Z95 * win * root_k,
                Z95 * per,
                Z95 * per * root_k,
                levels_window,
                levels_total,
                share,
            )
        )
    return out


class Clipping(msgspec.Struct, frozen=True):
    """What a metric's caps drop from a sample of events, under window or period bounds: the bias
    side of the choice (dropped contributions are missing from the released values)."""

    metric: str
    bound: str  # "window" or "period"
    contributions: int  # the metric takes from the sample without caps
    dropped: int  # of them, dropped by the caps
    units: int  # units contributing
    units_clipped: int  # units with at least one contribution dropped


_UNCAPPED = 1_000_000  # the policy's largest cap: in effect none


def _admitted(policy: Policy, metric: Metric, events: Sequence[Event], **caps: object) -> Counter[str]:
    """Contributions admitted per unit for ``metric`` alone, with its fields overridden by ``caps``."""
    alone = msgspec.structs.replace(policy, metrics=[msgspec.structs.replace(metric, **caps)])
    agg = WindowAggregator(alone)
    agg.add(events)
    per_unit: Counter[str] = Counter()
    for state in agg.flush():
        for (unit, _key), n in state.metrics[0].contributions.items():
            per_unit[unit] += n
    return per_unit


def clipping(policy: Policy, events: Sequence[Event]) -> list[Clipping]:
    """Per metric that can take period bounds: what its caps drop from ``events`` (already
    redacted, in arrival order) per window and per period. Local figures: nothing here leaves."""
    out = []
    for m in policy.metrics:
        if m.stat == "distinct_units" or "open" in m.dims.values():
            continue
        offered = _admitted(
            policy, m, events, bound="window", period_total=0.0,
            max_partitions=_UNCAPPED, max_contributions=_UNCAPPED,
        )  # fmt: skip
        for bound in ("window", "period"):
            kept = _admitted(policy, m, events, bound=bound, period_total=0.0)
            out.append(
                Clipping(
                    m.name,
                    bound,
                    sum(offered.values()),
                    sum(offered.values()) - sum(kept.values()),
                    len(offered),
                    sum(1 for unit, n in offered.items() if kept[unit] < n),
                )
            )
    return out
