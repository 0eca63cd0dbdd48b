"""Governance on SQLite (issue 14): the approved-policy and privacy-cap step of the ingest transaction,
and the SQL of the policy and cap records. The decisions are :mod:`collector.store.rules`'.

The ingest step runs inside the store's ``BEGIN IMMEDIATE`` transaction, after the dedupe insert and
before rate and quotas; the ρ a batch declares is added to the agent's and the tenant's day by
conditional ``UPDATE`` in integer units, so a cap is met exactly, never exceeded.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import aiosqlite

from collector.store import rules
from collector.store.records import BatchCommit, CommitRefused, PolicyRecord, PrivacyCap, SpendDay
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "get_cap",
    "get_policy",
    "govern",
    "list_policies",
    "policy_batches",
    "put_cap",
    "put_policy",
    "spend",
]

_POLICY_COLS = "tenant, digest, state, note, approved, revoked"


def _policy(row: Any) -> PolicyRecord:
    return PolicyRecord(str(row[0]), str(row[1]), row[2], str(row[3]), float(row[4]), row[5])


async def get_cap(db: aiosqlite.Connection, tenant: str) -> PrivacyCap | None:
    rows = list(
        await db.execute_fetchall("SELECT rho_per_day, per FROM privacy_caps WHERE tenant = ?", (tenant,))
    )
    return PrivacyCap(tenant, float(rows[0][0]), rows[0][1]) if rows else None


def govern(db: sqlite3.Connection, b: BatchCommit) -> CommitRefused | None:
    """The refusal of a batch under an unapproved policy, or of one whose ρ does not fit the cap;
    else None, the batch's ρ charged (the caller rolls back on a refusal). Synchronous: it runs on
    aiosqlite's thread with the rest of the ingest group (:mod:`collector.store.sqlite.ingest`)."""
    policies = {
        str(r[0]): r[1]
        for r in db.execute("SELECT digest, state FROM policies WHERE tenant = ?", (b.tenant,)).fetchall()
    }
    refused = rules.policy_refusal(policies, b.policy)
    if refused is not None:
        return refused
    rows = db.execute("SELECT rho_per_day, per FROM privacy_caps WHERE tenant = ?", (b.tenant,)).fetchall()
    cap = PrivacyCap(b.tenant, float(rows[0][0]), rows[0][1]) if rows else None
    units = rules.spend_charge(b.rho, b.epsilon, b.delta, capped=cap is not None)
    if not isinstance(units, int):
        return units  # a refusal, or None: nothing to count
    day = rules.window_day(b.window_start)
    for agent, limit in rules.spend_targets(b.agent, cap):
        db.execute(
            "INSERT INTO privacy_spend (tenant, agent, day) VALUES (?, ?, ?) "
            "ON CONFLICT (tenant, agent, day) DO NOTHING",
            (b.tenant, agent, day),
        )
        # capped: the condition decides; uncapped: the sum saturates (it never overflows)
        cond, params = ("", ()) if limit is None else (" AND units + ? <= ?", (units, limit))
        cur = db.execute(
            "UPDATE privacy_spend SET units = MIN(units + ?, ?) "
            f"WHERE tenant = ? AND agent = ? AND day = ?{cond}",
            (units, rules.MAX_SPEND_UNITS, b.tenant, agent, day, *params),
        )
        if cur.rowcount != 1:
            return CommitRefused("privacy_cap")
    return None


async def get_policy(db: aiosqlite.Connection, tenant: str, digest: str) -> PolicyRecord | None:
    rows = list(
        await db.execute_fetchall(
            f"SELECT {_POLICY_COLS} FROM policies WHERE tenant = ? AND digest = ?", (tenant, digest)
        )
    )
    return _policy(rows[0]) if rows else None


async def put_policy(db: aiosqlite.Connection, p: PolicyRecord) -> None:
    await db.execute(
        f"INSERT INTO policies ({_POLICY_COLS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, digest) "
        "DO UPDATE SET state = excluded.state, note = excluded.note, approved = excluded.approved, "
        "revoked = excluded.revoked",
        (p.tenant, p.digest, p.state, p.note, p.approved, p.revoked),
    )


async def list_policies(db: aiosqlite.Connection, tenant: str | None) -> list[PolicyRecord]:
    where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
    rows = await db.execute_fetchall(
        f"SELECT {_POLICY_COLS} FROM policies {where} ORDER BY tenant, approved, digest", params
    )
    return [_policy(r) for r in rows]


async def put_cap(db: aiosqlite.Connection, cap: PrivacyCap) -> None:
    await db.execute(
        "INSERT INTO privacy_caps (tenant, rho_per_day, per) VALUES (?, ?, ?) "
        "ON CONFLICT (tenant) DO UPDATE SET rho_per_day = excluded.rho_per_day, per = excluded.per",
        (cap.tenant, cap.rho_per_day, cap.per),
    )


async def spend(
    db: aiosqlite.Connection, tenant: str, since: str | None, until: str | None
) -> list[SpendDay]:
    rows = await db.execute_fetchall(
        "SELECT agent, day, units FROM privacy_spend WHERE tenant = ? AND day >= ? AND day <= ? "
        "ORDER BY day, agent",
        (tenant, since or "", until or "9999"),
    )
    return [
        SpendDay(tenant, str(r[0]) or None, str(r[1]), int(r[2]), int(r[2]) / rules.RHO_UNITS_PER_RHO)
        for r in rows
    ]


async def policy_batches(
    db: aiosqlite.Connection, tenant: str, since: str | None, until: str | None
) -> dict[str, int]:
    """Stored batches per declared policy digest, windows starting in [since, until) (RFC 3339)."""
    lo = parse_rfc3339(since) if since is not None else float("-inf")
    hi = parse_rfc3339(until) if until is not None else float("inf")
    rows = await db.execute_fetchall(
        "SELECT policy, COUNT(*) FROM batches WHERE tenant = ? AND window_start_epoch >= ? "
        "AND window_start_epoch < ? GROUP BY policy ORDER BY policy",
        (tenant, lo, hi),
    )
    return {str(r[0]): int(r[1]) for r in rows}
