"""Tumbling event-time windows with allowed lateness; bounded per-unit contributions aggregated into
integer accumulators ready for one vectorised DP release per metric.

Pure and synchronous: :meth:`WindowAggregator.add` takes already-redacted events and only touches
dicts and lists.

The window schedule is a function of public parameters only — the policy, the clock and a declared
range — never of the data: whether a window is released, and so the batch count, the seqs and the
budget charged, must not say whether some unit was active. The aggregator keeps the schedule
position ``next_start`` (persisted by the runtime); every window from there on is handed out in
order, empty ones included, with no gap skipping:

- :meth:`~WindowAggregator.ready` (the daemon): windows the wall clock has closed
  (``end + lateness <= now``) and that are either past the event-time watermark (the largest event
  time seen) or the input is idle. The clock condition means a future-dated event never closes a
  window early; the watermark-or-idle condition keeps a backlog drained after an outage from being
  turned into late events by the clock.
- :meth:`~WindowAggregator.take_until` (``run --once``): every window of the declared range.

An event whose window starts before ``next_start`` is late: counted and dropped.

Memory: there is deliberately no global cap on distinct open-dimension values. A cap that refuses
new values once full lets whoever comes first decide which values survive — one extra unit arriving
first could suppress a popular value entirely, breaking the neighbouring-input guarantee. Memory is
bounded by the contribution bound instead: each unit opens at most ``max_partitions`` partitions per
metric and window, so a window holds at most units × ``max_partitions`` (unit, partition) entries
(about 250 bytes each, measured: see docs/privacy.md), and a cardinality flood costs memory in
proportion to the units behind it, never more.

Not thread-safe: one aggregator belongs to one task.
"""

from __future__ import annotations

import itertools
import math
import sys
from bisect import bisect_right
from collections.abc import Sequence

import msgspec

from agent.bound import Bounder, Bounds
from agent.model import AttrValue, Event
from agent.policy import Metric, Policy, period_key, window_origin

__all__ = ["AggregatorStats", "MetricWindow", "WindowAggregator", "WindowState", "bucket_labels", "label"]

_COUNT, _SUM, _MEAN, _HISTOGRAM, _DISTINCT = range(5)
# Shared (unit, ()) slots kept at most: a cache (sharing saves memory, never changes a decision).
_SLOT_CACHE = 1 << 17
_STAT_CODE = {
    "count": _COUNT,
    "sum": _SUM,
    "mean": _MEAN,
    "histogram": _HISTOGRAM,
    "quantiles": _HISTOGRAM,
    "distinct_units": _DISTINCT,
}


class AggregatorStats(msgspec.Struct, gc=False):
    """Counters since start. One event taken by two metrics can be counted once per metric below."""

    events: int = 0  # events offered to add()
    late: int = 0  # for a window already closed or released
    unmatched: int = 0  # no metric takes the event's name
    undeclared: int = 0  # a dimension value missing or not among the declared values
    missing_value: int = 0  # a value statistic but no (or a NaN) value
    clamped: int = 0  # value outside [lower, upper], clamped
    contributions_dropped: int = 0  # over max_contributions for its unit and partition
    partitions_dropped: int = 0  # over max_partitions for its unit


