from __future__ import annotations

from pathlib import Path

from agent import deadletter
from agent.model import DeadLetter
from agent.state import open_state, transaction


def letter(i: int, reason: str = "json") -> DeadLetter:
    return DeadLetter(reason, f"bad #{i}", "test", i, f"{i:064x}", float(i))


def test_keeps_newest_counts_all(tmp_path: Path) -> None:
    conn = open_state(tmp_path, [deadletter.SCHEMA])
    with transaction(conn):
        deadletter.add(conn, [letter(i) for i in range(5)], max_rows=3)
    with transaction(conn):
        deadletter.add(conn, [letter(i, "type") for i in range(5, 12)], max_rows=3)
        deadletter.add(conn, [], max_rows=3)
    conn.close()
    conn = open_state(tmp_path, [deadletter.SCHEMA])
    assert [d.detail for d in deadletter.recent(conn, 10)] == ["bad #11", "bad #10", "bad #9"]
    assert deadletter.recent(conn, 1) == [letter(11, "type")]
    assert deadletter.counts(conn) == {"json": 5, "type": 7}
    assert conn.execute("SELECT COUNT(*) FROM dead_letter_log").fetchone()[0] == 3
    conn.close()


def test_flood_stays_bounded(tmp_path: Path) -> None:
    conn = open_state(tmp_path, [deadletter.SCHEMA])
    for start in range(0, 20_000, 1000):
        with transaction(conn):
            deadletter.add(conn, [letter(i, "too_large") for i in range(start, start + 1000)], max_rows=100)
    assert conn.execute("SELECT COUNT(*) FROM dead_letter_log").fetchone()[0] == 100
    assert deadletter.counts(conn) == {"too_large": 20_000}
    assert deadletter.recent(conn, 1)[0].detail == "bad #19999"
    conn.close()


def test_the_first_layout_with_topics_and_plain_digests_is_dropped_on_upgrade(tmp_path: Path) -> None:
    conn = open_state(tmp_path)
    conn.execute(
        "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL,"
        " source TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, at REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO dead_letters (reason, detail, source, size, sha256, at)"
        " VALUES ('json', 'x', 'mqtt:t/jane@example.com', 1, 'ab', 1.0)"
    )
    conn.execute("CREATE TABLE dead_letter_counts (reason TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    conn.execute("INSERT INTO dead_letter_counts VALUES ('json', 7)")
    conn.close()
    conn = open_state(tmp_path, [deadletter.SCHEMA])
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "dead_letters" not in tables
    assert "dead_letter_log" in tables
    assert deadletter.recent(conn, 10) == []
    assert deadletter.counts(conn) == {"json": 7}
    conn.close()
