"""Contribution bounding per privacy unit, and the sensitivities those bounds imply.

One privacy unit may, per metric and per window, touch at most ``max_partitions`` partitions (a
partition is one combination of dimension values) and contribute at most ``max_contributions``
times to each; values are clamped to ``[lower, upper]``. :class:`Bounds` is the single source of both
the caps the aggregator enforces and the sensitivities the release derives its noise from, so the
noise scale cannot drift away from what the bounding actually guarantees.

Sums are carried as fixed-point integers (OpenDP's integer samplers are exact and several times
cheaper than float ones): ``fixed(v) = round(clamp(v) / quantum)`` with a decimal ``quantum`` that
gives ~1,000–10,000 steps over the larger bound's magnitude.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from agent.policy import Metric

__all__ = [
    "ADMITTED",
    "CONTRIBUTION_DROPPED",
    "NEW",
    "PARTITION_DROPPED",
    "Bounder",
    "Bounds",
    "Sensitivity",
    "quantum_for",
]

# Outcomes of Bounder.admit, ordered so that `outcome >= CONTRIBUTION_DROPPED` means "dropped".
NEW: Final = 0  # admitted; the unit's first contribution to this partition
ADMITTED: Final = 1  # admitted; a further contribution to a partition the unit already touches
CONTRIBUTION_DROPPED: Final = 2  # the unit already made max_contributions to this partition
PARTITION_DROPPED: Final = 3  # the unit already touches max_partitions other partitions


def _up(x: float) -> float:
    """The next float above ``x``: a computed sensitivity must never round below the true bound."""
    return math.nextafter(x, math.inf)


def quantum_for(lower: float, upper: float) -> float:
    """Decimal fixed-point step giving 1,000–10,000 steps over ``max(|lower|, |upper|)``."""
    magnitude = max(abs(lower), abs(upper))
    return 10.0 ** math.floor(math.log10(magnitude / 1000.0))


class Sensitivity(NamedTuple):
    """How much adding or removing one privacy unit can change a released vector (or count map).

    ``l0`` is the number of partitions it can touch, ``linf`` the most it can change one entry.
    """

    l0: int
    l1: float
    l2: float
    linf: float


class Bounds(NamedTuple):
    max_partitions: int
    max_contributions: int
    lower: float
    upper: float
    quantum: float
    magnitude: int  # max |fixed(v)| over clamped v: the fixed-point size of one contribution

    @classmethod
    def of(cls, metric: Metric) -> Bounds:
        q = quantum_for(metric.lower, metric.upper)
        magnitude = max(abs(round(metric.lower / q)), abs(round(metric.upper / q)))
        return cls(metric.max_partitions, metric.max_contributions, metric.lower, metric.upper, q, magnitude)

    def clamp(self, value: float) -> float:
        return min(max(value, self.lower), self.upper)

    def fixed(self, value: float) -> int:
        """The clamped value as a fixed-point integer; ``|fixed(v)| <= magnitude`` for every v."""
        return round(self.clamp(value) / self.quantum)

    def sensitivity(self, stat: str) -> Sensitivity:
        """Sensitivity of the integer vector the release noises for ``stat``.

        Vector layouts: one entry per partition for count, sum, distinct_units; ``[sums…, counts×w…]``
        for mean, with ``w = magnitude`` (see :attr:`mean_count_weight`); one entry per partition and
        bucket for histogram and quantiles (a unit's contributions to one partition may spread over
        its buckets, but their L1 and L2 norms are at most max_contributions).
        """
        p, c, m = self.max_partitions, self.max_contributions, self.magnitude
        root_p = _up(math.sqrt(p))
        if stat in ("count", "histogram", "quantiles"):
            return Sensitivity(p, p * c, _up(root_p * c), c)
        if stat == "sum":
            return Sensitivity(p, p * c * m, _up(root_p * c * m), c * m)
        if stat == "mean":
            per_partition_l2 = _up(math.sqrt(2.0) * c * m)
            return Sensitivity(p, 2 * p * c * m, _up(root_p * per_partition_l2), c * m)
        if stat == "distinct_units":
            return Sensitivity(p, p, root_p, 1)
        raise ValueError(f"unknown statistic {stat!r}")

    @property
    def mean_count_weight(self) -> int:
        """Counts enter a mean's vector multiplied by this, so sum and count share the budget evenly."""
        return self.magnitude

    def selection(self) -> Sensitivity:
        """Sensitivity of the per-partition distinct-unit counts used for DP partition selection."""
        return self.sensitivity("distinct_units")


class Bounder:
    """Enforces the per-unit caps for one metric in one window, first come first served.

    Each unit's admitted contributions depend only on that unit's own events, so removing a unit
    changes nothing else: the bounding is stable and the sensitivities above hold.
    ``touched`` (unit -> partitions) and ``contributions`` ((unit, key) -> count) are public so the
    aggregator's hot loop can inline :meth:`admit`; nothing else may write them.
    """

    __slots__ = ("contributions", "max_contributions", "max_partitions", "touched")

    def __init__(self, max_partitions: int, max_contributions: int) -> None:
        self.max_partitions = max_partitions
        self.max_contributions = max_contributions
        self.touched: dict[str, int] = {}
        self.contributions: dict[tuple[str, tuple[str, ...]], int] = {}

    def admit(self, unit: str, key: tuple[str, ...]) -> int:
        """Record one contribution of ``unit`` to partition ``key`` if the caps allow; see NEW etc."""
        slot = (unit, key)
        n = self.contributions.get(slot)
        if n is None:
            touched = self.touched.get(unit, 0)
            if touched >= self.max_partitions:
                return PARTITION_DROPPED
            self.touched[unit] = touched + 1
            self.contributions[slot] = 1
            return NEW
        if n >= self.max_contributions:
            return CONTRIBUTION_DROPPED
        self.contributions[slot] = n + 1
        return ADMITTED

    def partitions_of(self, unit: str) -> int:
        return self.touched.get(unit, 0)

    def contributions_of(self, unit: str, key: tuple[str, ...]) -> int:
        return self.contributions.get((unit, key), 0)

    @property
    def units(self) -> int:
        return len(self.touched)
