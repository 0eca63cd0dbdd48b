"""agent.outbox: durable, ordered, exact bytes, seqs never reused, backpressure and quarantine."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import pytest

from agent import egress, outbox
from agent.config import OutboxConfig
from agent.seal import Sealed, seal
from agent.state import open_state, transaction
from hushmetric.batch import Noise, Privacy, Row

KEY = nacl.signing.SigningKey(b"\x02" * 32)
START = 1_767_225_600
SCHEMAS = (outbox.SCHEMA, egress.SCHEMA)


def make(seq: int, prev: str, rows: int = 2) -> Sealed:
    return seal(
        tenant="acme",
        agent="edge-1",
        seq=seq,
        prev=prev,
        created=START + seq,
        window=(START, START + 60),
        policy_digest="ab" * 32,
        privacy=Privacy("user", rho=0.01),
        rows=[Row("visits", "count", {"i": str(i)}, float(i), Noise("gaussian", 1.0)) for i in range(rows)],
        key=KEY,
    )


def release(conn: sqlite3.Connection, n: int = 1) -> list[Sealed]:
    """What the pipeline does: take the next seq and put the sealed batch, in one transaction."""
    out = []
    for _ in range(n):
        with transaction(conn):
            seq, prev = outbox.next_seq(conn)
            sealed = make(seq, prev)
            outbox.put(conn, sealed)
        out.append(sealed)
    return out


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_state(tmp_path, SCHEMAS)
    yield c
    c.close()


def test_sequence_starts_at_one_and_chains(conn: sqlite3.Connection) -> None:
    assert outbox.next_seq(conn) == (1, "")
    first, second = release(conn, 2)
    assert (first.seq, second.seq) == (1, 2)
    assert outbox.next_seq(conn) == (3, second.digest)


def test_pending_survives_reopen_with_identical_bytes(tmp_path: Path) -> None:
    c = open_state(tmp_path, SCHEMAS)
    made = release(c, 3)
    c.close()
    c = open_state(tmp_path, SCHEMAS)
    try:
        again = outbox.pending(c, 10)
        assert again == made  # payload, digest, envelope (signature bytes) all identical
        assert outbox.pending(c, 2) == made[:2]
        assert outbox.get(c, 2) == made[1]
        assert outbox.get(c, 9) is None
    finally:
        c.close()


def test_seq_is_never_reused_after_the_outbox_empties(tmp_path: Path) -> None:
    c = open_state(tmp_path, SCHEMAS)
    made = release(c, 2)
    with transaction(c):
        assert outbox.remove(c, [1, 2]) == 2
    assert outbox.depth(c) == outbox.OutboxDepth(0, 0, None)
    c.close()
    c = open_state(tmp_path, SCHEMAS)
    try:
        assert outbox.next_seq(c) == (3, made[-1].digest)
        (third,) = release(c)
        assert third.seq == 3
    finally:
        c.close()


def test_put_refuses_a_reused_or_skipped_seq(conn: sqlite3.Connection) -> None:
    (first,) = release(conn)
    with pytest.raises(outbox.OutboxError, match="not the next seq 2"):
        outbox.put(conn, first)
    with pytest.raises(outbox.OutboxError):
        outbox.put(conn, make(5, first.digest))


def test_a_rolled_back_release_leaves_no_batch_and_no_sequence_advance(conn: sqlite3.Connection) -> None:
    def release_then_fail() -> None:
        with transaction(conn):
            outbox.put(conn, make(1, ""))
            raise RuntimeError("privacy charge failed")

    with pytest.raises(RuntimeError, match="privacy charge failed"):
        release_then_fail()
    assert outbox.next_seq(conn) == (1, "")
    assert outbox.pending(conn, 10) == []


def test_depth_and_backpressure(conn: sqlite3.Connection) -> None:
    made = release(conn, 3)
    d = outbox.depth(conn)
    assert d.count == 3
    assert d.bytes == sum(len(s.payload) for s in made)
    assert d.oldest_created == START + 1
    assert outbox.is_full(conn, OutboxConfig(max_batches=3))
    assert not outbox.is_full(conn, OutboxConfig(max_batches=4))
    assert outbox.is_full(conn, OutboxConfig(max_bytes=1024)) == (d.bytes >= 1024)
    with transaction(conn):
        outbox.remove(conn, [1])
    assert not outbox.is_full(conn, OutboxConfig(max_batches=3))


def test_quarantine_keeps_the_batch_out_of_the_way_and_requeue_restores_it(conn: sqlite3.Connection) -> None:
    made = release(conn, 3)
    with transaction(conn):
        assert outbox.quarantine(conn, 2, code="INVALID_ARGUMENT", reason="bad rows", at=5.0)
        assert not outbox.quarantine(conn, 2, code="INVALID_ARGUMENT", reason="again", at=6.0)
    assert [s.seq for s in outbox.pending(conn, 10)] == [1, 3]
    (q,) = outbox.quarantined(conn)
    assert (q.seq, q.digest, q.code, q.reason, q.at) == (
        2,
        made[1].digest,
        "INVALID_ARGUMENT",
        "bad rows",
        5.0,
    )
    assert outbox.depth(conn).count == 2
    with transaction(conn):
        assert outbox.requeue(conn, 2)
        assert not outbox.requeue(conn, 2)
    assert outbox.pending(conn, 10) == made
    assert outbox.quarantined(conn) == []


def test_quarantined_batches_count_towards_backpressure(conn: sqlite3.Connection) -> None:
    release(conn, 3)
    with transaction(conn):
        outbox.quarantine(conn, 1, code="FAILED_PRECONDITION", reason="too_old: old", at=5.0)
        outbox.quarantine(conn, 2, code="FAILED_PRECONDITION", reason="too_old: old", at=5.0)
    assert outbox.depth(conn).count == 1
    assert outbox.is_full(conn, OutboxConfig(max_batches=3))  # 1 waiting + 2 quarantined
    assert not outbox.is_full(conn, OutboxConfig(max_batches=4))


def test_discard_returns_what_it_removed_and_requeue_all_restores_in_seq_order(
    conn: sqlite3.Connection,
) -> None:
    made = release(conn, 4)
    with transaction(conn):
        for seq in (3, 1, 2):
            outbox.quarantine(conn, seq, code="UNAUTHENTICATED", reason="revoked_key: k", at=float(seq))
    with transaction(conn):
        gone = outbox.discard(conn, 2)
        assert outbox.discard(conn, 2) is None
    assert gone is not None
    assert (gone.seq, gone.digest, gone.code) == (2, made[1].digest, "UNAUTHENTICATED")
    with transaction(conn):
        assert outbox.requeue_all(conn) == [1, 3]
    assert [s.seq for s in outbox.pending(conn, 10)] == [1, 3, 4]
    assert outbox.pending(conn, 10)[0] == made[0]  # same bytes as signed
