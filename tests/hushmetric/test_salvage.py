"""hushmetric.salvage: the start-up check of a SQLite file, and copying out what a damaged one still holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hushmetric.salvage import Salvaged, problems, salvage

ROWS = 2000


def make_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        conn.execute('CREATE TABLE "odd ""name""" (x INTEGER)')
        conn.executemany(
            "INSERT INTO events (body) VALUES (?)", [(f"event {i:05d} " + "x" * 200,) for i in range(ROWS)]
        )
        conn.execute('INSERT INTO "odd ""name""" VALUES (1)')
        conn.execute("CREATE INDEX events_body ON events (body)")  # after the rows: table pages come first
    conn.close()


def damage(path: Path, page: int) -> None:
    """Overwrite one page (4 KiB) in the middle of the file with garbage."""
    data = bytearray(path.read_bytes())
    start = page * 4096
    data[start : start + 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))


def test_a_sound_database_has_no_problems(tmp_path: Path) -> None:
    db = tmp_path / "ok.db"
    make_db(db)
    assert problems(db) == []
    assert problems(db, ["events"]) == []


def test_a_damaged_page_is_a_problem_named_after_the_file(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    make_db(db)
    pages = db.stat().st_size // 4096
    damage(db, pages // 2)
    found = problems(db)
    assert found
    assert all("bad.db" in p for p in found)


def test_not_a_database_at_all(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"not sqlite" * 1000)
    assert problems(db)


def test_salvage_copies_every_row_of_a_sound_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    make_db(src)
    result = salvage(src, dst)
    assert result == Salvaged(copied={"events": ROWS, 'odd "name"': 1}, lost={"events": 0, 'odd "name"': 0})
    assert problems(dst) == []


def test_salvage_keeps_what_is_readable_around_a_damaged_page(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    make_db(src)
    damage(src, (src.stat().st_size // 4096) // 4)  # a page of the events table
    result = salvage(src, dst)
    copied = result.copied.get("events", 0)
    assert 0 < copied < ROWS  # something was lost, most was kept
    assert problems(dst) == []
    conn = sqlite3.connect(dst)
    bodies = [r[0] for r in conn.execute("SELECT body FROM events ORDER BY id")]
    conn.close()
    assert len(bodies) == copied
    assert all(b.startswith("event ") for b in bodies)  # only whole, real rows


def test_salvage_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert salvage(tmp_path / "gone.db", tmp_path / "dst.db") == Salvaged({}, {})
