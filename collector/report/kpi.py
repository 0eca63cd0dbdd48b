"""The KPI report: every released metric per window with a 95 % interval, totals, quota use, privacy spend.

Public API (pure: values in, a frozen msgspec Struct out; no clock, no I/O)::

    kpi_report(rows, privacy, usage, *, tenant, since, until, quota=None) -> KpiReport

* ``rows`` (:class:`~collector.store.records.StoredRow`), ``privacy``
  (:class:`~collector.store.records.BatchPrivacy`) and ``usage``
  (:class:`~collector.store.records.UsageDay`) are what the store holds for the tenant. Records
  of another tenant are ignored (and counted in ``notes``); rows with a non-finite value or scale
  are skipped (and counted).
* ``since``/``until``: RFC 3339 stamps or ``YYYY-MM-DD`` (UTC midnight), either may be None. A window
  is in the range when it *starts* in ``[since, until)``; a usage day when it overlaps the range. The
  store may pre-filter with the same rule; filtering twice is harmless.
* ``quota``: limit per name, None for "no limit". Names ``{rows,bytes,batches}_per_{day,month}``
  (also ``daily_rows``, ``monthly_bytes``, …) are compared with the usage of the peak day/month in the
  range; any other name is listed with its limit and ``used = None``.

Aggregation: ``count``, ``sum``, ``histogram`` and ``distinct_units`` are additive, so rows of the same
metric/stat/dims/window from several agents are summed (noise variances add) into one point, and a
series total over the range is the sum of its points. ``distinct_units`` summed over agents or windows
counts a unit once per agent and window it was seen in: an **upper bound** on distinct units
(``Series.upper_bound``). ``mean``, quantiles (``p50``, …) and unknown stats are not additive: one
point per agent and window, and no total.

Period totals (rows with ``level = "period"``, from agents with per-period bounds) are combined with
their windows by weighted least squares (:mod:`collector.report.levels`): the points are consistent
estimates that add up to the totals, and a series total carries their covariance.

Values are unbiased noisy estimates and are reported as released — a count can be negative. Only the
renderers clip count-like values at 0 for display; JSON/CSV keep the raw value, so anyone re-summing
or re-dividing them gets unbiased results. See :mod:`collector.report.intervals` for the interval methods.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from collector.report.governance import GovernanceSection
from collector.report.intervals import (
    CONFIDENCE,
    KNOWN_MECHANISMS,
    Estimate,
    estimate,
    row_noise,
)
from collector.report.levels import LevelView, level_view
from collector.store.records import BatchPrivacy, StoredRow, UsageDay
from collector.store.vocab import RowStat
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "ADDITIVE_STATS",
    "COUNT_LIKE_STATS",
    "KpiReport",
    "Point",
    "PrivacySpend",
    "QuotaUse",
    "Series",
    "SpendLine",
    "UsageSummary",
    "dims_label",
    "in_range",
    "kpi_report",
    "parse_bound",
    "parse_bucket",
    "usable",
]

ADDITIVE_STATS = frozenset({"count", "sum", "histogram", "distinct_units"})
# Stats whose true value is never negative: the renderers clip these at 0 for display only.
COUNT_LIKE_STATS: frozenset[str] = frozenset[RowStat]({"count", "histogram", "distinct_units"})
_KNOWN_ORDER: dict[RowStat, int] = {"count": 0, "distinct_units": 1, "sum": 2, "mean": 3, "histogram": 4}
_STAT_ORDER: dict[str, int] = {k: v for k, v in _KNOWN_ORDER.items()}  # widened: stored stats are open


class Point(msgspec.Struct, frozen=True):
    """One window of a series. ``agents`` lists who contributed (one agent for non-additive stats)."""

    window_start: str
    window_end: str
    agents: list[str]
    estimate: Estimate


class Series(msgspec.Struct, frozen=True):
    """One metric/stat/dims combination over the range."""

    metric: str
    stat: str
    dims: dict[str, str]
    additive: bool
    upper_bound: bool  # distinct units summed over agents or windows
    points: list[Point]
    total: Estimate | None


class QuotaUse(msgspec.Struct, frozen=True):
    name: str
    limit: int | None
    used: int | None  # peak over the periods in range, None when the name is not understood
    period: str | None  # the day (YYYY-MM-DD) or month (YYYY-MM) of the peak
    fraction: float | None  # used / limit


class UsageSummary(msgspec.Struct, frozen=True):
    days: list[UsageDay]
    batches: int
    rows: int
    bytes: int
    duplicates: int
    gaps: int
    refused: dict[str, int]


class SpendLine(msgspec.Struct, frozen=True):
    """Privacy spend the batches declared, summed (basic composition). None: no batch declared it."""

    key: str  # agent id, UTC day (YYYY-MM-DD), or "all"
    unit: str
    batches: int
    rho: float | None
    epsilon: float | None
    delta: float | None


class PrivacySpend(msgspec.Struct, frozen=True):
    by_agent: list[SpendLine]
    by_day: list[SpendLine]
    total: list[SpendLine]  # one line per privacy unit


class KpiReport(msgspec.Struct, frozen=True, tag="kpi"):
    tenant: str
    since: str | None
    until: str | None
    confidence: float
    series: list[Series]
    quota: list[QuotaUse]
    usage: UsageSummary
    privacy: PrivacySpend
    notes: list[str]
    governance: GovernanceSection | None = None  # when the caller read the tenant's governance


def parse_bound(text: str | None) -> float | None:
    """Epoch seconds of a ``--since``/``--until`` value (RFC 3339 or ``YYYY-MM-DD``); ValueError otherwise."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    return parse_rfc3339(text)


