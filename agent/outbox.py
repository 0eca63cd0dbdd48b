"""The outbox: signed batches wait here, in seq order, until the collector (or a bundle) takes them.

Synchronous sqlite3 on the shared state database; nothing here commits — callers own transactions
through :func:`agent.state.transaction`, so a release can commit its privacy charge and its batch
together, and the sender can commit an acknowledgement together with its egress-ledger entry.

- **Sequence record.** ``outbox_sequence`` holds the last seq handed out and its payload digest. It
  outlives an emptied outbox, so a seq is never reused and ``prev`` always names the previous batch.
- **Exact bytes.** The DSSE envelope is stored as msgpack of the envelope Struct (payload and
  signature as raw bytes); :func:`pending` rebuilds the identical envelope, so a retry resends
  exactly what was signed.
- **Overflow policy "backpressure".** :func:`is_full` tells the pipeline to stop releasing and to
  stop taking events from its sources until the sender (or an export) makes room. Nothing is dropped.
- **Quarantine.** A batch the collector refuses for good (malformed, conflicting with another batch
  under the same seq, too old, signed by a revoked, retired or unknown key: see
  :func:`agent.sender.classify`) would block every later batch forever. The sender moves it to
  ``outbox_quarantine`` with the collector's answer, so it stays on disk, is listed by ``status``
  and ``outbox quarantine``, and delivery continues with the next seq. :func:`requeue` puts it back
  (after the cause is fixed, e.g. the key registered); :func:`discard` removes it for good and
  returns what it removed, so the caller can record it in the egress ledger in the same
  transaction. Quarantined batches are not exported, but they do count towards :func:`is_full`: a
  collector that refuses everything must not fill the disk behind the operator's back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import msgspec

from agent.config import OutboxConfig
from agent.seal import Sealed
from hushmetric import dsse
from hushmetric.errors import HushError

__all__ = [
    "SCHEMA",
    "OutboxDepth",
    "OutboxError",
    "Quarantined",
    "depth",
    "discard",
    "get",
    "is_full",
    "next_seq",
    "pending",
    "put",
    "quarantine",
    "quarantined",
    "quarantined_one",
    "remove",
    "requeue",
    "requeue_all",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    last_digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    nbytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_quarantine (
    seq INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    nbytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    created REAL NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""

_COLUMNS = "seq, digest, envelope, nbytes, rows, window_start, window_end, created"
_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(dsse.Envelope)


class OutboxError(HushError):
    """The outbox was asked to do something that would break the chain (e.g. reuse a seq)."""

    code = "outbox"


class OutboxDepth(msgspec.Struct, frozen=True):
    count: int
    bytes: int  # payload bytes waiting
    oldest_created: float | None  # epoch seconds of the oldest waiting batch; None when empty


class Quarantined(msgspec.Struct, frozen=True):
    seq: int
    digest: str
    nbytes: int
    rows: int
    code: str  # the gRPC status name the collector answered, e.g. "INVALID_ARGUMENT"
    reason: str  # the collector's details, one line
    at: float


def next_seq(conn: sqlite3.Connection) -> tuple[int, str]:
    """The seq the next batch must use and the digest its ``prev`` must name ((1, "") at first)."""
    row = conn.execute("SELECT last_seq, last_digest FROM outbox_sequence WHERE id = 1").fetchone()
    if row is None:
        return 1, ""
    return int(row[0]) + 1, str(row[1])


def put(conn: sqlite3.Connection, sealed: Sealed) -> None:
    """Store ``sealed`` and advance the sequence record; it must be exactly :func:`next_seq`."""
    expected, _prev = next_seq(conn)
    if sealed.seq != expected:
        raise OutboxError(f"batch seq {sealed.seq} is not the next seq {expected}")
    conn.execute(
        f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sealed.seq,
            sealed.digest,
            _envelope_encoder.encode(sealed.envelope),
            len(sealed.payload),
            sealed.rows,
            sealed.window_start,
            sealed.window_end,
            sealed.created,
        ),
    )
    conn.execute(
        "INSERT INTO outbox_sequence (id, last_seq, last_digest) VALUES (1, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq, last_digest = excluded.last_digest",
        (sealed.seq, sealed.digest),
    )


def _sealed(row: tuple[int, str, bytes, int, int, int, int, float]) -> Sealed:
    seq, digest, blob, _nbytes, rows, start, end, created = row
    envelope = _envelope_decoder.decode(blob)
    return Sealed(
        seq=seq,
        payload=envelope.payload,
        digest=digest,
        envelope=envelope,
        rows=rows,
        window_start=start,
        window_end=end,
        created=created,
    )


def pending(conn: sqlite3.Connection, limit: int) -> list[Sealed]:
    """Up to ``limit`` waiting batches, lowest seq first."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
    return [_sealed(r) for r in rows]


