"""Check a SQLite database at start-up, and salvage a damaged one: copy every row that can still be
read into a fresh file.

Shared by the agent's and the collector's start-up integrity checks. Standard library only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec

__all__ = ["Salvaged", "problems", "salvage"]

_PAGE = 256  # rows read per query
_MAX_MISSES = 64  # unreadable probes in a row before a table is given up


class Salvaged(msgspec.Struct, frozen=True):
    copied: dict[str, int]  # rows copied per table
    lost: dict[str, int]  # rows the source claimed (by its highest rowid) but could not give; -1: unknown


def problems(db: Path, tables: Sequence[str] | None = None) -> list[str]:
    """What is wrong reading ``db`` (empty when it is sound): ``PRAGMA quick_check``, then every row
    of ``tables`` (default: all), because quick_check does not decode every record."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return [f"cannot open {db.name}: {exc}"]
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            return [f"{db.name} failed quick_check: {'; '.join(rows[:5])}"]
        if tables is None:
            tables = [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _ in conn.execute(f"SELECT * FROM {_quote(table)}"):
                pass
    except sqlite3.Error as exc:
        return [f"{db.name} is unreadable: {exc}"]
    finally:
        conn.close()
    return []


def salvage(src: Path, dst: Path) -> Salvaged:
    """Copy every readable row of every readable table of ``src`` into a new database ``dst``.

    The schema comes from ``src``'s ``sqlite_master`` when it is readable (else ``dst`` stays empty
    and the caller's schemas create the tables). Rows are read in rowid order, a page at a time; a
    page that cannot be read is skipped by probing further rowids. ``src`` should be a scratch copy:
    opening it may apply its WAL.
    """
    copied: dict[str, int] = {}
    lost: dict[str, int] = {}
    if not src.exists():
        return Salvaged(copied, lost)
    try:
        source = sqlite3.connect(src, timeout=30)
    except sqlite3.Error:
        return Salvaged(copied, lost)
    target = sqlite3.connect(dst, isolation_level=None)
    try:
        try:
            schema = source.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type = 'index'"
            ).fetchall()
        except sqlite3.Error:
            schema = []
        target.execute("BEGIN")
        for kind, name, sql in schema:
            if str(name).startswith("sqlite_"):
                continue
            try:
                target.execute(str(sql))
            except sqlite3.Error:
                continue
            if kind == "table":
                copied[str(name)] = n = _copy_rows(source, target, str(name))
                try:
                    claimed = source.execute(f"SELECT MAX(rowid) FROM {_quote(str(name))}").fetchone()[0]
                    lost[str(name)] = max(int(claimed or 0) - n, 0)
                except sqlite3.Error:
                    lost[str(name)] = -1
        target.execute("COMMIT")
    finally:
        source.close()
        target.close()
    return Salvaged(copied, lost)


def _quote(table: str) -> str:
    return '"' + table.replace('"', '""') + '"'


def _copy_rows(source: sqlite3.Connection, target: sqlite3.Connection, table: str) -> int:
    quoted = _quote(table)
    n = 0
    last = -(1 << 62)
    step = 1
    misses = 0
    while misses < _MAX_MISSES:
        try:
            rows = source.execute(
                f"SELECT rowid, * FROM {quoted} WHERE rowid > ? ORDER BY rowid LIMIT {_PAGE}", (last,)
            ).fetchall()
        except sqlite3.Error:
            last += step  # skip past what cannot be read, further each time
            step *= 2
            misses += 1
            continue
        if not rows:
            break
        step, misses = 1, 0
        marks = ", ".join("?" * (len(rows[0]) - 1))
        for row in rows:
            try:
                target.execute(f"INSERT OR IGNORE INTO {quoted} VALUES ({marks})", tuple(row[1:]))
                n += 1
            except sqlite3.Error:
                continue
        last = int(rows[-1][0])
    return n