def in_range(window_start: str, lo: float | None, hi: float | None) -> bool:
    """Whether a window starting at ``window_start`` lies in ``[lo, hi)``; unparsable stamps never do."""
    if lo is None and hi is None:
        return True
    try:
        t = parse_rfc3339(window_start)
    except ValueError:
        return False
    return (lo is None or t >= lo) and (hi is None or t < hi)


def usable(row: StoredRow) -> bool:
    return math.isfinite(row.value) and math.isfinite(row.scale) and row.scale >= 0.0


def dims_label(dims: Mapping[str, str]) -> str:
    """``k=v, k2=v2`` in key order; ``-`` when there are none. Not escaped: renderers escape."""
    return ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) or "-"


def parse_bucket(label: str) -> tuple[float, float] | None:
    """``"0..10"`` → (0, 10); ``"100.."`` → (100, inf); ``"..0"`` → (-inf, 0); None if malformed."""
    lo_text, sep, hi_text = label.partition("..")
    if not sep:
        return None
    try:
        lo = float(lo_text) if lo_text.strip() else -math.inf
        hi = float(hi_text) if hi_text.strip() else math.inf
    except ValueError:
        return None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        return None
    return lo, hi


_DimsKey = tuple[tuple[str, str], ...]
_SeriesKey = tuple[str, str, _DimsKey]


def _series_sort_key(key: _SeriesKey) -> tuple[str, int, str, tuple[tuple[str, float, str], ...]]:
    """Metric, stat, then dims — histogram buckets by their numeric lower edge."""
    metric, stat, dims = key
    ordered = []
    for k, v in dims:
        edges = parse_bucket(v) if k == "bucket" else None
        ordered.append((k, edges[0] if edges else math.inf, v))
    return (metric, _STAT_ORDER.get(stat, 9), stat, tuple(ordered))


def _build_series(view: LevelView) -> list[Series]:
    grouped: dict[_SeriesKey, dict[tuple[str, str, str], list[StoredRow]]] = defaultdict(
        lambda: defaultdict(list)
    )
    series_rows: dict[_SeriesKey, list[StoredRow]] = defaultdict(list)
    for row in view.rows:
        key = (row.metric, row.stat, tuple(sorted(row.dims.items())))
        additive = row.stat in ADDITIVE_STATS
        grouped[key][(row.window_start, row.window_end, "" if additive else row.agent)].append(row)
        series_rows[key].append(row)
    out: list[Series] = []
    for key in sorted(grouped, key=_series_sort_key):
        metric, stat, dims = key
        additive = stat in ADDITIVE_STATS
        points: list[Point] = []
        for (start, end, _agent), group in sorted(grouped[key].items()):
            noisy = view.total(group)
            agents = sorted({r.agent for r in group})
            if additive:
                points.append(Point(start, end, agents, estimate(noisy)))
            else:
                # Non-additive: several rows of one agent and window (a re-release) are listed apart.
                points.extend(
                    Point(start, end, agents, estimate(row_noise(r.value, r.mechanism, r.scale)))
                    for r in sorted(group, key=lambda r: r.seq)
                )
        upper = stat == "distinct_units" and (len(points) > 1 or any(len(p.agents) > 1 for p in points))
        out.append(
            Series(
                metric=metric,
                stat=stat,
                dims=dict(dims),
                additive=additive,
                upper_bound=upper,
                points=points,
                # Windows that share a period total are correlated: the view sums them with it.
                total=estimate(view.total(series_rows[key])) if additive else None,
            )
        )
    return out


def _day_overlaps(day: str, lo: float | None, hi: float | None) -> bool:
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return False
    return (lo is None or start + 86400 > lo) and (hi is None or start < hi)


