"""Output cursors on SQLite: the last batch an output (remote-write, OTLP export) delivered, and the
rows of the batches after it.

SQLite has one writer, so batch ids are handed out in commit order and a cursor over them never
skips a batch that commits late.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiosqlite
import msgspec

from collector.store.records import BatchPrivacy, OutputPage, OutputRow, StoredRow

__all__ = ["advance", "cursor", "rows_after"]

Read = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
_dims = msgspec.json.Decoder(dict[str, str])


async def cursor(read: Read, name: str) -> int:
    rows = await read("SELECT batch_id FROM output_cursors WHERE name = ?", (name,))
    return int(rows[0][0]) if rows else 0


async def advance(db: aiosqlite.Connection, name: str, expected: int, to: int, now: float) -> bool:
    """Compare-and-set: move ``name`` from ``expected`` to ``to``; False when another pusher moved it."""
    rows = list(await db.execute_fetchall("SELECT batch_id FROM output_cursors WHERE name = ?", (name,)))
    if (int(rows[0][0]) if rows else 0) != expected:
        return False
    await db.execute(
        "INSERT INTO output_cursors (name, batch_id, updated) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET batch_id = excluded.batch_id, updated = excluded.updated",
        (name, to, now),
    )
    return True


async def rows_after(read: Read, after: int, max_batches: int) -> OutputPage:
    ids = await read("SELECT id FROM batches WHERE id > ? ORDER BY id LIMIT ?", (after, max_batches))
    if not ids:
        return OutputPage(after, [])
    upto = int(ids[-1][0])
    rows = await read(
        "SELECT b.id, b.tenant, b.agent, b.seq, b.window_start, b.window_end, r.metric, r.stat, r.dims, "
        "r.value, r.mechanism, r.scale, r.level FROM batch_rows r JOIN batches b ON b.id = r.batch_id "
        "WHERE b.id > ? AND b.id <= ? ORDER BY b.id, r.rowid",
        (after, upto),
    )
    batches = await read(
        "SELECT tenant, agent, seq, window_start, window_end, unit, epsilon, delta, rho, nrows, id "
        "FROM batches WHERE id > ? AND id <= ? ORDER BY id",
        (after, upto),
    )
    return OutputPage(
        upto,
        [
            OutputRow(
                int(r[0]),
                StoredRow(
                    r[1], r[2], r[3], r[4], r[5], r[6], r[7], _dims.decode(r[8]), r[9], r[10], r[11], r[12]
                ),
            )
            for r in rows
        ],
        [BatchPrivacy(*b[:9]) for b in batches],
        [int(b[9]) for b in batches],
        [int(b[10]) for b in batches],
    )
