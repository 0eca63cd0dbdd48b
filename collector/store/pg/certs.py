"""Certified agents on PostgreSQL (issue 14 part 3): the same SQL as :mod:`collector.store.sqlite.certs`
in asyncpg's dialect. The decisions are :mod:`collector.certs`'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from collector.store.records import CertDay, CertificateRecord
from collector.store.schema import CERT_COLUMNS as COLUMNS
from collector.store.schema import CERT_NEWEST as NEWEST

Days = dict[tuple[str, str], list[CertDay]]  # by (tenant, agent)

__all__ = ["agent_days", "insert", "records"]

#: The UTC day of a batch's window start as :func:`collector.certs.period_key` finds it.
_DAY_OF = "floor(trunc(b.window_start_epoch) / 86400)::bigint"

Connection = Any  # asyncpg ships no type information
Fetch = Callable[..., Awaitable[list[Any]]]


async def insert(db: Connection, r: CertificateRecord) -> bool:
    """Store ``r`` unless the same statement is stored already; True when it was new."""
    done = await db.fetchval(
        f"INSERT INTO certificates ({COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
        "ON CONFLICT (tenant, agent, digest) DO NOTHING RETURNING 1",
        r.tenant, r.agent, r.digest, r.key_id, r.profile, r.policy_digest, r.issued, r.expires, r.measure,
        r.budget_period, r.cap, r.received, r.envelope,
    )  # fmt: skip
    return done is not None


async def records(fetch: Fetch, tenant: str | None) -> list[CertificateRecord]:
    where, params = ("WHERE tenant = $1", [tenant]) if tenant is not None else ("", [])
    rows = await fetch(f"SELECT {COLUMNS} FROM certificates {where} ORDER BY tenant, agent, issued", *params)
    return [
        CertificateRecord(
            tenant=r[0],
            agent=r[1],
            digest=r[2],
            key_id=r[3],
            profile=r[4],
            policy_digest=r[5],
            issued=float(r[6]),
            expires=float(r[7]),
            measure=r[8],
            budget_period=r[9],
            cap=float(r[10]),
            received=float(r[11]),
            envelope=bytes(r[12]),
        )
        for r in rows
    ]


async def agent_days(fetch: Fetch, tenant: str | None, lookback: float) -> Days:
    """:func:`collector.store.sqlite.certs.agent_days` in asyncpg's dialect: one grouped query."""
    where, params = ("AND c.tenant = $2", [tenant]) if tenant is not None else ("", [])
    rows = await fetch(
        f"SELECT c.tenant, c.agent, {_DAY_OF} AS day, bool_or(b.received >= c.issued), "
        "COALESCE(SUM(b.rho), 0), COALESCE(SUM(b.epsilon), 0), "
        "MIN(CASE WHEN b.received >= c.issued AND b.policy <> c.policy_digest THEN b.policy END "
        'COLLATE "C") '
        f"FROM certificates c JOIN batches b ON b.tenant = c.tenant AND b.agent = c.agent "
        f"AND (b.received >= c.issued OR b.window_start_epoch >= c.issued - $1) WHERE {NEWEST} {where} "
        "GROUP BY c.tenant, c.agent, day ORDER BY c.tenant, c.agent, day",
        lookback,
        *params,
    )
    out: Days = {}
    for r in rows:
        day = CertDay(int(r[2]), bool(r[3]), float(r[4]), float(r[5]), None if r[6] is None else str(r[6]))
        out.setdefault((str(r[0]), str(r[1])), []).append(day)
    return out
