"""Bounded dead-letter store: the newest ``max_rows`` refusals are kept, every refusal is counted.

Rows hold no raw input (see :class:`agent.model.DeadLetter`): the source is the configured input
(an MQTT subscription filter, not the topic) and the digest is keyed (:func:`digest_key`). Like the
journal, nothing here commits: dead letters go into the same transaction as the events of their
chunk, so an input acknowledged to its source is either journaled or dead-lettered.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections import Counter
from collections.abc import Sequence

from agent.model import DeadLetter

__all__ = ["SCHEMA", "add", "counts", "digest", "digest_key", "recent"]

_KEY_LABEL = b"hushmetric dead-letter digest v1"

# ``dead_letters`` (the first layout) held concrete MQTT topics and unkeyed SHA-256 digests of the
# raw input: it is dropped on upgrade, on purpose (only the newest refusals were kept there anyway;
# the counts per reason survive in ``dead_letter_counts``).
SCHEMA = """
DROP TABLE IF EXISTS dead_letters;
CREATE TABLE IF NOT EXISTS dead_letter_log (
    id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter_counts (
    reason TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
"""


def digest_key(secret: bytes) -> bytes:
    """The dead-letter key: derived from the site secret (HMAC with a fixed label), so a digest here
    never equals a pseudonym the redactor makes from the same bytes with the secret itself."""
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def digest(key: bytes, data: bytes) -> str:
    """Hex HMAC-SHA256 of a refused input under ``key`` (:func:`digest_key`)."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


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
        "INSERT INTO dead_letter_log (reason, detail, source, size, digest, at) VALUES (?, ?, ?, ?, ?, ?)",
        [(d.reason, d.detail, d.source, d.size, d.digest, d.at) for d in letters[-max_rows:]],
    )
    conn.execute(
        "DELETE FROM dead_letter_log WHERE id <= (SELECT MAX(id) FROM dead_letter_log) - ?",
        (max_rows,),
    )


def recent(conn: sqlite3.Connection, limit: int) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, newest first."""
    rows = conn.execute(
        "SELECT reason, detail, source, size, digest, at FROM dead_letter_log ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [DeadLetter(*row) for row in rows]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Refusals per reason since the state was created (not bounded by ``max_rows``)."""
    return {str(reason): int(n) for reason, n in conn.execute("SELECT reason, n FROM dead_letter_counts")}