def _usage(usage: Sequence[UsageDay]) -> UsageSummary:
    refused: dict[str, int] = defaultdict(int)
    for day in usage:
        for reason, n in day.refused.items():
            refused[reason] += n
    return UsageSummary(
        days=sorted(usage, key=lambda d: d.day),
        batches=sum(d.batches for d in usage),
        rows=sum(d.rows for d in usage),
        bytes=sum(d.bytes for d in usage),
        duplicates=sum(d.duplicates for d in usage),
        gaps=sum(d.gaps for d in usage),
        refused=dict(sorted(refused.items())),
    )


_QUOTA_NAME = (
    re.compile(r"^(?P<what>rows|bytes|batches)_per_(?P<period>day|month)$"),
    re.compile(r"^(?P<period>daily|monthly)_(?P<what>rows|bytes|batches)$"),
)


def _quota(quota: Mapping[str, int | None], usage: Sequence[UsageDay]) -> list[QuotaUse]:
    out: list[QuotaUse] = []
    for name, limit in sorted(quota.items()):
        match = next((m for p in _QUOTA_NAME if (m := p.match(name))), None)
        if match is None:
            out.append(QuotaUse(name, limit, None, None, None))
            continue
        what = match["what"]
        monthly = match["period"] in ("month", "monthly")
        per: dict[str, int] = defaultdict(int)
        for day in usage:
            per[day.day[:7] if monthly else day.day] += int(getattr(day, what))
        if per:
            period, used = max(sorted(per.items()), key=lambda kv: kv[1])
        else:
            period, used = None, 0
        fraction = used / limit if limit else None
        out.append(QuotaUse(name, limit, used, period, fraction))
    return out


def _spend(privacy: Sequence[BatchPrivacy]) -> PrivacySpend:
    def lines(key_of: str) -> list[SpendLine]:
        acc: dict[tuple[str, str], list[BatchPrivacy]] = defaultdict(list)
        for p in privacy:
            key = {"agent": p.agent, "day": p.window_start[:10], "total": "all"}[key_of]
            acc[(key, p.unit)].append(p)
        return [_spend_line(key, unit, group) for (key, unit), group in sorted(acc.items())]

    return PrivacySpend(by_agent=lines("agent"), by_day=lines("day"), total=lines("total"))


def _sum_declared(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) if present else None


def _spend_line(key: str, unit: str, group: list[BatchPrivacy]) -> SpendLine:
    return SpendLine(
        key=key,
        unit=unit,
        batches=len(group),
        rho=_sum_declared([p.rho for p in group]),
        epsilon=_sum_declared([p.epsilon for p in group]),
        delta=_sum_declared([p.delta for p in group]),
    )


def kpi_report(
    rows: Sequence[StoredRow],
    privacy: Sequence[BatchPrivacy],
    usage: Sequence[UsageDay],
    *,
    tenant: str,
    since: str | None,
    until: str | None,
    quota: Mapping[str, int | None] | None = None,
    governance: GovernanceSection | None = None,
) -> KpiReport:
    """Build the KPI report of ``tenant`` over ``[since, until)``; see the module docstring."""
    lo, hi = parse_bound(since), parse_bound(until)
    notes: list[str] = []
    foreign = sum(1 for r in rows if r.tenant != tenant) + sum(1 for p in privacy if p.tenant != tenant)
    foreign += sum(1 for u in usage if u.tenant != tenant)
    if foreign:
        notes.append(f"ignored {foreign} record(s) of other tenants")
    own = [r for r in rows if r.tenant == tenant and in_range(r.window_start, lo, hi)]
    kept = [r for r in own if usable(r)]
    if len(kept) != len(own):
        notes.append(f"skipped {len(own) - len(kept)} row(s) with a non-finite value or scale")
    unknown = sorted({r.mechanism for r in kept} - KNOWN_MECHANISMS)
    if unknown:
        notes.append(
            f"unknown noise mechanism(s) {', '.join(map(repr, unknown))}: scale taken as a standard "
            "deviation, normal approximation"
        )
    view = level_view(kept)
    if len(view.rows) != len(kept):
        notes.append(
            "period totals combined with their windows by least squares: windows are consistent "
            "estimates that add up to the totals (the raw released values stay stored)"
        )
    series = _build_series(view)
    if any(s.upper_bound for s in series):
        notes.append(
            "distinct_units summed over agents or windows counts a unit once per agent and window: "
            "an upper bound on distinct units"
        )
    if any(not s.additive for s in series):
        notes.append("mean and quantile stats are not additive: listed per agent and window, no total")
    batches = [p for p in privacy if p.tenant == tenant and in_range(p.window_start, lo, hi)]
    days = [u for u in usage if u.tenant == tenant and _day_overlaps(u.day, lo, hi)]
    return KpiReport(
        tenant=tenant,
        since=since,
        until=until,
        confidence=CONFIDENCE,
        series=series,
        quota=_quota(quota or {}, days),
        usage=_usage(days),
        privacy=_spend(batches),
        notes=notes,
        governance=governance,
    )
