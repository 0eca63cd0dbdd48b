"""Records the collector's store hands to reports: what was released, what was declared, what was used."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

__all__ = ["BatchPrivacy", "StoredRow", "UsageDay", "usage_days"]


class StoredRow(msgspec.Struct, frozen=True):
    """One released row as stored, with the batch it came from.

    ``stat`` is one of: ``count``, ``sum``, ``mean``, ``histogram`` (bucket in ``dims["bucket"]``),
    ``distinct_units``, or a quantile ``p50``/``p90``/``p99``…. ``mechanism`` is ``gaussian`` (scale =
    σ), ``laplace`` (scale = b) or ``derived`` (scale = approximate standard deviation of a value
    computed from other noisy values, e.g. mean = sum / count).
    """

    tenant: str
    agent: str
    seq: int
    window_start: str  # RFC 3339 UTC
    window_end: str
    metric: str
    stat: str
    dims: dict[str, str]
    value: float
    mechanism: str
    scale: float
    level: str = "window"  # "period": a period total (wire `level`); absent in older batches


class BatchPrivacy(msgspec.Struct, frozen=True):
    """The privacy spend a stored batch declared."""

    tenant: str
    agent: str
    seq: int
    window_start: str
    window_end: str
    unit: str
    epsilon: float | None
    delta: float | None
    rho: float | None


class UsageDay(msgspec.Struct, frozen=True):
    """Metering per tenant and UTC day; also the JSON form of ``hush-collector usage``."""

    tenant: str
    day: str  # YYYY-MM-DD
    batches: int
    rows: int
    bytes: int
    duplicates: int
    refused: dict[str, int]
    gaps: int


def usage_days(
    meter: Iterable[Sequence[Any]], refusals: Iterable[Sequence[Any]], gaps: Iterable[Sequence[Any]]
) -> list[UsageDay]:
    """Merge the three metering reads into one record per (tenant, day), sorted.

    ``meter`` rows are (tenant, day, batches, rows, bytes, duplicates); ``refusals`` rows (tenant,
    day, reason, count); ``gaps`` rows (tenant, day, open chain gaps). Shared by both stores.
    """
    days: dict[tuple[str, str], dict[str, Any]] = {}

    def slot(tenant: str, day: str) -> dict[str, Any]:
        return days.setdefault(
            (tenant, day), {"batches": 0, "rows": 0, "bytes": 0, "duplicates": 0, "refused": {}, "gaps": 0}
        )

    for t, d, batches, rows, nbytes, duplicates in meter:
        slot(t, d).update(batches=batches, rows=rows, bytes=nbytes, duplicates=duplicates)
    for t, d, reason, count in refusals:
        slot(t, d)["refused"][reason] = count
    for t, d, open_gaps in gaps:
        slot(t, d)["gaps"] = open_gaps
    return [
        UsageDay(
            t,
            d,
            v["batches"],
            v["rows"],
            v["bytes"],
            v["duplicates"],
            dict(sorted(v["refused"].items())),
            v["gaps"],
        )
        for (t, d), v in sorted(days.items())
    ]
