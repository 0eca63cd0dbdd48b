"""The state database: schemas apply all or nothing, and a first start stopped before its schema
committed leaves a blank database that the next start's integrity check takes as fresh."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent import integrity
from agent.runtime import SCHEMAS
from agent.state import STATE_FILE, open_state


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_schemas_apply_all_or_nothing(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        open_state(tmp_path, [*SCHEMAS, "CREATE TABLE broken ("])
    assert tables(tmp_path / STATE_FILE) == set()  # not the first schemas without the rest
    open_state(tmp_path, SCHEMAS).close()
    assert {"outbox", "privacy_charge", "journal_blocks", "period_usage"} <= tables(tmp_path / STATE_FILE)


def test_a_blank_database_is_fresh_not_damaged(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        open_state(tmp_path, ["CREATE TABLE broken ("])  # a first start that never committed its schema
    report = integrity.check_state(tmp_path)
    assert report.ok
    assert not report.blocked
    assert report.quarantined == []
