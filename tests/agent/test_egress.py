"""agent.egress: the ledger verifies, every single-entry tampering is caught, the kill switch is recorded."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from agent import egress
from agent.state import open_state, transaction


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_state(tmp_path, [egress.SCHEMA])
    yield c
    c.close()


def fill(conn: sqlite3.Connection) -> None:
    """Six entries: batches 1-2, stop, resume, batches 3-4 (one into a bundle)."""
    with transaction(conn):
        for seq in (1, 2):
            egress.record(
                conn,
                destination="grpc:c1:4317",
                seq=seq,
                digest=f"{seq:064x}",
                nbytes=100 + seq,
                rows=3,
                at=10.0 + seq,
            )
        assert egress.stop(conn, reason="incident 42", at=20.5)
        assert egress.resume(conn, at=30.25)
        egress.record(conn, destination="grpc:c1:4317", seq=3, digest=f"{3:064x}", nbytes=90, rows=1, at=31.0)
        egress.record(conn, destination="bundle:b.tar", seq=4, digest=f"{4:064x}", nbytes=80, rows=2, at=32.0)


def test_ledger_verifies_and_reports_its_head(conn: sqlite3.Connection) -> None:
    assert egress.verify(conn) == egress.VerifyResult(True, 0, "")
    fill(conn)
    result = egress.verify(conn)
    items = egress.entries(conn)
    assert result.ok
    assert result.count == 6
    assert result.first_bad is None
    assert result.head == items[-1].hash == egress.head(conn)[1]
    assert [e.kind for e in items] == ["batch", "batch", "stop", "resume", "batch", "batch"]
    assert items[2].reason == "incident 42"
    assert items[2].seq is None
    assert items[5].destination == "bundle:b.tar"
    assert [e.index for e in items] == [1, 2, 3, 4, 5, 6]
    assert all(b.prev == a.hash for a, b in itertools.pairwise(items))


def test_kill_switch_state_is_the_latest_control_entry(conn: sqlite3.Connection) -> None:
    assert not egress.is_stopped(conn)
    assert not egress.resume(conn, at=1.0)  # not stopped: nothing recorded
    with transaction(conn):
        assert egress.stop(conn, reason="audit", at=2.0)
        assert not egress.stop(conn, reason="twice", at=3.0)
    assert egress.is_stopped(conn)
    assert egress.state(conn) == egress.EgressState(True, "audit", 2.0)
    with transaction(conn):
        assert egress.resume(conn, at=4.0)
    assert not egress.is_stopped(conn)
    assert [e.kind for e in egress.entries(conn)] == ["stop", "resume"]
    assert egress.verify(conn).ok


def _edit(column: str, value: object) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(f"UPDATE egress_ledger SET {column} = ? WHERE idx = 3", (value,))

    return run


def _delete_middle(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM egress_ledger WHERE idx = 3")
    conn.execute("UPDATE egress_ledger SET idx = idx - 1 WHERE idx > 3")


def _delete_middle_keep_indexes(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM egress_ledger WHERE idx = 3")


def _delete_first(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM egress_ledger WHERE idx = 1")
    conn.execute("UPDATE egress_ledger SET idx = idx - 1")


def _truncate(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM egress_ledger WHERE idx >= 5")


def _truncate_and_fix_head_count(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM egress_ledger WHERE idx >= 5")
    conn.execute("UPDATE egress_head SET count = 4")


def _insert(conn: sqlite3.Connection) -> None:
    # A forged entry, correctly hashed and linked for position 3; the entries after it are shifted.
    items = egress.entries(conn)
    draft = egress.EgressEntry(3, 20.0, "batch", "grpc:evil:1", 99, "ee" * 32, 1, 1, "", items[1].hash, "")
    forged = msgspec.structs.replace(draft, hash=egress.entry_hash(draft))
    conn.execute("UPDATE egress_ledger SET idx = -idx WHERE idx >= 3")
    conn.execute("UPDATE egress_ledger SET idx = 1 - idx WHERE idx < 0")
    conn.execute(
        "INSERT INTO egress_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            3,
            forged.at,
            forged.kind,
            forged.destination,
            forged.seq,
            forged.digest,
            1,
            1,
            "",
            forged.prev,
            forged.hash,
        ),
    )


def _append_forged(conn: sqlite3.Connection) -> None:
    # Correctly chained at the end, but the head record was not updated with it.
    last = egress.entries(conn)[-1]
    draft = egress.EgressEntry(7, 40.0, "batch", "grpc:evil:1", 99, "ee" * 32, 1, 1, "", last.hash, "")
    forged = msgspec.structs.replace(draft, hash=egress.entry_hash(draft))
    conn.execute(
        "INSERT INTO egress_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            7,
            forged.at,
            forged.kind,
            forged.destination,
            forged.seq,
            forged.digest,
            1,
            1,
            "",
            forged.prev,
            forged.hash,
        ),
    )


def _swap(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE egress_ledger SET idx = -1 WHERE idx = 2")
    conn.execute("UPDATE egress_ledger SET idx = 2 WHERE idx = 5")
    conn.execute("UPDATE egress_ledger SET idx = 5 WHERE idx = -1")


TAMPERING: dict[str, Callable[[sqlite3.Connection], None]] = {
    "edit at": _edit("at", 20.6),
    "edit kind": _edit("kind", "resume"),
    "edit destination": _edit("destination", "grpc:other:1"),
    "edit seq": _edit("seq", 7),
    "edit digest": _edit("digest", "0" * 64),
    "edit nbytes": _edit("nbytes", 1),
    "edit rows": _edit("rows", 1),
    "edit reason": _edit("reason", "routine"),
    "edit prev": _edit("prev", "1" * 64),
    "edit hash": _edit("hash", "2" * 64),
    "delete middle (renumbered)": _delete_middle,
    "delete middle": _delete_middle_keep_indexes,
    "delete first": _delete_first,
    "truncate": _truncate,
    "truncate and fix head count": _truncate_and_fix_head_count,
    "insert": _insert,
    "append without head": _append_forged,
    "reorder": _swap,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_any_single_entry_tampering_is_detected(
    conn: sqlite3.Connection, tamper: Callable[[sqlite3.Connection], None]
) -> None:
    fill(conn)
    tamper(conn)
    result = egress.verify(conn)
    assert not result.ok
    assert result.first_bad is not None
    assert 1 <= result.first_bad <= 7
    assert result.reason


def test_exported_entries_verify_on_their_own_and_tampering_there_is_caught(conn: sqlite3.Connection) -> None:
    fill(conn)
    data = egress.to_jsonl(egress.entries(conn))
    assert len(data.splitlines()) == 6
    items = egress.from_jsonl(data)
    assert items == egress.entries(conn)
    assert egress.verify_entries(items).ok
    count, head = egress.head(conn)
    assert egress.verify_entries(items, expected_count=count, expected_head=head).ok

    edited = [*items[:3], msgspec.structs.replace(items[3], at=99.0), *items[4:]]
    assert egress.verify_entries(edited).first_bad == 4
    assert egress.verify_entries(items[:1] + items[2:]).first_bad == 2
    assert egress.verify_entries([items[1], items[0], *items[2:]]).first_bad == 1
    truncated = egress.verify_entries(items[:4], expected_count=count, expected_head=head)
    assert not truncated.ok
    assert truncated.first_bad == 5
    assert not egress.verify_entries(items[:4], expected_head=head).ok


def test_format_entry_is_one_readable_line(conn: sqlite3.Connection) -> None:
    fill(conn)
    lines = [egress.format_entry(e) for e in egress.entries(conn)]
    assert all("\n" not in line for line in lines)
    assert "batch 1 -> grpc:c1:4317" in lines[0]
    assert "1970-01-01T00:00:11Z" in lines[0]
    assert "EGRESS STOPPED: incident 42" in lines[2]
    assert "egress resumed" in lines[3]
