"""Released rows as time series samples, each with its noise beside it (pure).

Every stored row becomes four samples at the end of its window, sharing one label set:

* ``hush_released`` — the released (noisy) value, exactly as stored;
* ``hush_released_noise_std`` — the standard deviation of the DP noise in it;
* ``hush_released_ci95_lower`` / ``hush_released_ci95_upper`` — the 95 % interval of the noise
  (:mod:`collector.report.intervals`, the same arithmetic as the KPI report).

A dashboard that plots the value without its band shows noise as signal; publishing the band as
series of their own lets every panel draw it. Labels: ``tenant``, ``agent``, ``metric``, ``stat`` and
one ``dim_<key>`` per dimension (prefixed so a dimension can never shadow a reserved label, and
sanitised to the Prometheus label alphabet).

Each stored batch adds, at its window end, what usage and privacy dashboards need and the batch
header already declares (data-independent, signed): ``hush_batch_rows`` (rows it released) and
``hush_batch_rho`` / ``hush_batch_epsilon`` (the privacy it declared spent), labelled ``tenant``,
``agent`` and ``unit`` (the privacy unit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from collector.report.intervals import estimate, row_noise
from collector.store.records import BatchPrivacy, StoredRow
from hushmetric.timefmt import parse_rfc3339

__all__ = ["BATCH_SERIES", "COMPANIONS", "VALUE", "Sample", "batch_samples", "label_name", "samples"]

VALUE = "hush_released"
COMPANIONS = ("hush_released_noise_std", "hush_released_ci95_lower", "hush_released_ci95_upper")
BATCH_SERIES = ("hush_batch_rows", "hush_batch_rho", "hush_batch_epsilon")

_BAD = re.compile(r"[^a-zA-Z0-9_]")


class Sample(msgspec.Struct, frozen=True):
    """One sample of one series: ``labels`` sorted by name, ``__name__`` first (remote-write order)."""

    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int
    start_ms: int  # the window start (OTLP's start time; remote-write has no use for it)

    @property
    def name(self) -> str:
        return self.labels[0][1]


def label_name(key: str) -> str:
    """A dimension key as a label name: ``dim_`` + the key, characters outside [a-zA-Z0-9_] as ``_``."""
    return "dim_" + _BAD.sub("_", key)


def _labels(name: str, row: StoredRow) -> tuple[tuple[str, str], ...]:
    rest = {"tenant": row.tenant, "agent": row.agent, "metric": row.metric, "stat": row.stat}
    if row.level != "window":
        # A period total ends with the period's last window: without its own label it would be a
        # second sample of that window's series at the same time (and a total is not a window value).
        rest["level"] = row.level
    for key, value in row.dims.items():
        rest[label_name(key)] = value
    return (("__name__", name), *sorted(rest.items()))


def _ms(rfc3339: str) -> int:
    return round(parse_rfc3339(rfc3339) * 1000)


def samples(rows: Iterable[StoredRow]) -> list[Sample]:
    """The four samples of every row, ordered by series then time (what remote-write requires)."""
    out: list[Sample] = []
    for row in rows:
        est = estimate(row_noise(row.value, row.mechanism, row.scale))
        end, start = _ms(row.window_end), _ms(row.window_start)
        for name, value in zip((VALUE, *COMPANIONS), (row.value, est.std, est.low, est.high), strict=True):
            out.append(Sample(_labels(name, row), float(value), end, start))
    out.sort(key=lambda s: (s.labels, s.timestamp_ms))
    return out


def batch_samples(batches: Iterable[BatchPrivacy], nrows: Iterable[int]) -> list[Sample]:
    """Rows released and privacy declared per batch; a spend the batch did not declare is left out.

    Batches that end at the same time (a period's total, sealed with the period's last window) add up
    into one sample per series and time: rows released and privacy spent at that moment.
    """
    summed: dict[tuple[tuple[tuple[str, str], ...], int], tuple[float, int]] = {}
    for b, n in zip(batches, nrows, strict=True):
        labels = (("agent", b.agent), ("tenant", b.tenant), ("unit", b.unit))
        end, start = _ms(b.window_end), _ms(b.window_start)
        for name, value in zip(BATCH_SERIES, (float(n), b.rho, b.epsilon), strict=True):
            if value is not None:
                key = ((("__name__", name), *labels), end)
                total, first = summed.get(key, (0.0, start))
                summed[key] = (total + float(value), min(first, start))
    out = [Sample(labels, total, end, start) for (labels, end), (total, start) in summed.items()]
    out.sort(key=lambda s: (s.labels, s.timestamp_ms))
    return out
