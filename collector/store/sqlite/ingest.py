"""The ingest transaction on SQLite: dedupe, rate limit, quotas, rows, metering and chain events.

Runs inside the store's ``BEGIN IMMEDIATE`` transaction; raising :class:`Rollback` undoes everything
and hands its outcome back. Consumption is by conditional ``UPDATE``: the row count decides, so the
same statements stay race-free on a server database with several writers.
"""

from __future__ import annotations

import sqlite3

import msgspec

from collector.store import rules
from collector.store.group import group_order
from collector.store.records import (
    Accepted,
    BatchCommit,
    CommitOutcome,
    CommitRefused,
    Conflicting,
    Duplicate,
    Quota,
    Stale,
)
from collector.store.schema import BATCH_COLUMNS, QUOTA_FIELDS, batch_values
from collector.store.sqlite.governance import govern

__all__ = ["Rollback", "commit", "commit_group"]

_json = msgspec.json.Encoder()


class Rollback(Exception):  # control flow inside the store, never escapes it
    def __init__(self, outcome: CommitOutcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def _one(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
    rows = db.execute(sql, params).fetchall()
    return tuple(rows[0]) if rows else None


_QUOTA = ", ".join(f"q.{f}" for f in QUOTA_FIELDS)
_STATE = (
    f"SELECT k.state, t.state, k.retired_at, q.tenant IS NOT NULL, {_QUOTA} "
    "FROM keys k JOIN tenants t ON t.name = k.tenant LEFT JOIN quotas q ON q.tenant = t.name "
    "WHERE k.key_id = ?"
)


def _recheck(db: sqlite3.Connection, b: BatchCommit, quota: Quota) -> None:
    """Key and tenant state may have changed since the checks: a kill switch takes effect at once;
    the key's retirement and the tenant's limits are re-decided (:func:`rules.still_valid`)."""
    row = _one(db, _STATE, (b.key_id,))
    if row is None:
        refused: CommitRefused | Stale | None = rules.state_refusal(None)
    else:
        current = Quota(b.tenant, *row[4:]) if row[3] else Quota(b.tenant)  # type: ignore[arg-type]  # quota columns
        retired_at = None if row[2] is None else float(row[2])  # type: ignore[arg-type]  # REAL column
        refused = rules.still_valid((str(row[0]), str(row[1])), retired_at, b.created, quota, current)
    if refused is not None:
        raise Rollback(refused)


def _take_token(db: sqlite3.Connection, tenant: str, quota: Quota, now: float) -> None:
    rate = quota.batches_per_second
    if not rate:
        return
    burst, name = rules.bucket_burst(quota), rules.bucket_name(tenant)
    db.execute(
        "INSERT INTO buckets (name, tokens, updated) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (name, burst, now),
    )
    level = "MIN(?, tokens + MAX(0, ? - updated) * ?)"
    cur = db.execute(
        f"UPDATE buckets SET tokens = {level} - 1, updated = MAX(updated, ?) WHERE name = ? AND {level} >= 1",
        (burst, now, rate, now, name, burst, now, rate),
    )
    if cur.rowcount == 1:
        return
    row = _one(db, "SELECT tokens, updated FROM buckets WHERE name = ?", (name,))
    tokens = float(row[0]) if row else 0.0  # type: ignore[arg-type]  # REAL column
    updated = float(row[1]) if row else now  # type: ignore[arg-type]  # REAL column
    raise Rollback(CommitRefused("rate_limited", rules.rate_retry_after(quota, tokens, updated, now)))


def _consume_day(db: sqlite3.Connection, b: BatchCommit, quota: Quota, day: str, now: float) -> None:
    n = len(b.rows)
    db.execute(
        "INSERT INTO meter_day (tenant, day) VALUES (?, ?) ON CONFLICT (tenant, day) DO NOTHING",
        (b.tenant, day),
    )
    cond, params = "", []
    if quota.rows_per_day is not None:
        cond += " AND rows + ? <= ?"
        params += [n, quota.rows_per_day]
    if quota.bytes_per_day is not None:
        cond += " AND bytes + ? <= ?"
        params += [b.nbytes, quota.bytes_per_day]
    cur = db.execute(
        f"UPDATE meter_day SET batches = batches + 1, rows = rows + ?, bytes = bytes + ? "
        f"WHERE tenant = ? AND day = ?{cond}",
        (n, b.nbytes, b.tenant, day, *params),
    )
    if cur.rowcount == 1:
        return
    row = _one(db, "SELECT rows FROM meter_day WHERE tenant = ? AND day = ?", (b.tenant, day))
    used_rows = int(row[0]) if row else 0  # type: ignore[call-overload]  # INTEGER column
    reason = rules.day_quota_reason(quota, used_rows, n)
    raise Rollback(CommitRefused(reason, rules.seconds_to_next_day(now)))


def _consume_month(db: sqlite3.Connection, b: BatchCommit, quota: Quota, now: float) -> None:
    month, n = rules.month_of(now), len(b.rows)
    db.execute(
        "INSERT INTO meter_month (tenant, month) VALUES (?, ?) ON CONFLICT (tenant, month) DO NOTHING",
        (b.tenant, month),
    )
    cond, params = "", []
    if quota.rows_per_month is not None:
        cond, params = " AND rows + ? <= ?", [n, quota.rows_per_month]
    cur = db.execute(
        f"UPDATE meter_month SET rows = rows + ? WHERE tenant = ? AND month = ?{cond}",
        (n, b.tenant, month, *params),
    )
    if cur.rowcount != 1:
        raise Rollback(CommitRefused("quota_rows_month", rules.seconds_to_next_month(now)))


def _chain(db: sqlite3.Connection, b: BatchCommit, day: str) -> Accepted:
    """Record (never refuse) a gap before this batch, a fork at it, and what it resolves after it."""
    event = (
        "INSERT INTO chain_events (tenant, agent, seq, kind, day) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (tenant, agent, seq, kind) DO NOTHING"
    )
    key = (b.tenant, b.agent)
    before = _one(
        db, "SELECT digest FROM batches WHERE tenant = ? AND agent = ? AND seq = ?", (*key, b.seq - 1)
    )
    after = _one(db, "SELECT prev FROM batches WHERE tenant = ? AND agent = ? AND seq = ?", (*key, b.seq + 1))
    found = rules.chain_findings(
        b.seq,
        b.prev,
        b.digest,
        None if before is None else str(before[0]),
        None if after is None else str(after[0]),
    )
    if found.gap:
        db.execute(event, (*key, b.seq, "gap", day))
    if found.fork:
        db.execute(event, (*key, b.seq, "fork", day))
    if found.resolves_next_gap:
        db.execute(
            "UPDATE chain_events SET resolved = 1 "
            "WHERE tenant = ? AND agent = ? AND seq = ? AND kind = 'gap'",
            (*key, b.seq + 1),
        )
    if found.next_forks:
        db.execute(event, (*key, b.seq + 1, "fork", day))
    return Accepted(gap=found.gap, fork=found.fork)


def commit(db: sqlite3.Connection, b: BatchCommit, quota: Quota, now: float) -> CommitOutcome:
    day = rules.day_of(now)
    _recheck(db, b, quota)
    cur = db.execute(
        f"INSERT INTO batches ({BATCH_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (tenant, agent, seq) DO NOTHING",
        batch_values(b, now),
    )
    if cur.rowcount != 1:
        row = _one(
            db,
            "SELECT digest FROM batches WHERE tenant = ? AND agent = ? AND seq = ?",
            (b.tenant, b.agent, b.seq),
        )
        if row is None or row[0] != b.digest:
            raise Rollback(Conflicting())
        db.execute(
            "INSERT INTO meter_day (tenant, day, duplicates) VALUES (?, ?, 1) "
            "ON CONFLICT (tenant, day) DO UPDATE SET duplicates = meter_day.duplicates + 1",
            (b.tenant, day),
        )
        return Duplicate()
    batch_id = cur.lastrowid
    refused = govern(db, b)  # approved policy and privacy cap, before rate and quotas
    if refused is not None:
        raise Rollback(refused)
    _take_token(db, b.tenant, quota, now)
    _consume_day(db, b, quota, day, now)
    _consume_month(db, b, quota, now)
    db.executemany(
        "INSERT INTO batch_rows (batch_id, metric, stat, dims, value, mechanism, scale, level) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                batch_id,
                r.metric,
                r.stat,
                _json.encode(r.dims).decode(),
                r.value,
                r.noise.mechanism,
                r.noise.scale,
                r.level,
            )
            for r in b.rows
        ],
    )
    return _chain(db, b, day)


def commit_group(
    db: sqlite3.Connection, group: list[tuple[BatchCommit, Quota, float]]
) -> list[CommitOutcome | BaseException]:
    """A whole group in one call, made on aiosqlite's thread: ``BEGIN IMMEDIATE``, each batch in its
    own savepoint (a refusal or an error rolls back that batch only), ``COMMIT`` (the group's one
    durable flush). One trip to the thread and back per group instead of one per statement (about
    twenty per batch), which was half the collector's CPU per batch. The first statement failing
    (the database busy) or the commit failing raises: no batch of the group is stored."""
    results: list[CommitOutcome | BaseException] = [RuntimeError("not decided")] * len(group)
    db.execute("BEGIN IMMEDIATE")
    try:
        for i in group_order([(b.tenant, b.agent, b.seq) for b, _, _ in group]):
            batch, quota, now = group[i]
            db.execute("SAVEPOINT batch")
            try:
                results[i] = commit(db, batch, quota, now)
            except Rollback as stop:
                results[i] = stop.outcome
                db.execute("ROLLBACK TO batch")
            except sqlite3.Error as exc:  # this batch's statements only; the group goes on
                results[i] = exc
                db.execute("ROLLBACK TO batch")
            db.execute("RELEASE batch")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return results
