"""Output cursors on PostgreSQL: the same reads and compare-and-set as :mod:`collector.store.sqlite.cursors`.

Batch ids come from an identity column, handed out when a transaction inserts, not when it commits,
so a batch with a lower id can become visible after one with a higher id. A page therefore ends
before the first visible batch written by a transaction no older than the oldest write transaction
still open in this database (``pg_stat_activity.backend_xid``): while an ingest transaction is open,
batches after it wait for the next page. Residual case, documented in docs/operations.md: a
transaction that took its xid (by an earlier write) before another one, and inserts its batch after
that one's, is not held back by this rule; run one pusher per database and keep ingest transactions
short (they are) — and an id skipped this way is still in the store and reachable by ``push --from``.
"""

from __future__ import annotations

import msgspec
from asyncpg import Connection

from collector.store.pg.reads import Fetch
from collector.store.records import BatchPrivacy, OutputPage, OutputRow, StoredRow

__all__ = ["advance", "cursor", "rows_after"]

_dims = msgspec.json.Decoder(dict[str, str])


async def cursor(fetch: Fetch, name: str) -> int:
    rows = await fetch("SELECT batch_id FROM output_cursors WHERE name = $1", name)
    return int(rows[0][0]) if rows else 0


async def advance(db: Connection, name: str, expected: int, to: int, now: float) -> bool:
    """Compare-and-set under a row lock: False when another pusher moved the cursor first."""
    await db.execute(
        "INSERT INTO output_cursors (name, batch_id, updated) VALUES ($1, 0, $2) "
        "ON CONFLICT (name) DO NOTHING",
        name,
        now,
    )
    found = await db.fetchval("SELECT batch_id FROM output_cursors WHERE name = $1 FOR UPDATE", name)
    if int(found) != expected:
        return False
    await db.execute("UPDATE output_cursors SET batch_id = $2, updated = $3 WHERE name = $1", name, to, now)
    return True


async def rows_after(fetch: Fetch, after: int, max_batches: int) -> OutputPage:
    # Only batches every running transaction can already see; a later one waits for the next page.
    ids = await fetch(
        "SELECT id FROM batches WHERE id > $1 AND id < COALESCE(("
        "SELECT MIN(id) FROM batches WHERE id > $1 AND xmin::text::bigint >= ("
        "SELECT MIN(backend_xid::text::bigint) FROM pg_stat_activity WHERE datname = current_database()"
        ")), 9223372036854775807) ORDER BY id LIMIT $2",
        after,
        max_batches,
    )
    if not ids:
        return OutputPage(after, [])
    upto = int(ids[-1][0])
    rows = await fetch(
        "SELECT b.id, b.tenant, b.agent, b.seq, b.window_start, b.window_end, r.metric, r.stat, r.dims, "
        "r.value, r.mechanism, r.scale, r.level FROM batch_rows r JOIN batches b ON b.id = r.batch_id "
        "WHERE b.id > $1 AND b.id <= $2 ORDER BY b.id, r.ord",
        after,
        upto,
    )
    batches = await fetch(
        "SELECT tenant, agent, seq, window_start, window_end, unit, epsilon, delta, rho, nrows, id "
        "FROM batches WHERE id > $1 AND id <= $2 ORDER BY id",
        after,
        upto,
    )
    return OutputPage(
        upto,
        [
            OutputRow(
                int(r[0]),
                StoredRow(
                    r[1],
                    r[2],
                    int(r[3]),
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    _dims.decode(r[8]),
                    r[9],
                    r[10],
                    r[11],
                    r[12],
                ),
            )
            for r in rows
        ],
        [BatchPrivacy(b[0], b[1], int(b[2]), b[3], b[4], b[5], b[6], b[7], b[8]) for b in batches],
        [int(b[9]) for b in batches],
        [int(b[10]) for b in batches],
    )
