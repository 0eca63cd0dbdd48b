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
  replica is resolved by the other);
- the state a group's batches are checked against (key, tenant, limits, approvals, cap) is read
  once per group ``FOR SHARE``, so it cannot change until the group commits.

Round trips are what a batch costs here (see docs/operations.md), so statements that can go
together do: an accepted batch takes three, two when its tenant's day row is already held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from collector.store import rules
from collector.store.pg import governance as gov
from collector.store.records import (
    Accepted,
    BatchCommit,
    CommitOutcome,
    CommitRefused,
    Conflicting,
    Duplicate,
    PrivacyCap,
    Quota,
    Stale,
)
from collector.store.schema import BATCH_COLUMNS, QUOTA_FIELDS, batch_values
from collector.store.vocab import PolicyState

__all__ = ["Rollback", "affected", "commit", "meter_statement", "read_states", "state_of"]

_json = msgspec.json.Encoder()
Connection = Any  # asyncpg ships no type information
Record = Any


class Rollback(Exception):  # control flow inside the store, never escapes it
    def __init__(self, outcome: CommitOutcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def affected(status: str) -> int:
    """Rows a command touched, from its status tag (``INSERT 0 1``, ``UPDATE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


class _State(msgspec.Struct, frozen=True):
    """What the ingest transaction reads first, in one statement: the key's and tenant's state (the
    kill switch), the key's retirement and the tenant's limits (the checks made on cached records,
    re-decided), the tenant's policy approvals and its privacy cap (governance)."""

    refused: CommitRefused | Stale | None
    policies: dict[str, PolicyState]
    cap: PrivacyCap | None


_QUOTA = ", ".join(f"q.{f}" for f in QUOTA_FIELDS)
_STATES = (
    f"SELECT k.key_id, k.state, t.state, k.retired_at, q.tenant IS NOT NULL, {_QUOTA}, "
    "(SELECT array_agg(p.digest || ' ' || p.state) "
    "FROM (SELECT digest, state FROM policies WHERE tenant = t.name FOR SHARE) p), "
    "c.rho_per_day, c.per "
    "FROM keys k JOIN tenants t ON t.name = k.tenant "
    "LEFT JOIN quotas q ON q.tenant = t.name "
    "LEFT JOIN LATERAL (SELECT rho_per_day, per FROM privacy_caps WHERE tenant = t.name FOR SHARE) c ON TRUE "
    "WHERE k.key_id = ANY($1::text[]) ORDER BY k.tenant, k.key_id FOR SHARE OF k, t"
)


async def read_states(db: Connection, key_ids: Iterable[str]) -> dict[str, Record]:
    """The state rows of a group's keys, read once at the start of its transaction.

    Key and tenant state may have changed since the checks: a kill switch takes effect at once.
    ``FOR SHARE`` locks the key, tenant, approval and cap rows until the transaction ends. Under
    READ COMMITTED a plain SELECT would read the last committed state and let a batch commit after
    a concurrent revoke, suspend or policy revocation committed; with the lock, the change waits
    for the groups in flight, and a group that starts during one waits for it and then reads the
    new state. Groups share the locks, so the rows cannot change until this group commits: one
    read serves every batch in it (one round trip per group for what were four statements per
    batch). The locks are taken before any savepoint, so a batch rolled back keeps them."""
    rows = await db.fetch(_STATES, sorted(set(key_ids)))
    return {str(r[0]): r for r in rows}


def state_of(row: Record | None, b: BatchCommit, quota: Quota) -> _State:
    """What the transaction read for ``b``'s key (None: the key is gone), decided."""
    if row is None:
        return _State(rules.state_refusal(None), {}, None)
    n = len(QUOTA_FIELDS)
    current = Quota(b.tenant, *row[5 : 5 + n]) if row[4] else Quota(b.tenant)
    refused = rules.still_valid((str(row[1]), str(row[2])), row[3], b.created, quota, current)
    policies: dict[str, PolicyState] = {}
    for pair in row[5 + n] or []:
        digest, _, state = str(pair).partition(" ")
        policies[digest] = "approved" if state == "approved" else "revoked"
    rho, per = row[6 + n], row[7 + n]
    cap = PrivacyCap(b.tenant, float(rho), per) if rho is not None else None
    return _State(refused, policies, cap)


class _Params:
    """Positional parameters of one statement being built: ``add`` returns the placeholder."""

    def __init__(self, values: list[object] | None = None) -> None:
        self.values: list[object] = values or []

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def source(values: str, gate: str | None) -> str:
    """The row an upsert inserts: ``VALUES (…)``, or with ``gate`` (the name of a CTE in the same
    statement) only when that CTE returned a row (the batch was inserted, not a duplicate)."""
    return f"VALUES ({values})" if gate is None else f"SELECT {values} WHERE EXISTS (SELECT 1 FROM {gate})"


def _rate_part(p: _Params, tenant: str, quota: Quota, now: float, gate: str | None) -> str:
    """A token from the bucket: a new bucket starts full (``burst`` >= 1, so the first token is always
    there); an existing one is refilled and debited only if a whole token is available."""
    name, burst, at = p.add(rules.bucket_name(tenant)), p.add(rules.bucket_burst(quota)), p.add(now)
    rate = p.add(float(quota.batches_per_second or 0))
    level = (
        f"LEAST({burst}::float8, buckets.tokens "
        f"+ GREATEST(0, {at}::float8 - buckets.updated) * {rate}::float8)"
    )
    return (
        f"INSERT INTO buckets (name, tokens, updated) {source(f'{name}, {burst}::float8 - 1, {at}', gate)} "
        f"ON CONFLICT (name) DO UPDATE SET tokens = {level} - 1, "
        f"updated = GREATEST(buckets.updated, {at}) WHERE {level} >= 1 RETURNING 1"
    )


def _day_part(p: _Params, b: BatchCommit, quota: Quota, day: str, gate: str | None) -> str:
    """Batches, rows and bytes of the day (the row count decides)."""
    tenant, d, rows, nbytes = p.add(b.tenant), p.add(day), p.add(len(b.rows)), p.add(b.nbytes)
    cond = ""
    if quota.rows_per_day is not None:
        cond += f" AND meter_day.rows + {rows} <= {p.add(quota.rows_per_day)}"
    if quota.bytes_per_day is not None:
        cond += f" AND meter_day.bytes + {nbytes} <= {p.add(quota.bytes_per_day)}"
    return (
        "INSERT INTO meter_day (tenant, day, batches, rows, bytes) "
        f"{source(f'{tenant}, {d}, 1, {rows}, {nbytes}', gate)} ON CONFLICT (tenant, day) DO UPDATE SET "
        f"batches = meter_day.batches + 1, rows = meter_day.rows + {rows}, "
        f"bytes = meter_day.bytes + {nbytes} WHERE TRUE{cond} RETURNING 1"
    )


def _month_part(p: _Params, b: BatchCommit, quota: Quota, month: str, gate: str | None) -> str:
    limit, rows = quota.rows_per_month, p.add(len(b.rows))
    cond = "" if limit is None else f" WHERE meter_month.rows + {rows} <= {p.add(limit)}"
    values = f"{p.add(b.tenant)}, {p.add(month)}, {rows}"
    return (
        f"INSERT INTO meter_month (tenant, month, rows) {source(values, gate)} "
        f"ON CONFLICT (tenant, month) DO UPDATE SET rows = meter_month.rows + {rows}{cond} RETURNING 1"
    )


def meter_parts(
    p: _Params, b: BatchCommit, quota: Quota, day: str, now: float, spend: gov.Spend | None, gate: str | None
) -> tuple[list[str], str, str]:
    """The updates that apply (``spend``, ``rate``, ``day``, ``month``; one left out has nothing to
    charge, cannot pass at all, or does not apply), as CTEs in that order (the lock order of the
    rows), and the select list of how many rows each updated."""
    parts = []
    if spend is not None:
        parts.append(("spend", gov.spend_sql(b.tenant, spend, p.add, gate)))
    if quota.batches_per_second:
        parts.append(("rate", _rate_part(p, b.tenant, quota, now, gate)))
    if rules.fits_day(quota, len(b.rows), b.nbytes):  # else not even an empty day could take it
        parts.append(("day", _day_part(p, b, quota, day, gate)))
    if quota.rows_per_month is None or len(b.rows) <= quota.rows_per_month:
        parts.append(("month", _month_part(p, b, quota, rules.month_of(now), gate)))
    ctes = ", ".join(f"{kind} AS ({sql})" for kind, sql in parts)
    counts = ", ".join(f"(SELECT count(*) FROM {kind})" for kind, _ in parts)
    return [kind for kind, _ in parts], ctes, counts


def meter_statement(
    b: BatchCommit, quota: Quota, day: str, now: float, spend: gov.Spend | None = None
) -> tuple[list[str], str, list[object]]:
    """:func:`meter_parts` as one statement returning the counts."""
    p = _Params()
    kinds, ctes, counts = meter_parts(p, b, quota, day, now, spend, None)
    return kinds, f"WITH {ctes} SELECT {counts}", p.values


async def _meter(
    db: Connection, b: BatchCommit, quota: Quota, day: str, now: float, spend: gov.Spend | None
) -> None:
    """The batch's privacy loss on the agent's and tenant's day, a token from the tenant's bucket,
    the day's batches/rows/bytes and the month's rows, by conditional upserts in one statement (one
    round trip instead of seven). Each update takes its row lock and re-checks its condition
    against the newest committed row, so nothing is spent twice and no quota or cap is exceeded; a
    refusal rolls the whole batch back, so it does not matter that the other parts ran. The
    refusal's reason is the first failing check, in the order privacy cap, rate, day, month; the
    reads that explain it (retry delay, which day quota) run only then."""
    kinds, sql, params = meter_statement(b, quota, day, now, spend)
    row = await db.fetchrow(sql, *params) if kinds else ()
    await _verdict(db, b, quota, day, now, spend, dict(zip(kinds, row, strict=True)))


async def _verdict(
    db: Connection,
    b: BatchCommit,
    quota: Quota,
    day: str,
    now: float,
    spend: gov.Spend | None,
    counts: Mapping[str, int],
) -> None:
    """Raise the refusal the meter counts say, if any (see :func:`_meter`)."""
    if spend is not None and counts["spend"] != len(spend.targets):
        raise Rollback(CommitRefused("privacy_cap"))
    done = {kind for kind, count in counts.items() if count}
    if quota.batches_per_second and "rate" not in done:
        await _refuse_rate(db, b.tenant, quota, now)
    if "day" not in done:
        used = await db.fetchval("SELECT rows FROM meter_day WHERE tenant = $1 AND day = $2", b.tenant, day)
        reason = rules.day_quota_reason(quota, int(used or 0), len(b.rows))
        raise Rollback(CommitRefused(reason, rules.seconds_to_next_day(now)))
    if "month" not in done:
        raise Rollback(CommitRefused("quota_rows_month", rules.seconds_to_next_month(now)))


async def _refuse_rate(db: Connection, tenant: str, quota: Quota, now: float) -> None:
    row = await db.fetchrow("SELECT tokens, updated FROM buckets WHERE name = $1", rules.bucket_name(tenant))
    tokens = float(row[0]) if row else 0.0
    updated = float(row[1]) if row else now
    raise Rollback(CommitRefused("rate_limited", rules.rate_retry_after(quota, tokens, updated, now)))


_NEAR = (
    "(SELECT digest FROM batches WHERE tenant = $1 AND agent = $2 AND seq = $3::bigint - 1), "
    "(SELECT prev FROM batches WHERE tenant = $1 AND agent = $2 AND seq = $3::bigint + 1)"
)


async def _near(db: Connection, b: BatchCommit) -> tuple[str | None, str | None]:
    """(the stored digest of seq - 1, the stored prev of seq + 1)."""
    row = await db.fetchrow(f"SELECT {_NEAR}", b.tenant, b.agent, b.seq)
    return row[0], row[1]


async def _chain(db: Connection, b: BatchCommit, day: str, near: tuple[str | None, str | None]) -> Accepted:
    """Record (never refuse) a gap before this batch, a fork at it, and what it resolves after it."""
    event = (
        "INSERT INTO chain_events (tenant, agent, seq, kind, day) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (tenant, agent, seq, kind) DO NOTHING"
    )
    found = rules.chain_findings(b.seq, b.prev, b.digest, near[0], near[1])
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


_INSERT = (
    f"b AS (INSERT INTO batches ({BATCH_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) "
    "ON CONFLICT (tenant, agent, seq) DO NOTHING RETURNING id), "
    "r AS (INSERT INTO batch_rows (batch_id, ord, metric, stat, dims, value, mechanism, scale, level) "
    "SELECT b.id, u.* FROM b, unnest($19::int[], $20::text[], $21::text[], $22::text[], $23::float8[], "
    "$24::text[], $25::float8[], $26::text[]) AS u)"
)


class _Meters(msgspec.Struct, frozen=True):
    """The meter and spend updates of a batch, to run in the statement that inserts it."""

    quota: Quota
    day: str
    now: float
    spend: gov.Spend | None


class _Inserted(msgspec.Struct, frozen=True):
    batch_id: int | None  # None: (tenant, agent, seq) was already stored, nothing else ran
    near: tuple[str | None, str | None]  # the chain neighbours, when asked for
    counts: dict[str, int] | None  # rows each meter update changed, when they ran with it


async def _insert(
    db: Connection, b: BatchCommit, now: float, *, near: bool, meters: _Meters | None
) -> _Inserted:
    """The batch and its rows in one statement. ``ON CONFLICT DO NOTHING`` waits for a concurrent
    insert of the same key and then either inserts (the other rolled back) or does nothing (the
    other committed). With ``near``, the same statement reads the chain neighbours (:func:`_near`);
    with ``meters``, it runs them too, only if the batch was inserted (not on a duplicate)."""
    rows = b.rows
    p = _Params(
        [
            *batch_values(b, now),
            list(range(len(rows))),
            [r.metric for r in rows],
            [r.stat for r in rows],
            [_json.encode(r.dims).decode() for r in rows],
            [float(r.value) for r in rows],
            [r.noise.mechanism for r in rows],
            [float(r.noise.scale) for r in rows],
            [r.level for r in rows],
        ]
    )
    kinds: list[str] = []
    ctes, select = _INSERT, "(SELECT id FROM b)"
    if near:
        select += f", {_NEAR}"
    if meters is not None:
        kinds, more, counts = meter_parts(p, b, meters.quota, meters.day, meters.now, meters.spend, "b")
        if kinds:
            ctes, select = f"{ctes}, {more}", f"{select}, {counts}"
    row = await db.fetchrow(f"WITH {ctes} SELECT {select}", *p.values)
    batch_id = None if row[0] is None else int(row[0])
    counted = dict(zip(kinds, row[3:] if near else row[1:], strict=True)) if meters is not None else None
    return _Inserted(batch_id, (row[1], row[2]) if near else (None, None), counted)


async def commit(
    db: Connection,
    b: BatchCommit,
    quota: Quota,
    now: float,
    states: Mapping[str, Record],
    locked: set[tuple[str, str]],
) -> CommitOutcome:
    """One batch, in three round trips when it is accepted (batch and rows, privacy spend and meters,
    chain), one when the transaction already holds its tenant's day row. ``states``:
    :func:`read_states` of the group, read earlier in the same transaction; ``locked``: the
    (tenant, day) meter rows batches accepted earlier in it locked (this one adds its own).

    The chain read must see the batch the tenant's previous writer committed, so it runs after
    this batch's meter update waited for that writer's lock. Once an earlier batch of the same
    transaction holds the row, no other writer of the tenant can commit until this transaction
    does, so the read can go with the insert and see the same; the spend and meter updates then go
    in that statement too (same rows, same order), run only if the batch was inserted."""
    day = rules.day_of(now)
    state = state_of(states.get(b.key_id), b, quota)
    if state.refused is not None:
        raise Rollback(state.refused)
    early = (b.tenant, day) in locked
    # approved policy and privacy cap, decided after the dedupe, before rate and quotas
    spend = gov.spend_of(b, state.policies, state.cap)
    # the meters go with the insert when the tenant's day row is held already (the chain read is
    # in it too) and the spend rows can be charged in one upsert
    together = early and not isinstance(spend, CommitRefused) and (spend is None or gov.one_statement(spend))
    meters = _Meters(quota, day, now, spend) if together and not isinstance(spend, CommitRefused) else None
    inserted = await _insert(db, b, now, near=early, meters=meters)
    if inserted.batch_id is None:
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
    if isinstance(spend, CommitRefused):
        raise Rollback(spend)
    if inserted.counts is not None:
        await _verdict(db, b, quota, day, now, spend, inserted.counts)
    else:  # rows first: the tenant's hot rows are then locked for a shorter time
        if spend is not None and not gov.one_statement(spend):
            refused = await gov.charge_each(db, b, spend)
            if refused is not None:
                raise Rollback(refused)
            spend = None
        await _meter(db, b, quota, day, now, spend)
    accepted = await _chain(db, b, day, inserted.near if early else await _near(db, b))
    locked.add((b.tenant, day))
    return accepted
