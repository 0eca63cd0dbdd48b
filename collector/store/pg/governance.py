"""Governance on PostgreSQL (issue 14): the same ingest step and record SQL as
:mod:`collector.store.sqlite.governance`, exact across replicas.

- the tenant's approval records are read ``FOR SHARE``: a revocation in flight waits for batches holding the
  lock, and a batch arriving during it waits and then re-reads (READ COMMITTED re-evaluates the
  ``WHERE`` on the new row), so a revoked digest admits nothing once the revocation has committed;
- ρ is added to the agent's and then the tenant's ``privacy_spend`` row (always in that order: no
  deadlock) by conditional ``UPDATE`` in integer units; the update takes the row lock and re-checks
  the condition against the newest committed value, so concurrent admissions on several replicas
  meet a cap exactly and never exceed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from collector.store import rules
from collector.store.records import BatchCommit, CommitRefused, PolicyRecord, PrivacyCap, SpendDay
from collector.store.vocab import PolicyState
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "Spend",
    "charge_each",
    "get_cap",
    "get_policy",
    "list_policies",
    "one_statement",
    "policy_batches",
    "put_cap",
    "put_policy",
    "spend",
    "spend_of",
    "spend_sql",
]

Connection = Any  # asyncpg ships no type information
_POLICY_COLS = "tenant, digest, state, note, approved, revoked"


def _policy(row: Any) -> PolicyRecord:
    return PolicyRecord(str(row[0]), str(row[1]), row[2], str(row[3]), float(row[4]), row[5])


async def get_cap(db: Connection, tenant: str, *, lock: bool = False) -> PrivacyCap | None:
    row = await db.fetchrow(
        "SELECT rho_per_day, per FROM privacy_caps WHERE tenant = $1" + (" FOR SHARE" if lock else ""),
        tenant,
    )
    return PrivacyCap(tenant, float(row[0]), row[1]) if row is not None else None


class Spend(msgspec.Struct, frozen=True):
    """What a batch charges to ``privacy_spend``: ``units`` to each target row (agent, limit)."""

    day: str
    units: int
    targets: list[tuple[str, int | None]]


def spend_of(
    b: BatchCommit, policies: Mapping[str, PolicyState], cap: PrivacyCap | None
) -> Spend | CommitRefused | None:
    """The refusal of a batch under an unapproved policy, or of one whose ρ cannot fit the cap even
    on a new day; else what it charges (None: nothing to count). ``policies`` and ``cap`` were read
    ``FOR SHARE`` earlier in the same transaction (:mod:`collector.store.pg.ingest`)."""
    refused = rules.policy_refusal(policies, b.policy)
    if refused is not None:
        return refused
    units = rules.spend_charge(b.rho, b.epsilon, b.delta, capped=cap is not None)
    if not isinstance(units, int):
        return units  # a refusal, or None: nothing to count
    targets = rules.spend_targets(b.agent, cap)
    if any(limit is not None and units > limit for _, limit in targets):
        return CommitRefused("privacy_cap")  # a new row starts at the units: no condition applies
    return Spend(rules.window_day(b.window_start), units, targets)


def one_statement(spend: Spend) -> bool:
    """Whether both rows can be charged by one upsert (not when they are the same row: agent '')."""
    return len({agent for agent, _ in spend.targets}) == len(spend.targets)


def spend_sql(tenant: str, spend: Spend, add: Callable[[object], str], gate: str | None = None) -> str:
    """Both ``privacy_spend`` rows charged by one multi-row upsert (``add`` makes a placeholder),
    returning a row per row charged: rows are inserted or locked in the order given (the agent's,
    then the tenant's), so concurrent batches take them in one order; each update re-checks its
    condition on the newest committed row (capped: the condition decides; uncapped: the sum
    saturates, it never overflows)."""
    t, d, u, most = add(tenant), add(spend.day), add(spend.units), add(rules.MAX_SPEND_UNITS)
    rows = [(add(agent), add(limit)) for agent, limit in spend.targets]
    values = ", ".join(f"({t}::text, {agent}::text, {d}::text, {u}::bigint)" for agent, _ in rows)
    if gate is not None:  # only when the CTE ``gate`` of the same statement returned a row
        values = f"SELECT * FROM (VALUES {values}) v WHERE EXISTS (SELECT 1 FROM {gate})"
    else:
        values = f"VALUES {values}"
    limit_of = "CASE privacy_spend.agent {} ELSE NULL END".format(
        " ".join(f"WHEN {agent} THEN {limit}::bigint" for agent, limit in rows)
    )
    return (
        f"INSERT INTO privacy_spend (tenant, agent, day, units) {values} "
        f"ON CONFLICT (tenant, agent, day) DO UPDATE SET units = LEAST(privacy_spend.units + {u}, {most}) "
        f"WHERE ({limit_of}) IS NULL OR privacy_spend.units + {u} <= ({limit_of}) RETURNING 1"
    )


async def charge_each(db: Connection, b: BatchCommit, spend: Spend) -> CommitRefused | None:
    """The rows one at a time (when :func:`one_statement` is False)."""
    return await _charge_each(db, b, spend.units, spend.targets)


async def _charge_each(
    db: Connection, b: BatchCommit, units: int, targets: list[tuple[str, int | None]]
) -> CommitRefused | None:
    day = rules.window_day(b.window_start)
    for agent, limit in targets:
        sql = (
            "INSERT INTO privacy_spend (tenant, agent, day, units) VALUES ($3, $4, $5, $1) "
            "ON CONFLICT (tenant, agent, day) DO UPDATE SET units = LEAST(privacy_spend.units + $1, $2)"
        )
        args: list[object] = [units, rules.MAX_SPEND_UNITS, b.tenant, agent, day]
        if limit is not None:
            sql += " WHERE privacy_spend.units + $1 <= $6"
            args.append(limit)
        if await db.fetchval(sql + " RETURNING 1", *args) is None:
            return CommitRefused("privacy_cap")
    return None


async def get_policy(db: Connection, tenant: str, digest: str) -> PolicyRecord | None:
    row = await db.fetchrow(
        f"SELECT {_POLICY_COLS} FROM policies WHERE tenant = $1 AND digest = $2", tenant, digest
    )
    return _policy(row) if row is not None else None


async def put_policy(db: Connection, p: PolicyRecord) -> None:
    await db.execute(
        f"INSERT INTO policies ({_POLICY_COLS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, digest) "
        "DO UPDATE SET state = excluded.state, note = excluded.note, approved = excluded.approved, "
        "revoked = excluded.revoked",
        p.tenant,
        p.digest,
        p.state,
        p.note,
        p.approved,
        p.revoked,
    )


async def list_policies(db: Connection, tenant: str | None) -> list[PolicyRecord]:
    where, params = ("WHERE tenant = $1", [tenant]) if tenant is not None else ("", [])
    rows = await db.fetch(
        f"SELECT {_POLICY_COLS} FROM policies {where} ORDER BY tenant, approved, digest", *params
    )
    return [_policy(r) for r in rows]


async def put_cap(db: Connection, cap: PrivacyCap) -> None:
    await db.execute(
        "INSERT INTO privacy_caps (tenant, rho_per_day, per) VALUES ($1, $2, $3) "
        "ON CONFLICT (tenant) DO UPDATE SET rho_per_day = excluded.rho_per_day, per = excluded.per",
        cap.tenant,
        cap.rho_per_day,
        cap.per,
    )


async def spend(db: Connection, tenant: str, since: str | None, until: str | None) -> list[SpendDay]:
    rows = await db.fetch(
        "SELECT agent, day, units FROM privacy_spend WHERE tenant = $1 AND day >= $2 AND day <= $3 "
        "ORDER BY day, agent",
        tenant,
        since or "",
        until or "9999",
    )
    return [
        SpendDay(tenant, str(r[0]) or None, str(r[1]), int(r[2]), int(r[2]) / rules.RHO_UNITS_PER_RHO)
        for r in rows
    ]


async def policy_batches(db: Connection, tenant: str, since: str | None, until: str | None) -> dict[str, int]:
    """Stored batches per declared policy digest, windows starting in [since, until) (RFC 3339)."""
    lo = parse_rfc3339(since) if since is not None else float("-inf")
    hi = parse_rfc3339(until) if until is not None else float("inf")
    rows = await db.fetch(
        "SELECT policy, COUNT(*) FROM batches WHERE tenant = $1 AND window_start_epoch >= $2 "
        "AND window_start_epoch < $3 GROUP BY policy ORDER BY policy",
        tenant,
        lo,
        hi,
    )
    return {str(r[0]): int(r[1]) for r in rows}
