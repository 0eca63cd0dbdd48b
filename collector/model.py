"""Records the collector's store hands to reports: what was released, what was declared, what was used."""

from __future__ import annotations

import msgspec

__all__ = ["BatchPrivacy", "StoredRow", "UsageDay"]


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
