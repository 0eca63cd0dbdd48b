"""Reports over release levels: stored rows as consistent estimates, and sums with their covariance.

Pure. Agents with per-period bounds and a period total send, for one series (agent, metric, stat,
dims), the windows of a period and the period's total (``level = "period"``). :func:`level_view`
combines them by weighted least squares (:mod:`collector.estimates`): window rows carry consistent
estimates and their variances, and period rows are left out of what reports sum (their information
is in the window estimates, which add up to the total). :meth:`LevelView.total` sums rows with the
covariance of estimates that share a total, so the interval of a whole period is the total's.

Rows of series without a period total — every batch of an older agent — pass through untouched and
sum exactly as before. The raw released values stay stored and exported as they are: only reports
read this view. Clipping for display comes after estimation, in the renderers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from collector.estimates import Consistent, Released, consistent_rows
from collector.report.intervals import NoisySum, row_noise, total
from collector.store.records import StoredRow
from hushmetric.timefmt import parse_rfc3339

__all__ = ["LevelView", "level_view"]


class LevelView:
    """``rows``: what reports use (window rows, estimates where a total pairs with them)."""

    __slots__ = ("_consistent", "_released", "rows")

    def __init__(self, rows: list[StoredRow], consistent: Consistent | None, released: dict[int, Released]):
        self.rows = rows
        self._consistent = consistent
        self._released = released  # id() of a row in ``rows`` -> what the estimator knows it as

    def total(self, rows: Sequence[StoredRow]) -> NoisySum:
        """The sum of ``rows`` (taken from :attr:`rows`) with its noise: independent rows add their
        variances; window estimates that share a period total add with their covariance."""
        plain = [r for r in rows if id(r) not in self._released]
        acc = total([row_noise(r.value, r.mechanism, r.scale) for r in plain])
        paired = [self._released[id(r)] for r in rows if id(r) in self._released]
        if paired and self._consistent is not None:
            est = self._consistent.sum(paired)
            gaussian = all(p.mechanism == "gaussian" for p in paired)
            acc = acc.plus(NoisySum(est.value, est.variance, 0.0, len(paired), None, gaussian))
        return acc


def _epoch(stamp: str) -> int | None:
    try:
        return int(parse_rfc3339(stamp))
    except ValueError:
        return None


def level_view(rows: Sequence[StoredRow]) -> LevelView:
    """Consistent estimates over the levels in ``rows``; see the module doc."""
    if not any(r.level == "period" for r in rows):
        return LevelView(list(rows), None, {})  # no totals: exactly the rows as released
    released: list[Released | None] = []
    for i, r in enumerate(rows):
        start, end = _epoch(r.window_start), _epoch(r.window_end)
        if start is None or end is None:
            released.append(None)
            continue
        series = (r.tenant, r.agent, r.metric, r.stat, tuple(sorted(r.dims.items())))
        released.append(Released(series, r.level, start, end, r.value, r.mechanism, r.scale, i))
    consistent = consistent_rows(x for x in released if x is not None)
    out: list[StoredRow] = []
    mapping: dict[int, Released] = {}
    for r, rel in zip(rows, released, strict=True):
        if r.level == "period":
            continue  # its information is in the windows' estimates; raw value stays stored
        if rel is None or not consistent.paired(rel):
            out.append(r)
            continue
        est = consistent.estimates[rel]
        mechanism = "gaussian" if r.mechanism == "gaussian" else "derived"
        row = msgspec.structs.replace(r, value=est.value, mechanism=mechanism, scale=math.sqrt(est.variance))
        mapping[id(row)] = rel
        out.append(row)
    return LevelView(out, consistent, mapping)