def get(conn: sqlite3.Connection, seq: int) -> Sealed | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else _sealed(row)


def remove(conn: sqlite3.Connection, seqs: Iterable[int]) -> int:
    """Remove the given batches; returns how many were there."""
    cur = conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
    return max(cur.rowcount, 0)


def depth(conn: sqlite3.Connection) -> OutboxDepth:
    count, nbytes, oldest = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(nbytes), 0), MIN(created) FROM outbox"
    ).fetchone()
    return OutboxDepth(int(count), int(nbytes), None if oldest is None else float(oldest))


def is_full(conn: sqlite3.Connection, cfg: OutboxConfig) -> bool:
    """True when the outbox and its quarantine together hold ``max_batches`` batches or ``max_bytes``
    payload bytes (both are on this site's disk until someone acts)."""
    d = depth(conn)
    q_count, q_bytes = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM outbox_quarantine"
    ).fetchone()
    return d.count + int(q_count) >= cfg.max_batches or d.bytes + int(q_bytes) >= cfg.max_bytes


def quarantine(conn: sqlite3.Connection, seq: int, *, code: str, reason: str, at: float) -> bool:
    """Move batch ``seq`` from the outbox to the quarantine; False if it was not waiting."""
    cur = conn.execute(
        f"INSERT INTO outbox_quarantine ({_COLUMNS}, code, reason, at)"
        f" SELECT {_COLUMNS}, ?, ?, ? FROM outbox WHERE seq = ?",
        (code, reason[:500], at, seq),
    )
    if cur.rowcount != 1:
        return False
    conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
    return True


def quarantined(conn: sqlite3.Connection) -> list[Quarantined]:
    rows = conn.execute(
        "SELECT seq, digest, nbytes, rows, code, reason, at FROM outbox_quarantine ORDER BY seq"
    ).fetchall()
    return [Quarantined(*r) for r in rows]


def quarantined_one(conn: sqlite3.Connection, seq: int) -> Quarantined | None:
    row = conn.execute(
        "SELECT seq, digest, nbytes, rows, code, reason, at FROM outbox_quarantine WHERE seq = ?", (seq,)
    ).fetchone()
    return None if row is None else Quarantined(*row)


def discard(conn: sqlite3.Connection, seq: int) -> Quarantined | None:
    """Remove quarantined batch ``seq`` for good; returns what was removed (None if not there).
    The caller records it (egress ledger ``drop`` entry) in the same transaction."""
    found = quarantined_one(conn, seq)
    if found is not None:
        conn.execute("DELETE FROM outbox_quarantine WHERE seq = ?", (seq,))
    return found


def requeue_all(conn: sqlite3.Connection) -> list[int]:
    """Move every quarantined batch back into the outbox; returns their seqs, lowest first."""
    seqs = [int(r[0]) for r in conn.execute("SELECT seq FROM outbox_quarantine ORDER BY seq")]
    for seq in seqs:
        requeue(conn, seq)
    return seqs


def requeue(conn: sqlite3.Connection, seq: int) -> bool:
    """Move a quarantined batch back into the outbox (same bytes, same seq); False if not there."""
    cur = conn.execute(
        f"INSERT INTO outbox ({_COLUMNS}) SELECT {_COLUMNS} FROM outbox_quarantine WHERE seq = ?", (seq,)
    )
    if cur.rowcount != 1:
        return False
    conn.execute("DELETE FROM outbox_quarantine WHERE seq = ?", (seq,))
    return True
