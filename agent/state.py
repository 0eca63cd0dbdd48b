"""The agent's state database: one SQLite file shared by journal, ledger, outbox and egress ledger.

One file, because a release must commit the privacy charge, the signed batch, and the removal of the
window's events from the journal in a single transaction. Stage modules hold their own ``SCHEMA``
and take a ``sqlite3.Connection``; they never commit themselves — callers own transactions through
:func:`transaction`. Synchronous sqlite3 on purpose: the pipeline runs each group commit as one call
in a worker thread instead of one thread hop per statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["STATE_FILE", "open_state", "transaction"]

STATE_FILE = "agent.db"


def open_state(state_dir: Path, schemas: Iterable[str] = ()) -> sqlite3.Connection:
    """Open (creating if needed) ``state_dir/agent.db`` in WAL mode and apply ``schemas``.

    ``synchronous=FULL``: an event acknowledged to its source must survive power loss, not only a
    process crash; group commit amortises the fsync.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(state_dir / STATE_FILE, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    for schema in schemas:
        conn.executescript(schema)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
