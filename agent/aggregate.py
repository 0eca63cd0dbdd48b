"""Tumbling event-time windows with allowed lateness; bounded per-unit contributions aggregated into
integer accumulators ready for one vectorised DP release per metric.

Pure and synchronous: :meth:`WindowAggregator.add` takes already-redacted events and only touches
dicts and lists. A window closes when ``end + lateness <= watermark``; the default watermark is the
largest event time seen. Once a window has been handed out (by :meth:`~WindowAggregator.ready` or
:meth:`~WindowAggregator.flush`, or before a restart via ``released``), every event at or before it
is late: counted and dropped.

Windows are handed out contiguously from the first one seen, *including empty ones*: whether a
window is released at all must not depend on whether some unit was active in it. A gap longer than
one budget period is not filled (each empty window would still spend budget); the skipped windows
are counted in ``stats.empty_windows_skipped``.

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
from bisect import bisect_right
from collections.abc import Iterable, Sequence

import msgspec

from agent.bound import Bounder, Bounds
from agent.model import AttrValue, Event
from agent.policy import Metric, Policy, period_seconds, window_origin

__all__ = ["AggregatorStats", "MetricWindow", "WindowAggregator", "WindowState", "bucket_labels", "label"]

_COUNT, _SUM, _MEAN, _HISTOGRAM, _DISTINCT = range(5)
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
    empty_windows_skipped: int = 0  # empty windows in a gap longer than one budget period


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

    __slots__ = ("parts",)

    def __init__(self, bounds: Bounds) -> None:
        super().__init__(bounds.max_partitions, bounds.max_contributions)
        self.parts: dict[tuple[str, ...], list[int]] = {}


class WindowState:
    """Everything a window's release needs. ``metrics`` is in the policy's metric order."""

    __slots__ = ("end", "events", "metrics", "start")

    def __init__(self, start: int, end: int, metrics: list[MetricWindow]) -> None:
        self.start = start
        self.end = end
        self.metrics = metrics
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
            int, int, list[float], int,
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
        )  # fmt: skip


class WindowAggregator:
    def __init__(self, policy: Policy, *, released: Iterable[int] = ()) -> None:
        self.policy = policy
        self.stats = AggregatorStats()
        self._size = policy.window_seconds
        self._lateness = policy.lateness_seconds
        self._origin = window_origin(policy)  # Monday 00:00 UTC for weekly budgets: windows are ISO weeks
        self._max_gap = max(1, period_seconds(policy) // self._size)
        self._plans = [_Plan(i, m) for i, m in enumerate(policy.metrics)]
        self._by_name: dict[str, list[_Plan]] = {}
        for plan, metric in zip(self._plans, policy.metrics, strict=True):
            for name in metric.events:
                self._by_name.setdefault(name, []).append(plan)
        self._windows: dict[int, WindowState] = {}
        self._watermark = -math.inf
        done = max(released, default=None)
        # Every window starting before the frontier has been handed out (or was skipped).
        self._frontier: int | None = None if done is None else done + self._size

    @property
    def watermark(self) -> float:
        """Event-time watermark: the largest event time seen (-inf before the first event)."""
        return self._watermark

    @property
    def open_windows(self) -> int:
        return len(self._windows)

    def _closed(self, start: int, watermark: float) -> bool:
        return start + self._size + self._lateness <= watermark

    def window_start(self, ts: float) -> int:
        return self._origin + int((ts - self._origin) // self._size) * self._size

    def is_late(self, ts: float) -> bool:
        start = self.window_start(ts)
        return (self._frontier is not None and start < self._frontier) or self._closed(start, self._watermark)

    def add(self, events: Sequence[Event]) -> None:
        """Bound and accumulate already-redacted events; late, unmatched and refused ones are counted."""
        st = self.stats
        st.events += len(events)
        by_name = self._by_name
        windows = self._windows
        size = self._size
        origin = self._origin
        span = size + self._lateness
        frontier = -math.inf if self._frontier is None else self._frontier
        watermark = self._watermark
        unmatched = late = undeclared = missing_value = clamped = 0
        contributions_dropped = partitions_dropped = admitted = 0
        for ev in events:
            plans = by_name.get(ev.name)
            if plans is None:
                unmatched += 1
                continue
            ts = ev.ts
            start = origin + int((ts - origin) // size) * size
            if start < frontier or start + span <= watermark:
                late += 1
                continue
            if ts > watermark:
                watermark = ts
            window = windows.get(start)
            if window is None:
                window = windows[start] = WindowState(
                    start, start + size, [MetricWindow(p.bounds) for p in self._plans]
                )
            attrs = ev.attrs
            unit = ev.unit
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
                ) = plan.hot
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
                    key = (text,)
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
                    key = tuple(labels)
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
                mw = metrics[index]
                parts = mw.parts
                part = parts.get(key)
                # Bounder.admit, inlined (this loop is the agent's hot path)
                contributions = mw.contributions
                slot = (unit, key)
                n = contributions.get(slot)
                if n is None:
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
            window.events += admitted
            admitted = 0
        self._watermark = watermark
        st.unmatched += unmatched
        st.late += late
        st.undeclared += undeclared
        st.missing_value += missing_value
        st.clamped += clamped
        st.contributions_dropped += contributions_dropped
        st.partitions_dropped += partitions_dropped

    def _hand_out(self, last: int) -> list[WindowState]:
        """Windows from the frontier through ``last`` (inclusive), gaps filled with empty windows."""
        starts = sorted(s for s in self._windows if s <= last)
        out: list[WindowState] = []
        cursor = self._frontier if self._frontier is not None else (starts[0] if starts else None)
        if cursor is None:
            return out
        for stop in [*starts, last + self._size]:
            gap = (stop - cursor) // self._size
            fill = min(gap, self._max_gap)
            self.stats.empty_windows_skipped += gap - fill
            out.extend(self._empty(cursor + i * self._size) for i in range(fill))
            if stop <= last:
                out.append(self._windows.pop(stop))
            cursor = stop + self._size
        self._frontier = last + self._size
        return out

    def _empty(self, start: int) -> WindowState:
        return WindowState(start, start + self._size, [MetricWindow(p.bounds) for p in self._plans])

    def ready(self, watermark: float | None = None) -> list[WindowState]:
        """Closed windows (``end + lateness <= watermark``) in order, removed from the aggregator."""
        wm = self._watermark if watermark is None else watermark
        if wm == -math.inf:
            return []
        last = self.window_start(wm - self._lateness - self._size)
        if self._frontier is None and not any(s <= last for s in self._windows):
            return []
        if self._frontier is not None and last < self._frontier:
            return []
        return self._hand_out(last)

    def flush(self) -> list[WindowState]:
        """Every open window in order (gaps filled), e.g. at the end of ``run --once``."""
        if not self._windows:
            return []
        return self._hand_out(max(self._windows))
