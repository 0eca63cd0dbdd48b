"""(ε, δ) figures for a zCDP budget, by OpenDP's own conversion — never a hand formula.

A ρ-zCDP guarantee implies (ε, δ)-DP for every δ > 0; OpenDP's ``make_zCDP_to_approxDP`` returns
that whole privacy profile, and we read ε off it at the δ we state. The figure printed by
``validate``, ``tune`` and ``ledger`` and the ones published in docs/privacy.md and the policy
templates all come from :func:`epsilon_at` (a test keeps the published ones in step).

δ has two sources under a zCDP policy, and they add up (composition of approximate zCDP):

- the **conversion** δ at which the period's total ρ is read as ε (we use the policy's ``delta``);
- the **partition selection** δ of open dimensions: each window's threshold mechanisms spend up to
  the policy's ``delta`` per window, so a period of ``n`` windows adds up to ``n × delta`` — never
  more than ``budget.max_delta``, which the policy check and the ledger enforce.

Under ``mechanism = "pure"`` ε is the budget itself and only partition selection adds a δ.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import msgspec
import opendp.prelude as dp

from agent.policy import Policy, per_window_budget, windows_per_period
from agent.release import window_cost

__all__ = ["Guarantee", "epsilon_at", "guarantee"]

dp.enable_features("contrib")  # make_zCDP_to_approxDP is in "contrib"


@functools.lru_cache(maxsize=256)
def epsilon_at(rho: float, delta: float) -> float:
    """The ε of the (ε, δ)-DP guarantee that ρ-zCDP implies at ``delta``, by OpenDP's conversion."""
    if not rho >= 0 or not 0 < delta < 1:
        raise ValueError(f"need rho >= 0 and 0 < delta < 1, got rho={rho}, delta={delta}")
    if rho == 0:
        return 0.0
    # Any measurement whose privacy map is ρ at d_in = 1 carries the profile; the discrete Gaussian
    # at σ = 1/√(2ρ) is one. OpenDP rounds σ's map in floating point, so step σ down until the map
    # reports at least ρ: the ε printed must never belong to a smaller ρ than the one charged.
    scale = 1.0 / math.sqrt(2.0 * rho)
    meas: Any = None  # opendp.mod.Measurement (OpenDP ships no type information)
    for _ in range(64):
        meas = dp.m.make_gaussian(dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"), scale=scale)
        if float(meas.map(1)) >= rho:
            break
        scale = math.nextafter(scale, 0.0)
    approx: Any = dp.c.make_zCDP_to_approxDP(meas)
    try:
        return float(approx.map(1).epsilon(delta))
    except dp.OpenDPException as exc:
        # Only a ρ far beyond any meaningful guarantee overflows the conversion (ε > ~1000, e.g. the
        # proof suites' exact-count policies): no finite ε is worth printing.
        if exc.variant == "Overflow":
            return math.inf
        raise


class Guarantee(msgspec.Struct, frozen=True):
    """What one full budget period of a policy amounts to in (ε, δ)-DP terms.

    ``epsilon`` holds at ``delta_total`` = ``delta_conversion`` (reading ρ as ε; 0 under pure DP)
    + ``delta_selection`` (partition selection of open dimensions, over all windows of the period).
    """

    measure: str  # "rho" or "epsilon": what the budget counts
    period: str
    cap: float  # ρ or ε per period
    per_window: float
    windows: int  # windows per period
    epsilon: float
    delta_conversion: float
    delta_selection_per_window: float
    delta_selection: float
    delta_total: float


def guarantee(
    policy: Policy, *, spent: float | None = None, selection_delta: float | None = None
) -> Guarantee:
    """(ε, δ) of a full period under ``policy`` — or of what was ``spent`` (with ``selection_delta``
    charged) when given, as ``hush-agent ledger`` shows per period."""
    b = policy.budget
    zcdp = b.mechanism == "zcdp"
    cap = b.rho if zcdp else b.epsilon
    assert cap is not None  # enforced by the policy check
    windows = windows_per_period(policy, chargeable=True)  # the ledger refuses any further window
    per_window = per_window_budget(policy)
    per_window_delta = window_cost(policy)[1]  # what the ledger charges a window (≤ budget.delta)
    amount = cap if spent is None else spent
    sel = min(per_window_delta * windows, b.max_delta) if selection_delta is None else selection_delta
    conv = b.delta if zcdp else 0.0
    eps = epsilon_at(amount, b.delta) if zcdp else amount
    return Guarantee(
        measure="rho" if zcdp else "epsilon",
        period=b.period,
        cap=cap,
        per_window=per_window,
        windows=windows,
        epsilon=eps,
        delta_conversion=conv,
        delta_selection_per_window=per_window_delta,
        delta_selection=sel,
        delta_total=conv + sel,
    )
