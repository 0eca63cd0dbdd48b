"""Read queries of the SQLite store: usage per tenant and day, released rows, declared privacy spend.

Each function takes ``read(sql, params) -> rows`` (the store's locked reader), so it holds no
connection of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from collector.store.records import BatchPrivacy, StoredRow, UsageDay, usage_days
from hushmetric.timefmt import parse_rfc3339

__all__ = ["batch_privacy", "released_rows", "usage"]

Read = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
_dims = msgspec.json.Decoder(dict[str, str])


def _epoch(text: str | None) -> float | None:
    return None if text is None else parse_rfc3339(text)


async def usage(read: Read, tenant: str | None, since: str | None, until: str | None) -> list[UsageDay]:
    where, params = ["1 = 1"], []
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    if since is not None:
        where.append("day >= ?")
        params.append(since)
    if until is not None:
        where.append("day <= ?")
        params.append(until)
    cond = " AND ".join(where)
    return usage_days(
        await read(
            f"SELECT tenant, day, batches, rows, bytes, duplicates FROM meter_day WHERE {cond}", params
        ),
        await read(f"SELECT tenant, day, reason, count FROM refusals WHERE {cond}", params),
        await read(
            "SELECT tenant, day, COUNT(*) FROM chain_events "
            f"WHERE resolved = 0 AND {cond} GROUP BY tenant, day",
            params,
        ),
    )


def _window(since: str | None, until: str | None) -> tuple[str, list[Any]]:
    cond, params = "b.tenant = ?", []
    if since is not None:
        cond += " AND b.window_start_epoch >= ?"
        params.append(_epoch(since))
    if until is not None:
        cond += " AND b.window_start_epoch < ?"
        params.append(_epoch(until))
    return cond, params


async def released_rows(read: Read, tenant: str, since: str | None, until: str | None) -> list[StoredRow]:
    cond, params = _window(since, until)
    rows = await read(
        "SELECT b.tenant, b.agent, b.seq, b.window_start, b.window_end, "
        "r.metric, r.stat, r.dims, r.value, "
        f"r.mechanism, r.scale, r.level FROM batch_rows r JOIN batches b ON b.id = r.batch_id WHERE {cond} "
        "ORDER BY b.window_start_epoch, b.agent, b.seq, r.rowid",
        [tenant, *params],
    )
    return [
        StoredRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _dims.decode(r[7]), r[8], r[9], r[10], r[11])
        for r in rows
    ]


async def batch_privacy(read: Read, tenant: str, since: str | None, until: str | None) -> list[BatchPrivacy]:
    cond, params = _window(since, until)
    rows = await read(
        "SELECT b.tenant, b.agent, b.seq, b.window_start, b.window_end, "
        "b.unit, b.epsilon, b.delta, b.rho "
        f"FROM batches b WHERE {cond} ORDER BY b.window_start_epoch, b.agent, b.seq",
        [tenant, *params],
    )
    return [BatchPrivacy(*r) for r in rows]
