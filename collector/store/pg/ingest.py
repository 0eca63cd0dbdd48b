"""The ingest transaction on PostgreSQL: dedupe, rate limit, quotas, rows, metering and chain events.

The same steps, in the same order, as :mod:`collector.store.sqlite.ingest`, run inside one READ COMMITTED
transaction; raising :class:`Rollback` undoes everything and hands its outcome back. Why it stays
exact when several collector processes write at once:

- dedupe is the unique key on ``batches (tenant, agent, seq)``: ``INSERT … ON CONFLICT DO NOTHING``
  waits for a concurrent insert of the same key and then either inserts (the other rolled back) or
  does nothing (the other committed), so one batch is stored once whichever replica wins;
- the token bucket and the day/month meters are consumed by conditional ``UPDATE``s. The update
  takes the row lock, and PostgreSQL re-evaluates the ``WHERE`` against the newest committed row
  after waiting for it, so no quota is ever exceeded and no token is spent twice;
- every accepted batch of a tenant updates that tenant's ``meter_day`` row, so its chain check runs
  after the previous writer of the same tenant committed and sees its batch (a gap recorded by one
  replica is resolved by the other).
"""

from __future__ import annotations

from typing import Any

import msgspec

from collector.store import rules
from collector.store.pg.governance import govern
from collector.store.records import (
    Accepted,
    BatchCommit,
    CommitOutcome,
    CommitRefused,
    Conflicting,
    Duplicate,
    Quota,
)
from collector.store.schema import BATCH_COLUMNS, batch_values

__all__ = ["Rollback", "affected", "commit"]

_json = msgspec.json.Encoder()
Connection = Any  # asyncpg ships no type information


