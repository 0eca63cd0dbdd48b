"""The egress ledger: a hash-chained list of everything that left the site, and the local kill switch.

Every batch the collector acknowledged, and every batch written into an air-gap bundle, is appended
as a ``batch`` entry (time, destination, seq, payload digest, bytes, rows). ``egress stop`` and
``egress resume`` are appended as ``stop``/``resume`` entries; the switch's state *is* the latest of
those entries, so it cannot disagree with what the ledger shows. A quarantined batch an operator
discards (``outbox drop SEQ --note``) is appended as a ``drop`` entry (destination ``""``, the note as
reason): it did not leave, but its seq will never reach the collector, and the ledger says why. A
certificate (``hush-agent certify --send``, or in a bundle by ``export --certificate``) is appended
as a ``certificate`` entry (destination, digest and size of the certificate file).

Each entry carries the previous entry's hash and its own: SHA-256 over the canonical JSON array of
its fields (index, at, kind, destination, seq, digest, nbytes, rows, reason, prev). Editing,
deleting, inserting or reordering an entry breaks the chain. Cutting entries off the end leaves a
shorter chain that is consistent in itself, so the database also keeps a head record (count and
hash of the last entry) that :func:`verify` checks; for an exported copy, pass a head noted earlier
(e.g. from ``egress --verify`` output or an attestation) to :func:`verify_entries`.

Nothing here commits; callers own the transaction (an acknowledgement removes the batch from the
outbox and records it here in one transaction).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Literal

import msgspec

from hushmetric.timefmt import format_rfc3339

__all__ = [
    "SCHEMA",
    "EgressEntry",
    "EgressState",
    "VerifyResult",
    "entries",
    "entry_hash",
    "format_entry",
    "from_jsonl",
    "head",
    "is_stopped",
    "record",
    "record_drop",
    "resume",
    "state",
    "stop",
    "to_jsonl",
    "verify",
    "verify_entries",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS egress_ledger (
    idx INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    seq INTEGER,
    digest TEXT NOT NULL,
    nbytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    reason TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS egress_ledger_control ON egress_ledger (kind, idx) WHERE kind != 'batch';
CREATE TABLE IF NOT EXISTS egress_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""

Kind = Literal["batch", "stop", "resume", "drop", "certificate"]
_COLUMNS = "idx, at, kind, destination, seq, digest, nbytes, rows, reason, prev, hash"


class EgressEntry(msgspec.Struct, frozen=True):
    index: int  # 1, 2, 3… position in the ledger
    at: float  # epoch seconds
    kind: Kind
    destination: str  # "grpc:HOST:PORT", "bundle:FILE" for batches and certificates; "" for stop/resume/drop
    seq: int | None  # batch seq (also of a dropped batch); None for stop/resume
    digest: str  # hex SHA-256 of the batch payload; "" for stop/resume
    nbytes: int  # payload bytes
    rows: int
    reason: str  # why egress was stopped, or the operator's note on a drop; "" otherwise
    prev: str  # hash of the previous entry; "" for the first
    hash: str


class EgressState(msgspec.Struct, frozen=True):
    stopped: bool
    reason: str
    since: float | None  # when the latest stop/resume was recorded


class VerifyResult(msgspec.Struct, frozen=True):
    ok: bool
    count: int  # entries checked
    head: str  # hash of the last entry ("" for an empty ledger)
    first_bad: int | None = None  # 1-based position of the first entry that does not verify
    reason: str = ""


_canonical = msgspec.json.Encoder()
_entry_decoder = msgspec.json.Decoder(EgressEntry)


def entry_hash(entry: EgressEntry) -> str:
    """SHA-256 over the canonical JSON array of every field but ``hash`` (domain-separated)."""
    e = entry
    body = _canonical.encode(
        [e.index, e.at, e.kind, e.destination, e.seq, e.digest, e.nbytes, e.rows, e.reason, e.prev]
    )
    return hashlib.sha256(b"hushmetric.egress.v1\n" + body).hexdigest()


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(count, hash of the last entry) from the head record; (0, "") for an empty ledger."""
    row = conn.execute("SELECT count, hash FROM egress_head WHERE id = 1").fetchone()
    return (0, "") if row is None else (int(row[0]), str(row[1]))


def _append(
    conn: sqlite3.Connection,
    *,
    at: float,
    kind: Kind,
    destination: str = "",
    seq: int | None = None,
    digest: str = "",
    nbytes: int = 0,
    rows: int = 0,
    reason: str = "",
) -> EgressEntry:
    last = conn.execute("SELECT idx, hash FROM egress_ledger ORDER BY idx DESC LIMIT 1").fetchone()
    index, prev = (1, "") if last is None else (int(last[0]) + 1, str(last[1]))
    draft = EgressEntry(index, float(at), kind, destination, seq, digest, nbytes, rows, reason, prev, "")
    entry = msgspec.structs.replace(draft, hash=entry_hash(draft))
    conn.execute(
        f"INSERT INTO egress_ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (index, entry.at, kind, destination, seq, digest, nbytes, rows, reason, prev, entry.hash),
    )
    conn.execute(
        "INSERT INTO egress_head (id, count, hash) VALUES (1, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET count = excluded.count, hash = excluded.hash",
        (index, entry.hash),
    )
    return entry


