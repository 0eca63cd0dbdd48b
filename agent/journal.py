"""The durable journal: decoded, redacted events wait here until their window is released.

Synchronous sqlite3 on the shared state database (:mod:`agent.state`). No function here commits:
the pipeline appends events and advances the source offsets they were read up to in one transaction
(group commit over many chunks), and only then acknowledges the chunks to their sources. After a
crash, :func:`replay` rebuilds the open windows from what was committed.

Events are stored in blocks: one row holds up to :data:`BLOCK_EVENTS` events of one :func:`append`
call, sorted by ``ts``, msgpack-encoded in one call, with the block's ``ts`` span indexed. One row
per block instead of one per event roughly halves the journal's CPU cost per event, appends and
releases together (it is on the hot path of every input), while keeping exact per-event
semantics: :func:`release` deletes whole blocks inside the range and rewrites the few that straddle
its edges; :func:`replay` merges blocks into one ``(ts, arrival)`` order.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator, Sequence

import msgspec

from agent.model import Event

__all__ = [
    "BLOCK_EVENTS",
    "SCHEMA",
    "append",
    "get_offset",
    "mark_released",
    "purge_before",
    "release",
    "released_windows",
    "replay",
    "schedule_position",
    "set_offset",
    "set_schedule_position",
]

BLOCK_EVENTS = 512  # small enough that rewriting a block straddling a window edge is cheap

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal_blocks (
    id INTEGER PRIMARY KEY,
    min_ts REAL NOT NULL,
    max_ts REAL NOT NULL,
    n INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_blocks_span ON journal_blocks (min_ts, max_ts);
CREATE TABLE IF NOT EXISTS journal_offsets (
    source_key TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_released (
    start INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS journal_schedule (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_start INTEGER NOT NULL
);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Event]).decode


def _ts(event: Event) -> float:
    return event.ts


def append(conn: sqlite3.Connection, events: Sequence[Event], *, block: int = BLOCK_EVENTS) -> None:
    """Journal ``events`` (already redacted). Part of the caller's transaction."""
    ordered = sorted(events, key=_ts)  # stable: equal timestamps keep their arrival order
    conn.executemany(
        "INSERT INTO journal_blocks (min_ts, max_ts, n, body) VALUES (?, ?, ?, ?)",
        [
            (part[0].ts, part[-1].ts, len(part), _encode(part))
            for part in (ordered[i : i + block] for i in range(0, len(ordered), block))
        ],
    )


def set_offset(conn: sqlite3.Connection, source_key: str, offset: int) -> None:
    """Record how far ``source_key`` was read; commit it with the events read up to there."""
    conn.execute(
        "INSERT INTO journal_offsets (source_key, position) VALUES (?, ?)"
        " ON CONFLICT (source_key) DO UPDATE SET position = excluded.position",
        (source_key, offset),
    )


def get_offset(conn: sqlite3.Connection, source_key: str) -> int | None:
    row = conn.execute("SELECT position FROM journal_offsets WHERE source_key = ?", (source_key,)).fetchone()
    return None if row is None else int(row[0])


def replay(conn: sqlite3.Connection, *, chunk: int = 10_000) -> Iterator[list[Event]]:
    """Every journaled event (none of them released yet) in ``(ts, arrival)`` order, ``chunk`` at a time.

    Blocks are read in ``min_ts`` order and merged; only blocks whose spans overlap are in memory
    together.
    """
    heap: list[tuple[float, int, int, Event]] = []
    out: list[Event] = []
    spans = conn.execute("SELECT id, min_ts FROM journal_blocks ORDER BY min_ts, id").fetchall()
    for block_id, min_ts in spans:
        row = conn.execute("SELECT body FROM journal_blocks WHERE id = ?", (block_id,)).fetchone()
        if row is None:
            continue  # released meanwhile by the caller
        while heap and (heap[0][0], heap[0][1]) < (min_ts, block_id):
            out.append(heapq.heappop(heap)[3])
            if len(out) >= chunk:
                yield out
                out = []
        for i, event in enumerate(_decode(row[0])):
            heapq.heappush(heap, (event.ts, block_id, i, event))
    while heap:
        out.append(heapq.heappop(heap)[3])
        if len(out) >= chunk:
            yield out
            out = []
    if out:
        yield out


def release(conn: sqlite3.Connection, start: float, end: float) -> int:
    """Delete journaled events with ``start <= ts < end`` (their window was released); returns the count."""
    # Blocks wholly inside the window go in one statement, their bodies never read: a window of a
    # large backlog holds megabytes of them (issue 12: run --once memory flat in the input size).
    removed = conn.execute(
        "SELECT COALESCE(SUM(n), 0) FROM journal_blocks WHERE min_ts >= ? AND max_ts < ?", (start, end)
    ).fetchone()[0]
    conn.execute("DELETE FROM journal_blocks WHERE min_ts >= ? AND max_ts < ?", (start, end))
    # Blocks that straddle a window edge, one at a time.
    straddling = conn.execute(
        "SELECT id FROM journal_blocks WHERE min_ts < ? AND max_ts >= ?", (end, start)
    ).fetchall()
    for (block_id,) in straddling:
        n, body = conn.execute("SELECT n, body FROM journal_blocks WHERE id = ?", (block_id,)).fetchone()
        kept = [e for e in _decode(body) if not start <= e.ts < end]
        if len(kept) == n:
            continue
        removed += n - len(kept)
        if kept:
            conn.execute(
                "UPDATE journal_blocks SET min_ts = ?, max_ts = ?, n = ?, body = ? WHERE id = ?",
                (kept[0].ts, kept[-1].ts, len(kept), _encode(kept), block_id),
            )
        else:
            conn.execute("DELETE FROM journal_blocks WHERE id = ?", (block_id,))
    return int(removed)


def released_windows(conn: sqlite3.Connection) -> set[int]:
    return {int(row[0]) for row in conn.execute("SELECT start FROM journal_released")}


def mark_released(conn: sqlite3.Connection, start: int) -> None:
    conn.execute("INSERT OR IGNORE INTO journal_released (start) VALUES (?)", (start,))


def schedule_position(conn: sqlite3.Connection) -> int | None:
    """Start of the next window the schedule releases, as stored; None before the schedule started
    (the runtime then falls back to the window after the last released one, for older state)."""
    row = conn.execute("SELECT next_start FROM journal_schedule WHERE id = 1").fetchone()
    return None if row is None else int(row[0])


def set_schedule_position(conn: sqlite3.Connection, next_start: int) -> None:
    """Move the schedule position forward (never back). Part of the caller's transaction."""
    conn.execute(
        "INSERT INTO journal_schedule (id, next_start) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET next_start = MAX(next_start, excluded.next_start)",
        (next_start,),
    )


def purge_before(conn: sqlite3.Connection, start: float) -> int:
    """Delete journaled events before ``start``: their windows were released or lie before the
    schedule, so they can never be released. Returns the count."""
    row = conn.execute("SELECT MIN(min_ts) FROM journal_blocks").fetchone()
    if row is None or row[0] is None or row[0] >= start:
        return 0
    return release(conn, float(row[0]), start)