class Rollback(Exception):  # control flow inside the store, never escapes it
    def __init__(self, outcome: CommitOutcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def affected(status: str) -> int:
    """Rows a command touched, from its status tag (``INSERT 0 1``, ``UPDATE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


async def _recheck(db: Connection, b: BatchCommit) -> None:
    """Key and tenant state may have changed since the checks: a kill switch takes effect at once.

    ``FOR SHARE`` locks both rows until this transaction ends. Under READ COMMITTED a plain SELECT
    would read the last committed state and let the batch commit after a concurrent revoke or
    suspend committed; with the lock, the revoke waits for batches in flight, and a batch that
    arrives during a revoke waits for it and then reads the new state. Batches share the lock."""
    row = await db.fetchrow(
        "SELECT k.state, t.state FROM keys k JOIN tenants t ON t.name = k.tenant WHERE k.key_id = $1 "
        "FOR SHARE OF k, t",
        b.key_id,
    )
    refused = rules.state_refusal(None if row is None else (str(row[0]), str(row[1])))
    if refused is not None:
        raise Rollback(refused)


async def _take_token(db: Connection, tenant: str, quota: Quota, now: float) -> None:
    """One token from the tenant's bucket, by one upsert: a new bucket starts full (``burst`` >= 1,
    so the first token is always there); an existing one is refilled and debited only if a whole
    token is available, with its row locked and the condition re-checked on the newest version."""
    rate = quota.batches_per_second
    if not rate:
        return
    burst, name = rules.bucket_burst(quota), rules.bucket_name(tenant)
    level = "LEAST($2::float8, buckets.tokens + GREATEST(0, $3::float8 - buckets.updated) * $4::float8)"
    taken = await db.fetchval(
        "INSERT INTO buckets (name, tokens, updated) VALUES ($1, $2::float8 - 1, $3) "
        f"ON CONFLICT (name) DO UPDATE SET tokens = {level} - 1, updated = GREATEST(buckets.updated, $3) "
        f"WHERE {level} >= 1 RETURNING 1",
        name,
        burst,
        now,
        float(rate),
    )
    if taken is not None:
        return
    row = await db.fetchrow("SELECT tokens, updated FROM buckets WHERE name = $1", name)
    tokens = float(row[0]) if row else 0.0
    updated = float(row[1]) if row else now
    raise Rollback(CommitRefused("rate_limited", rules.rate_retry_after(quota, tokens, updated, now)))


async def _consume_day(db: Connection, b: BatchCommit, quota: Quota, day: str, now: float) -> None:
    """Batches, rows and bytes of the day, by one conditional upsert (the row count decides)."""
    n = len(b.rows)
    if rules.fits_day(quota, n, b.nbytes):  # else not even an empty day could take it
        params: list[object] = [b.tenant, day, n, b.nbytes]
        cond = ""
        if quota.rows_per_day is not None:
            params.append(quota.rows_per_day)
            cond += f" AND meter_day.rows + $3 <= ${len(params)}"
        if quota.bytes_per_day is not None:
            params.append(quota.bytes_per_day)
            cond += f" AND meter_day.bytes + $4 <= ${len(params)}"
        done = await db.fetchval(
            "INSERT INTO meter_day (tenant, day, batches, rows, bytes) VALUES ($1, $2, 1, $3, $4) "
            "ON CONFLICT (tenant, day) DO UPDATE SET batches = meter_day.batches + 1, "
            f"rows = meter_day.rows + $3, bytes = meter_day.bytes + $4 WHERE TRUE{cond} RETURNING 1",
            *params,
        )
        if done is not None:
            return
    used = await db.fetchval("SELECT rows FROM meter_day WHERE tenant = $1 AND day = $2", b.tenant, day)
    reason = rules.day_quota_reason(quota, int(used or 0), n)
    raise Rollback(CommitRefused(reason, rules.seconds_to_next_day(now)))


async def _consume_month(db: Connection, b: BatchCommit, quota: Quota, now: float) -> None:
    month, n = rules.month_of(now), len(b.rows)
    limit = quota.rows_per_month
    if limit is None or n <= limit:
        done = await db.fetchval(
            "INSERT INTO meter_month (tenant, month, rows) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant, month) DO UPDATE SET rows = meter_month.rows + $3 "
            "WHERE $4::bigint IS NULL OR meter_month.rows + $3 <= $4::bigint RETURNING 1",
            b.tenant,
            month,
            n,
            limit,
        )
        if done is not None:
            return
    raise Rollback(CommitRefused("quota_rows_month", rules.seconds_to_next_month(now)))


async def _chain(db: Connection, b: BatchCommit, day: str) -> Accepted:
    """Record (never refuse) a gap before this batch, a fork at it, and what it resolves after it."""
    event = (
        "INSERT INTO chain_events (tenant, agent, seq, kind, day) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (tenant, agent, seq, kind) DO NOTHING"
    )
    near = {
        int(r[0]): (str(r[1]), str(r[2]))
        for r in await db.fetch(
            "SELECT seq, digest, prev FROM batches WHERE tenant = $1 AND agent = $2 AND seq IN ($3, $4)",
            b.tenant,
            b.agent,
            b.seq - 1,
            b.seq + 1,
        )
    }
    before, after = near.get(b.seq - 1), near.get(b.seq + 1)
    found = rules.chain_findings(b.seq, b.prev, b.digest, before and before[0], after and after[1])
    if found.gap:
        await db.execute(event, b.tenant, b.agent, b.seq, "gap", day)
    if found.fork:
        await db.execute(event, b.tenant, b.agent, b.seq, "fork", day)
    if found.resolves_next_gap:
        await db.execute(
            "UPDATE chain_events SET resolved = 1 "
            "WHERE tenant = $1 AND agent = $2 AND seq = $3 AND kind = 'gap'",
            b.tenant,
            b.agent,
            b.seq + 1,
        )
    if found.next_forks:
        await db.execute(event, b.tenant, b.agent, b.seq + 1, "fork", day)
    return Accepted(gap=found.gap, fork=found.fork)


async def _store_rows(db: Connection, batch_id: int, b: BatchCommit) -> None:
    if not b.rows:
        return
    await db.execute(
        "INSERT INTO batch_rows (batch_id, ord, metric, stat, dims, value, mechanism, scale, level) "
        "SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::float8[], "
        "$7::text[], $8::float8[], $9::text[])",
        batch_id,
        list(range(len(b.rows))),
        [r.metric for r in b.rows],
        [r.stat for r in b.rows],
        [_json.encode(r.dims).decode() for r in b.rows],
        [float(r.value) for r in b.rows],
        [r.noise.mechanism for r in b.rows],
        [float(r.noise.scale) for r in b.rows],
        [r.level for r in b.rows],
    )


async def commit(db: Connection, b: BatchCommit, quota: Quota, now: float) -> CommitOutcome:
    day = rules.day_of(now)
    await _recheck(db, b)
    batch_id = await db.fetchval(
        f"INSERT INTO batches ({BATCH_COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) "
        "ON CONFLICT (tenant, agent, seq) DO NOTHING RETURNING id",
        *batch_values(b, now),
    )
    if batch_id is None:
        digest = await db.fetchval(
            "SELECT digest FROM batches WHERE tenant = $1 AND agent = $2 AND seq = $3",
            b.tenant,
            b.agent,
            b.seq,
        )
        if digest != b.digest:
            raise Rollback(Conflicting())
        await db.execute(
            "INSERT INTO meter_day (tenant, day, duplicates) VALUES ($1, $2, 1) "
            "ON CONFLICT (tenant, day) DO UPDATE SET duplicates = meter_day.duplicates + 1",
            b.tenant,
            day,
        )
        return Duplicate()
    await _store_rows(db, int(batch_id), b)  # before the tenant's hot rows: their locks are held shorter
    refused = await govern(db, b)  # approved policy and privacy cap, before rate and quotas
    if refused is not None:
        raise Rollback(refused)
    await _take_token(db, b.tenant, quota, now)
    await _consume_day(db, b, quota, day, now)
    await _consume_month(db, b, quota, now)
    return await _chain(db, b, day)
