"""Bounded dead-letter store: the newest ``max_rows`` refusals are kept, every refusal is counted.

Rows hold no raw input (see :class:`agent.model.DeadLetter`). Like the journal, nothing here commits:
dead letters go into the same transaction as the events of their chunk, so an input acknowledged to
its source is either journaled or dead-lettered.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence

from agent.model import DeadLetter

__all__ = ["SCHEMA", "add", "counts", "recent"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter_counts (
    reason TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
"""


def add(conn: sqlite3.Connection, letters: Sequence[DeadLetter], *, max_rows: int) -> None:
    """Count every letter, keep the newest ``max_rows`` overall. Part of the caller's transaction."""
    if not letters:
        return
    conn.executemany(
        "INSERT INTO dead_letter_counts (reason, n) VALUES (?, ?)"
        " ON CONFLICT (reason) DO UPDATE SET n = n + excluded.n",
        sorted(Counter(letter.reason for letter in letters).items()),
    )
    conn.executemany(
        "INSERT INTO dead_letters (reason, detail, source, size, sha256, at) VALUES (?, ?, ?, ?, ?, ?)",
        [(d.reason, d.detail, d.source, d.size, d.sha256, d.at) for d in letters[-max_rows:]],
    )
    conn.execute(
        "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
        (max_rows,),
    )


def recent(conn: sqlite3.Connection, limit: int) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, newest first."""
    rows = conn.execute(
        "SELECT reason, detail, source, size, sha256, at FROM dead_letters ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [DeadLetter(*row) for row in rows]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Refusals per reason since the state was created (not bounded by ``max_rows``)."""
    return {str(reason): int(n) for reason, n in conn.execute("SELECT reason, n FROM dead_letter_counts")}
