"""Certified agents on SQLite (issue 14 part 3): the SQL of the ``certificates`` table (schema v6) and
the batch reads the certificate status needs. The decisions are :mod:`collector.certs`'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiosqlite

from collector.store.records import CertDay, CertificateRecord
from collector.store.schema import CERT_COLUMNS as COLUMNS
from collector.store.schema import CERT_NEWEST as NEWEST

Days = dict[tuple[str, str], list[CertDay]]  # by (tenant, agent)

__all__ = ["agent_days", "insert", "records"]

#: The UTC day of a batch's window start as :func:`collector.certs.period_key` finds it (int() of
#: the epoch seconds, then floor division; SQLite's ``/`` truncates toward zero).
_DAY_OF = (
    "(CAST(b.window_start_epoch AS INTEGER) / 86400 - (CAST(b.window_start_epoch AS INTEGER) % 86400 < 0))"
)

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


async def agent_days(read: Read, tenant: str | None, lookback: float) -> Days:
    """Per (tenant, agent) with a certificate: its batches received since its newest certificate was
    issued or with windows from ``lookback`` before, summed per UTC day of their windows. One grouped
    query for the tenant (or all), however many agents and batches: a valid certificate's check
    reads up to its whole validity of batches, and the rows would be one per batch."""
    where, params = ("AND c.tenant = ?", (tenant,)) if tenant is not None else ("", ())
    rows = await read(
        f"SELECT c.tenant, c.agent, {_DAY_OF} AS day, MAX(b.received >= c.issued), "
        "COALESCE(SUM(b.rho), 0), COALESCE(SUM(b.epsilon), 0), "
        "MIN(CASE WHEN b.received >= c.issued AND b.policy <> c.policy_digest THEN b.policy END) "
        f"FROM certificates c JOIN batches b ON b.tenant = c.tenant AND b.agent = c.agent "
        f"AND (b.received >= c.issued OR b.window_start_epoch >= c.issued - ?) WHERE {NEWEST} {where} "
        "GROUP BY c.tenant, c.agent, day ORDER BY c.tenant, c.agent, day",
        (lookback, *params),
    )
    out: Days = {}
    for r in rows:
        day = CertDay(int(r[2]), bool(r[3]), float(r[4]), float(r[5]), None if r[6] is None else str(r[6]))
        out.setdefault((str(r[0]), str(r[1])), []).append(day)
    return out
