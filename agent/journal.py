"""The durable journal: decoded, redacted events wait here until their window is released.

Synchronous sqlite3 on the shared state database (:mod:`agent.state`). No function here commits:
the pipeline appends events and advances the source offsets they were read up to in one transaction
(group commit over many chunks), and only then acknowledges the chunks to their sources. After a
crash, :func:`replay` rebuilds the open windows from what was committed.

Events are stored one row each, msgpack-encoded, indexed by ``ts`` so a released window's events
are deleted with one range delete.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

import msgspec

from agent.model import Event

__all__ = [
    "SCHEMA",
    "append",
    "get_offset",
    "mark_released",
    "release",
    "released_windows",
    "replay",
    "set_offset",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_ts ON journal (ts, id);
CREATE TABLE IF NOT EXISTS journal_offsets (
    source_key TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_released (
    start INTEGER PRIMARY KEY
);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Event).decode


def append(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Journal ``events`` (already redacted). Part of the caller's transaction."""
    conn.executemany("INSERT INTO journal (ts, body) VALUES (?, ?)", [(e.ts, _encode(e)) for e in events])


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
    """Every journaled event (none of them released yet), in ``(ts, arrival)`` order, ``chunk`` at a time."""
    last_ts, last_id = float("-inf"), -1
    while True:
        rows = conn.execute(
            "SELECT id, ts, body FROM journal WHERE (ts, id) > (?, ?) ORDER BY ts, id LIMIT ?",
            (last_ts, last_id, chunk),
        ).fetchall()
        if not rows:
            return
        last_id, last_ts = rows[-1][0], rows[-1][1]
        yield [_decode(body) for _, _, body in rows]
        if len(rows) < chunk:
            return


def release(conn: sqlite3.Connection, start: float, end: float) -> int:
    """Delete journaled events with ``start <= ts < end`` (their window was released); returns the count."""
    return conn.execute("DELETE FROM journal WHERE ts >= ? AND ts < ?", (start, end)).rowcount


def released_windows(conn: sqlite3.Connection) -> set[int]:
    return {int(row[0]) for row in conn.execute("SELECT start FROM journal_released")}


def mark_released(conn: sqlite3.Connection, start: int) -> None:
    conn.execute("INSERT OR IGNORE INTO journal_released (start) VALUES (?)", (start,))