def label(value: AttrValue) -> str:
    """An attribute value as a dimension label (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bucket_labels(edges: Sequence[float]) -> list[str]:
    return [f"{lo:g}..{hi:g}" for lo, hi in itertools.pairwise(edges)]


class MetricWindow(Bounder):
    """One metric's bounder and accumulators in one window: partition key -> integer list.

    Layout: ``[units, …]`` where units counts distinct privacy units, followed by ``count`` (count),
    ``fixed-point sum`` (sum), ``fixed-point sum, count`` (mean), one count per bucket (histogram,
    quantiles), nothing (distinct_units).
    """

    __slots__ = ("combos", "keys", "parts", "period")

    def __init__(self, bounds: Bounds) -> None:
        super().__init__(bounds.max_partitions, bounds.max_contributions)
        self.parts: dict[tuple[str, ...], list[int]] = {}
        # One-dimension partition keys by label: every slot of a partition shares one tuple.
        self.keys: dict[str, tuple[str]] = {}
        self.combos: dict[tuple[str, ...], tuple[str, ...]] = {}  # and keys of several dimensions
        # Per-period bounds: the period's bounder (the aggregator's), looked up on first use.
        self.period: Bounder | None = None


class WindowState:
    """Everything a window's release needs. ``metrics`` is in the policy's metric order.

    For a metric bounded per period, the metric window's bounder holds the contributions admitted
    into this window (the caps are enforced by the period's bounder, :meth:`WindowAggregator.
    period_usage`): what the runtime adds to the period's persisted usage when it releases the window.
    Its ``touched`` stays empty (memory: one dict entry per unit less, per metric and open window).
    """

    __slots__ = ("end", "events", "metrics", "period", "start")

    def __init__(self, start: int, end: int, metrics: list[MetricWindow], period: str = "") -> None:
        self.start = start
        self.end = end
        self.metrics = metrics
        self.period = period  # the budget period the window lies in (ledger.period_of)
        self.events = 0  # admitted contributions, over all metrics

    def __repr__(self) -> str:
        return f"WindowState(start={self.start}, end={self.end}, events={self.events})"


class _Plan:
    """A metric prepared for the hot path: ``hot`` is unpacked once per event and metric."""

    __slots__ = ("bounds", "hot", "index")

    def __init__(self, index: int, metric: Metric) -> None:
        self.index = index
        self.bounds = b = Bounds.of(metric)
        code = _STAT_CODE[metric.stat]
        dims = tuple(
            (name, None if spec == "open" else frozenset(spec)) for name, spec in metric.dims.items()
        )
        edges = list(metric.buckets)
        last_bucket = max(0, len(edges) - 2)
        width = {_COUNT: 2, _SUM: 2, _MEAN: 3, _HISTOGRAM: 2 + last_bucket, _DISTINCT: 1}[code]
        self.hot: tuple[
            int, int, tuple[tuple[str, frozenset[str] | None], ...], bool, float, float, float, int,
            int, int, list[float], int, bool,
        ] = (
            index,
            code,
            dims,
            code in (_SUM, _MEAN, _HISTOGRAM),  # takes a value
            b.lower,
            b.upper,
            b.quantum,
            width,
            b.max_partitions,
            b.max_contributions,
            edges,
            last_bucket,
            metric.bound == "period",
        )  # fmt: skip


class WindowAggregator:
    def __init__(self, policy: Policy, *, next_start: int | None = None) -> None:
        self.policy = policy
        self.stats = AggregatorStats()
        self._size = policy.window_seconds
        self._lateness = policy.lateness_seconds
        self._origin = window_origin(policy)  # Monday 00:00 UTC for weekly budgets: windows are ISO weeks
        self._plans = [_Plan(i, m) for i, m in enumerate(policy.metrics)]
        self._by_name: dict[str, list[_Plan]] = {}
        for plan, metric in zip(self._plans, policy.metrics, strict=True):
            for name in metric.events:
                self._by_name.setdefault(name, []).append(plan)
        self._windows: dict[int, WindowState] = {}
        # Per-period bounds: (metric index, period) -> the bounder of that metric over the period.
        # Per unit, per metric, per period, and dropped once the schedule leaves the period; the
        # runtime restores the usage of released windows (persisted) before replaying the journal.
        self._period_bounds: dict[tuple[int, str], Bounder] = {}
        self._watermark = -math.inf
        # unit -> (unit, ()): the slot of a dimensionless metric, shared by all of them (memory).
        self._bare_slots: dict[str, tuple[str, tuple[str, ...]]] = {}
        # The schedule position: every window starting before it has been handed out. None until
        # the runtime starts the schedule (a bare aggregator, in tests and benchmarks, then starts
        # at the first window it sees when flushed).
        self._frontier: int | None = None if next_start is None else self.window_start(next_start)

    @property
    def watermark(self) -> float:
        """Event-time watermark: the largest event time seen (-inf before the first event)."""
        return self._watermark

    @property
    def open_windows(self) -> int:
        return len(self._windows)

    @property
    def next_start(self) -> int | None:
        """The schedule position: start of the next window to hand out (None: not started)."""
        return self._frontier

    def start_schedule(self, start: float) -> int:
        """Set the schedule position to the window containing ``start`` (only forward); returns it.
        Open windows before it are discarded: their events are late."""
        position = self.window_start(start)
        if self._frontier is not None and position < self._frontier:
            raise ValueError(f"schedule position {position} is before {self._frontier}")
        self._frontier = position
        for old in [s for s in self._windows if s < position]:
            del self._windows[old]
        self._forget_periods()
        return position

    def _new_window(self, start: int) -> WindowState:
        return WindowState(
            start,
            start + self._size,
            [MetricWindow(p.bounds) for p in self._plans],
            period_key(self.policy, start),
        )

    def _period_bounder(self, index: int, period: str) -> Bounder:
        bounder = self._period_bounds.get((index, period))
        if bounder is None:
            b = self._plans[index].bounds
            bounder = self._period_bounds[(index, period)] = Bounder(b.max_partitions, b.max_contributions)
        return bounder

    def restore_period_usage(
        self, metric: str, period: str, usage: Sequence[tuple[str, tuple[str, ...], int]]
    ) -> None:
        """Count contributions already released in ``period`` (unit, partition, n) against the
        metric's period bounds: after a restart mid-period, a unit cannot add past them."""
        index = next(i for i, m in enumerate(self.policy.metrics) if m.name == metric)
        bounder = self._period_bounder(index, period)
        for unit, key, n in usage:
            slot = (unit, key)
            if slot not in bounder.contributions:
                bounder.touched[unit] = bounder.touched.get(unit, 0) + 1
                bounder.contributions[slot] = 0
            bounder.contributions[slot] += n

    def period_usage(self, metric: str, period: str) -> Bounder | None:
        """The period bounder of a metric bounded per period (None before its first contribution)."""
        index = next(i for i, m in enumerate(self.policy.metrics) if m.name == metric)
        return self._period_bounds.get((index, period))

    def _forget_periods(self) -> None:
        """Drop the period bounders of periods the schedule has left: memory stays bounded."""
        if self._frontier is None or not self._period_bounds:
            return
        current = period_key(self.policy, self._frontier)
        for slot in [s for s in self._period_bounds if s[1] < current]:
            del self._period_bounds[slot]

    def window_start(self, ts: float) -> int:
        return self._origin + int((ts - self._origin) // self._size) * self._size

    def is_late(self, ts: float) -> bool:
        start = self.window_start(ts)
        return self._frontier is not None and start < self._frontier

    def add(self, events: Sequence[Event]) -> None:
        """Bound and accumulate already-redacted events; late, unmatched and refused ones are counted.

        Memory: a unit id is interned before it is kept (one string per unit, however many windows,
        metrics and periods hold it) and a one-dimension partition key is the window's own tuple for
        that label, so per-unit state costs dict entries, not copies of the id (issue 12).
        """
        st = self.stats
        st.events += len(events)
        by_name = self._by_name
        windows = self._windows
        size = self._size
        origin = self._origin
        frontier = -math.inf if self._frontier is None else self._frontier
        watermark = self._watermark
        intern = sys.intern
        bare = self._bare_slots
        unmatched = late = undeclared = missing_value = clamped = 0
        contributions_dropped = partitions_dropped = admitted = 0
        window: WindowState | None = None
        current = -1  # the start of ``window``: events come in time order, mostly in one window
        for ev in events:
            plans = by_name.get(ev.name)
            if plans is None:
                unmatched += 1
                continue
            ts = ev.ts
            start = origin + int((ts - origin) // size) * size
            if start < frontier:
                late += 1
                continue
            if ts > watermark:
                watermark = ts
            if start != current:
                if window is not None:
                    window.events += admitted
                    admitted = 0
                window = windows.get(start)
                if window is None:
                    window = windows[start] = self._new_window(start)
                current = start
            assert window is not None
            attrs = ev.attrs
            unit = intern(ev.unit)
            metrics = window.metrics
            for plan in plans:
                (
                    index,
                    code,
                    dims,
                    valued,
                    lower,
                    upper,
                    quantum,
                    width,
                    max_p,
                    max_c,
                    edges,
                    last,
                    per_period,
                ) = plan.hot
                mw = metrics[index]
                key: tuple[str, ...] = ()
                if len(dims) == 1:  # the common case, without the general loop
                    dim, allowed = dims[0]
                    raw = attrs.get(dim)
                    if raw is None:
                        undeclared += 1
                        continue
                    text = raw if type(raw) is str else label(raw)
                    if allowed is not None and text not in allowed:
                        undeclared += 1
                        continue
                    known = mw.keys.get(text)
                    if known is None:
                        known = mw.keys[text] = (text,)
                    key = known
                elif dims:
                    labels = []
                    for dim, allowed in dims:
                        raw = attrs.get(dim)
                        if raw is None:
                            break
                        text = raw if type(raw) is str else label(raw)
                        if allowed is not None and text not in allowed:
                            break
                        labels.append(text)
                    if len(labels) != len(dims):
                        undeclared += 1
                        continue
                    built = tuple(labels)
                    key = mw.combos.setdefault(built, built)  # every slot of a partition: one tuple
                value = 0.0
                if valued:
                    raw_value = ev.value
                    if raw_value is None or raw_value != raw_value:  # None or NaN
                        missing_value += 1
                        continue
                    if raw_value < lower:
                        value = lower
                        clamped += 1
                    elif raw_value > upper:
                        value = upper
                        clamped += 1
                    else:
                        value = raw_value
                parts = mw.parts
                part = parts.get(key)
                # Bounder.admit, inlined (this loop is the agent's hot path)
                contributions = mw.contributions
                if dims:
                    slot = (unit, key)
                else:  # one (unit, ()) tuple for every dimensionless metric and window
                    shared = bare.get(unit)
                    if shared is None:
                        if len(bare) >= _SLOT_CACHE:
                            bare.clear()
                        shared = bare[unit] = (unit, ())
                    slot = shared
                n = contributions.get(slot)
                if per_period:
                    # The period's bounder decides (Bounder.admit on it, inlined); the window only
                    # records what it admitted.
                    bounder = mw.period
                    if bounder is None:
                        bounder = mw.period = self._period_bounder(index, window.period)
                    had = bounder.contributions.get(slot)
                    if had is None:
                        if dims:  # (see below: one partition needs no count)
                            touched = bounder.touched.get(unit, 0)
                            if touched >= max_p:
                                partitions_dropped += 1
                                continue
                            bounder.touched[unit] = touched + 1
                        bounder.contributions[slot] = 1
                    elif had >= max_c:
                        contributions_dropped += 1
                        continue
                    else:
                        bounder.contributions[slot] = had + 1
                    if n is None:  # (no ``touched`` here: the period's bounder counts partitions)
                        contributions[slot] = 1
                        if part is None:
                            part = parts[key] = [0] * width
                        part[0] += 1
                    else:
                        contributions[slot] = n + 1
                        assert part is not None
                elif n is None:
                    # A metric without dimensions has one partition: a unit without a slot touches
                    # none, and max_partitions >= 1 admits it, so its ``touched`` is not kept (one
                    # dict entry per unit and metric less; admit would decide the same).
                    if dims:
                        touched = mw.touched.get(unit, 0)
                        if touched >= max_p:
                            partitions_dropped += 1
                            continue
                        mw.touched[unit] = touched + 1
                    contributions[slot] = 1
                    if part is None:
                        part = parts[key] = [0] * width
                    part[0] += 1
                elif n >= max_c:
                    contributions_dropped += 1
                    continue
                else:
                    contributions[slot] = n + 1
                    assert part is not None  # the unit's first contribution created it
                admitted += 1
                if code == _COUNT:
                    part[1] += 1
                elif code == _SUM:
                    part[1] += round(value / quantum)
                elif code == _MEAN:
                    part[1] += round(value / quantum)
                    part[2] += 1
                elif code == _HISTOGRAM:
                    bucket = bisect_right(edges, value) - 1
                    part[1 + (0 if bucket < 0 else last if bucket > last else bucket)] += 1
        if window is not None:
            window.events += admitted
        self._watermark = watermark
        st.unmatched += unmatched
        st.late += late
        st.undeclared += undeclared
        st.missing_value += missing_value
        st.clamped += clamped
        st.contributions_dropped += contributions_dropped
        st.partitions_dropped += partitions_dropped

    def _hand_out(self, stop: int) -> list[WindowState]:
        """Every window from the schedule position up to ``stop`` (exclusive), empty ones included."""
        if self._frontier is None:
            return []
        windows = self._windows
        out = [
            windows.pop(start) if start in windows else self._new_window(start)
            for start in range(self._frontier, stop, self._size)
        ]
        if stop > self._frontier:
            self._frontier = stop
            self._forget_periods()
        return out

    def closed_before(self, now: float) -> int:
        """The first window start the clock has not closed at ``now``: every window before it has
        ``end + lateness <= now``."""
        return self.window_start(now - self._lateness)

    def ready(self, now: float, *, idle: bool, stop: int | None = None) -> list[WindowState]:
        """Windows closed by the clock and, unless the input is ``idle``, passed by the watermark; in
        order from the schedule position, empty ones included, never at or past ``stop``."""
        bound = now if idle else min(now, self._watermark)
        if bound == -math.inf:
            return []
        last = self.closed_before(bound)
        return self._hand_out(last if stop is None else min(last, stop))

    def take_until(self, stop: int) -> list[WindowState]:
        """Every window of the schedule before ``stop`` (a window start), e.g. ``run --once``'s range."""
        return self._hand_out(stop)

    def flush(self) -> list[WindowState]:
        """Every open window in order (gaps filled), from the schedule position or, if the schedule
        has not started, from the first open window. For tests and benchmarks."""
        if not self._windows:
            return []
        if self._frontier is None:
            self._frontier = min(self._windows)
        return self._hand_out(max(self._windows) + self._size)
