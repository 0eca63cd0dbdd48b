"""Certified agents on PostgreSQL (issue 14 part 3): the same SQL as :mod:`collector.store.sqlite.certs`
in asyncpg's dialect. The decisions are :mod:`collector.certs`'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from collector.store.records import CertBatch, CertificateRecord
from collector.store.schema import CERT_COLUMNS as COLUMNS

__all__ = ["agent_batches", "insert", "records"]

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


async def agent_batches(fetch: Fetch, rec: CertificateRecord, lookback: float) -> list[CertBatch]:
    """The agent's batches received since ``rec`` was issued or with windows from ``lookback`` before."""
    rows = await fetch(
        "SELECT seq, policy, window_start_epoch, received, rho, epsilon FROM batches "
        "WHERE tenant = $1 AND agent = $2 AND (received >= $3 OR window_start_epoch >= $4) ORDER BY seq",
        rec.tenant,
        rec.agent,
        rec.issued,
        rec.issued - lookback,
    )
    return [CertBatch(int(r[0]), str(r[1]), float(r[2]), float(r[3]), r[4], r[5]) for r in rows]
