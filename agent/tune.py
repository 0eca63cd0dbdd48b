"""Guided tuning: before a policy goes live, what error each metric will have, and what budget a
target error needs. Pure: it reads the policy and asks the release planner, never touches data.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from agent.policy import Policy, per_window_budget, windows_per_period
from agent.release import ExpectedError, expected_error
from hushmetric.errors import ConfigError

__all__ = ["BudgetSuggestion", "suggest_budget", "threshold_basis", "threshold_notes"]

# A budget search over twelve orders of magnitude; 60 halvings of the log-interval is far below
# any precision that matters for a budget.
_SPAN = 1e6
_STEPS = 60


class BudgetSuggestion(msgspec.Struct, frozen=True):
    target: float  # wanted 95 % half-width per released entry, in the metrics' own units
    metrics: list[str]  # the metrics the target applies to
    measure: str  # "rho" or "epsilon"
    current_per_window: float
    needed_per_window: float
    needed_per_period: float  # the cap per period that gives every window `needed_per_window`
    period: str
    missing_now: list[str]  # metrics whose error exceeds the target at the current budget


def threshold_basis(stat: str) -> str:
    """What the threshold of a metric with an open dimension is compared with, per statistic.

    Mirrors ``agent.release._partitions``: ``count`` and ``distinct_units`` are released by the
    threshold mechanism itself, so a value appears when the noisy count it releases clears the
    threshold — for ``count`` that is the bounded number of contributions (up to ``max_contributions``
    per unit), not of units. Every other statistic first selects values on a noisy distinct-unit count
    (each unit adds one), then releases the statistic over the selected values with its own noise.
    """
    if stat == "count":
        return "noisy count of contributions (events after bounding, up to max_contributions per unit)"
    if stat == "distinct_units":
        return "noisy count of distinct units (the released value itself)"
    return f"noisy count of distinct units, used only to select values; the {stat} is noised separately"


def threshold_notes(rows: Sequence[ExpectedError]) -> list[str]:
    """``tune``'s explanation of each threshold shown, one line per statistic that has one."""
    stats = sorted({r.stat for r in rows if r.threshold is not None})
    if not stats:
        return []
    lines = ["threshold: a value of an open dimension appears in a window only if its"]
    lines += [f"  {stat}: {threshold_basis(stat)}" for stat in stats]
    lines.append("  reaches the threshold (a value only one unit used appears with chance <= budget.delta)")
    return lines


def _worst(policy: Policy, budget: float, names: Sequence[str]) -> float:
    return max(e.half_width_95 for e in expected_error(policy, budget=budget) if e.metric in names)


def suggest_budget(policy: Policy, target: float, metrics: Sequence[str] = ()) -> BudgetSuggestion:
    """The smallest window budget at which every named metric (default: all) has a 95 % half-width
    of at most ``target``. Budget is split across metrics by weight, as in a real release."""
    if not target > 0:
        raise ConfigError("--target must be a positive error, e.g. 5 (counts) or 50 (ms)")
    known = [m.name for m in policy.metrics]
    names = list(metrics) or known
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"no metric named {', '.join(unknown)} in the policy", key="--metric")
    current = per_window_budget(policy)
    now: list[ExpectedError] = [e for e in expected_error(policy) if e.metric in names]
    missing = sorted({e.metric for e in now if e.half_width_95 > target})
    low, high = current / _SPAN, current * _SPAN
    if _worst(policy, high, names) > target:
        needed = float("inf")
    else:
        for _ in range(_STEPS):  # bisect on the log scale: error falls monotonically with budget
            mid = (low * high) ** 0.5
            if _worst(policy, mid, names) <= target:
                high = mid
            else:
                low = mid
        needed = high
    windows = windows_per_period(policy)  # as per_window_budget divides the cap
    return BudgetSuggestion(
        target=target,
        metrics=names,
        measure="rho" if policy.budget.mechanism == "zcdp" else "epsilon",
        current_per_window=current,
        needed_per_window=needed,
        needed_per_period=needed * windows,
        period=policy.budget.period,
        missing_now=missing,
    )
