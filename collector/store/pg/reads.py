"""Report reads of the PostgreSQL store: usage per tenant and day, released rows, declared privacy.

The same queries and results as :mod:`collector.store.sqlite.reads`, in PostgreSQL's ``$n`` parameters;
``Fetch`` runs one statement (the store retries it and wraps outages).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from collector.store.records import BatchPrivacy, StoredRow, UsageDay, usage_days
from hushmetric.timefmt import parse_rfc3339

__all__ = ["Fetch", "batch_privacy", "released_rows", "usage"]

Fetch = Callable[..., Awaitable[list[Any]]]  # (sql, *args) -> records
_dims = msgspec.json.Decoder(dict[str, str])


async def usage(fetch: Fetch, tenant: str | None, since: str | None, until: str | None) -> list[UsageDay]:
    where: list[str] = ["TRUE"]
    params: list[object] = []
    for column, op, value in (("tenant", "=", tenant), ("day", ">=", since), ("day", "<=", until)):
        if value is not None:
            params.append(value)
            where.append(f"{column} {op} ${len(params)}")
    cond = " AND ".join(where)
    return usage_days(
        await fetch(
            f"SELECT tenant, day, batches, rows, bytes, duplicates FROM meter_day WHERE {cond}", *params
        ),
        await fetch(f"SELECT tenant, day, reason, count FROM refusals WHERE {cond}", *params),
        await fetch(
            "SELECT tenant, day, COUNT(*) FROM chain_events "
            f"WHERE resolved = 0 AND {cond} GROUP BY tenant, day",
            *params,
        ),
    )


def _window(tenant: str, since: str | None, until: str | None) -> tuple[str, list[object]]:
    cond = "b.tenant = $1"
    params: list[object] = [tenant]
    if since is not None:
        params.append(parse_rfc3339(since))
        cond += f" AND b.window_start_epoch >= ${len(params)}"
    if until is not None:
        params.append(parse_rfc3339(until))
        cond += f" AND b.window_start_epoch < ${len(params)}"
    return cond, params


async def released_rows(fetch: Fetch, tenant: str, since: str | None, until: str | None) -> list[StoredRow]:
    cond, params = _window(tenant, since, until)
    rows = await fetch(
        "SELECT b.tenant, b.agent, b.seq, b.window_start, b.window_end, r.metric, r.stat, r.dims, "
        "r.value, r.mechanism, r.scale, r.level FROM batch_rows r JOIN batches b ON b.id = r.batch_id "
        f"WHERE {cond} ORDER BY b.window_start_epoch, b.agent, b.seq, r.ord",
        *params,
    )
    return [
        StoredRow(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6], _dims.decode(r[7]), r[8], r[9], r[10], r[11])
        for r in rows
    ]


async def batch_privacy(
    fetch: Fetch, tenant: str, since: str | None, until: str | None
) -> list[BatchPrivacy]:
    cond, params = _window(tenant, since, until)
    rows = await fetch(
        "SELECT b.tenant, b.agent, b.seq, b.window_start, b.window_end, b.unit, b.epsilon, b.delta, "
        f"b.rho FROM batches b WHERE {cond} ORDER BY b.window_start_epoch, b.agent, b.seq",
        *params,
    )
    return [BatchPrivacy(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows]
