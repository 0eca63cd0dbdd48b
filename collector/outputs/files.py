"""``hush-collector export``: released rows as CSV or Parquet for analysts (tables are pure, writing is I/O).

One line per released row, with the noise beside the value (``noise_std``, ``ci95_lower``,
``ci95_upper``: :mod:`collector.report.intervals`) so an analysis never mistakes noise for signal.
Dimensions are one JSON object column (``dims``): their keys differ per metric. Parquet needs
``pyarrow`` (the ``parquet`` extra) and is imported only when asked for.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Literal

import msgspec

from collector.report.intervals import estimate, row_noise
from collector.store.records import StoredRow
from hushmetric.errors import ConfigError

__all__ = ["COLUMNS", "Format", "table", "to_csv", "write"]

Format = Literal["csv", "parquet"]
COLUMNS = (
    "tenant", "agent", "seq", "window_start", "window_end", "metric", "stat", "dims",
    "value", "mechanism", "scale", "noise_std", "ci95_lower", "ci95_upper", "level",
)  # fmt: skip
_json = msgspec.json.Encoder(order="sorted")


def table(rows: list[StoredRow]) -> dict[str, list[object]]:
    """Column name → values, in :data:`COLUMNS` order."""
    cols: dict[str, list[object]] = {c: [] for c in COLUMNS}
    for r in rows:
        est = estimate(row_noise(r.value, r.mechanism, r.scale))
        values = (
            r.tenant, r.agent, r.seq, r.window_start, r.window_end, r.metric, r.stat,
            _json.encode(r.dims).decode(), r.value, r.mechanism, r.scale, est.std, est.low, est.high,
            r.level,  # "window", or "period" for a period total (issue 15): never add the two up
        )  # fmt: skip
        for c, v in zip(COLUMNS, values, strict=True):
            cols[c].append(v)
    return cols


def to_csv(rows: list[StoredRow]) -> str:
    cols = table(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(zip(*(cols[c] for c in COLUMNS), strict=True))
    return buf.getvalue()


def write(rows: list[StoredRow], fmt: Format, path: Path) -> None:
    if fmt == "csv":
        path.write_text(to_csv(rows), encoding="utf-8")
        return
    try:
        import pyarrow as pa  # the parquet extra
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("--format parquet needs pyarrow: pip install 'hushmetric[parquet]'") from exc
    pq.write_table(pa.table(table(rows)), str(path))
