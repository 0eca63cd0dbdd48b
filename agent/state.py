"""The agent's state database: one SQLite file shared by journal, ledger, outbox and egress ledger.

One file, because a release must commit the privacy charge, the signed batch, and the removal of the
window's events from the journal in a single transaction. Stage modules hold their own ``SCHEMA``
and take a ``sqlite3.Connection``; they never commit themselves — callers own transactions through
:func:`transaction`. Synchronous sqlite3 on purpose: the pipeline runs each group commit as one call
in a worker thread instead of one thread hop per statement.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hushmetric.errors import HushError

__all__ = ["LOCK_FILE", "STATE_FILE", "StateLock", "StateLocked", "lock_state", "open_state", "transaction"]

STATE_FILE = "agent.db"
LOCK_FILE = "agent.lock"


class StateLocked(HushError):
    """Another process holds the state directory's lock (one writer per state directory)."""

    code = "locked"

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"state directory {state_dir} is in use by another hush-agent process ({who})")
        self.state_dir = state_dir
        self.pid = pid


class StateLock:
    """An exclusive ``flock`` on ``state_dir/agent.lock``, held until :meth:`release` or process exit.

    One writer per state directory: two processes releasing windows from one ledger could both find
    a period affordable, and two draining one outbox could deliver a batch twice. The kernel drops
    the lock when the process dies, so a crash never leaves a stale lock behind; the pid written into
    the file only serves the error message.
    """

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_state(state_dir: Path) -> StateLock:
    """Take the state directory's lock without waiting; :class:`StateLocked` if another process has it."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        raise StateLocked(state_dir, int(text) if text.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateLock(state_dir, fd)


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
    # All schemas in one transaction (one fsync): a process killed during its first start leaves
    # either the whole schema or none of it — never a database with some tables, which the
    # integrity check at the next start would take for a damaged one.
    try:
        conn.executescript("BEGIN IMMEDIATE;\n" + ";\n".join(schemas) + ";\nCOMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        raise
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
