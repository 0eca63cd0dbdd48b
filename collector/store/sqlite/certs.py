"""Certified agents on SQLite (issue 14 part 3): the SQL of the ``certificates`` table (schema v6) and
the batch reads the certificate status needs. The decisions are :mod:`collector.certs`'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiosqlite

from collector.store.records import CertBatch, CertificateRecord
from collector.store.schema import CERT_COLUMNS as COLUMNS

__all__ = ["agent_batches", "insert", "records"]

Read = Callable[[str, Iterable[Any]], Awaitable[list[Any]]]


def _values(r: CertificateRecord) -> tuple[object, ...]:
    return (
        r.tenant, r.agent, r.digest, r.key_id, r.profile, r.policy_digest, r.issued, r.expires, r.measure,
        r.budget_period, r.cap, r.received, r.envelope,
    )  # fmt: skip


def _record(row: Any) -> CertificateRecord:
    return CertificateRecord(
        tenant=str(row[0]), agent=str(row[1]), digest=str(row[2]), key_id=str(row[3]), profile=str(row[4]),
        policy_digest=str(row[5]), issued=float(row[6]), expires=float(row[7]), measure=str(row[8]),
        budget_period=str(row[9]), cap=float(row[10]), received=float(row[11]), envelope=bytes(row[12]),
    )  # fmt: skip


async def insert(db: aiosqlite.Connection, rec: CertificateRecord) -> bool:
    """Store ``rec`` unless the same statement is stored already; True when it was new."""
    cur = await db.execute(
        f"INSERT INTO certificates ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (tenant, agent, digest) DO NOTHING",
        _values(rec),
    )
    return cur.rowcount == 1


async def records(read: Read, tenant: str | None) -> list[CertificateRecord]:
    where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
    rows = await read(f"SELECT {COLUMNS} FROM certificates {where} ORDER BY tenant, agent, issued", params)
    return [_record(r) for r in rows]


async def agent_batches(read: Read, rec: CertificateRecord, lookback: float) -> list[CertBatch]:
    """The agent's batches received since ``rec`` was issued or with windows from ``lookback`` before."""
    rows = await read(
        "SELECT seq, policy, window_start_epoch, received, rho, epsilon FROM batches "
        "WHERE tenant = ? AND agent = ? AND (received >= ? OR window_start_epoch >= ?) ORDER BY seq",
        (rec.tenant, rec.agent, rec.issued, rec.issued - lookback),
    )
    return [CertBatch(int(r[0]), str(r[1]), float(r[2]), float(r[3]), r[4], r[5]) for r in rows]