def record(
    conn: sqlite3.Connection, *, destination: str, seq: int, digest: str, nbytes: int, rows: int, at: float
) -> EgressEntry:
    """Append a ``batch`` entry: batch ``seq`` left for ``destination``."""
    return _append(
        conn, at=at, kind="batch", destination=destination, seq=seq, digest=digest, nbytes=nbytes, rows=rows
    )


def record_drop(
    conn: sqlite3.Connection, *, seq: int, digest: str, nbytes: int, rows: int, note: str, at: float
) -> EgressEntry:
    """Append a ``drop`` entry: quarantined batch ``seq`` was discarded by an operator (did not leave)."""
    return _append(
        conn, at=at, kind="drop", seq=seq, digest=digest, nbytes=nbytes, rows=rows, reason=note.strip()[:500]
    )


def record_certificate(
    conn: sqlite3.Connection, *, destination: str, digest: str, nbytes: int, at: float
) -> EgressEntry:
    """Append a ``certificate`` entry: a certificate (``hush-agent certify``) left for ``destination``."""
    return _append(conn, at=at, kind="certificate", destination=destination, digest=digest, nbytes=nbytes)


def state(conn: sqlite3.Connection) -> EgressState:
    # Only stop/resume entries are switch changes (a drop or a certificate is not).
    row = conn.execute(
        "SELECT kind, reason, at FROM egress_ledger WHERE kind != 'batch' AND kind != 'drop'"
        " AND kind != 'certificate'"
        " ORDER BY idx DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return EgressState(False, "", None)
    return EgressState(row[0] == "stop", str(row[1]), float(row[2]))


def is_stopped(conn: sqlite3.Connection) -> bool:
    return state(conn).stopped


def stop(conn: sqlite3.Connection, *, reason: str, at: float) -> bool:
    """Engage the kill switch; records a ``stop`` entry. False (nothing recorded) if already stopped."""
    if is_stopped(conn):
        return False
    _append(conn, at=at, kind="stop", reason=reason.strip()[:500] or "stopped by operator")
    return True


def resume(conn: sqlite3.Connection, *, at: float) -> bool:
    """Release the kill switch; records a ``resume`` entry. False (nothing recorded) if not stopped."""
    if not is_stopped(conn):
        return False
    _append(conn, at=at, kind="resume")
    return True


def entries(conn: sqlite3.Connection) -> list[EgressEntry]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM egress_ledger ORDER BY idx").fetchall()
    return [EgressEntry(*r) for r in rows]


def verify_entries(
    items: Sequence[EgressEntry], *, expected_count: int | None = None, expected_head: str | None = None
) -> VerifyResult:
    """Check positions, the prev links and every hash; optionally that the chain ends at a known head.

    Pure: works on entries read from the database or from an exported JSON-lines copy.
    """
    prev = ""
    for position, e in enumerate(items, start=1):
        if e.index != position:
            return VerifyResult(False, position - 1, prev, position, f"entry {position} has index {e.index}")
        if e.prev != prev:
            return VerifyResult(False, position - 1, prev, position, f"entry {position} does not link back")
        want = entry_hash(e)
        if e.hash != want:
            return VerifyResult(False, position - 1, prev, position, f"entry {position} was altered")
        prev = e.hash
    count = len(items)
    if expected_count is not None and count != expected_count:
        return VerifyResult(
            False,
            count,
            prev,
            min(count, expected_count) + 1,
            f"ledger holds {count} entries, head says {expected_count}",
        )
    if expected_head is not None and prev != expected_head:
        return VerifyResult(False, count, prev, count or None, "ledger does not end at the recorded head")
    return VerifyResult(True, count, prev)


def verify(conn: sqlite3.Connection) -> VerifyResult:
    """Verify the ledger in the database against its own head record."""
    count, last = head(conn)
    return verify_entries(entries(conn), expected_count=count, expected_head=last)


def format_entry(e: EgressEntry) -> str:
    """One line for a human: position, UTC time, what happened, and the hash prefix."""
    when = format_rfc3339(e.at)
    if e.kind == "batch":
        what = f"batch {e.seq} -> {e.destination}  {e.rows} rows  {e.nbytes} bytes  sha256:{e.digest[:16]}"
    elif e.kind == "stop":
        what = f"EGRESS STOPPED: {e.reason}"
    elif e.kind == "certificate":
        what = f"certificate -> {e.destination}  {e.nbytes} bytes  sha256:{e.digest[:16]}"
    elif e.kind == "drop":
        what = f"batch {e.seq} DROPPED from quarantine (not sent): {e.reason}  sha256:{e.digest[:16]}"
    else:
        what = "egress resumed"
    return f"{e.index:>6}  {when}  {what}  [{e.hash[:12]}]"


def to_jsonl(items: Sequence[EgressEntry]) -> bytes:
    """JSON lines, one entry per line: the form ``egress --json`` prints and auditors keep."""
    return b"".join(_canonical.encode(e) + b"\n" for e in items)


def from_jsonl(data: bytes) -> list[EgressEntry]:
    """Parse :func:`to_jsonl` output (blank lines ignored); msgspec.DecodeError on malformed lines."""
    try:
        return [_entry_decoder.decode(line) for line in data.splitlines() if line.strip()]
    except (UnicodeDecodeError, RecursionError) as exc:  # msgspec raises these, not DecodeError
        raise msgspec.DecodeError(f"malformed ledger line: {type(exc).__name__}") from exc
