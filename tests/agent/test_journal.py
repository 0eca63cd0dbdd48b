from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import journal
from agent.model import Event
from agent.state import open_state, transaction


def ev(ts: float, name: str = "e", **attrs: str | int | float | bool) -> Event:
    return Event(name, ts, "u1", 1.5, dict(attrs))


def test_append_replay_in_ts_order_and_survives_reopen(tmp_path: Path) -> None:
    conn = open_state(tmp_path, [journal.SCHEMA])
    with transaction(conn):
        journal.append(conn, [ev(30), ev(10, k="v"), ev(20)])
        journal.append(conn, [ev(10, "second"), ev(5, flag=True, n=3)])
        journal.set_offset(conn, "file:/x", 123)
    conn.close()

    conn = open_state(tmp_path, [journal.SCHEMA])
    replayed = [e for part in journal.replay(conn, chunk=2) for e in part]
    assert [(e.ts, e.name) for e in replayed] == [(5, "e"), (10, "e"), (10, "second"), (20, "e"), (30, "e")]
    assert replayed[0].attrs == {"flag": True, "n": 3}
    assert replayed[1].attrs == {"k": "v"}
    assert [len(part) for part in journal.replay(conn, chunk=2)] == [2, 2, 1]
    assert journal.get_offset(conn, "file:/x") == 123
    assert journal.get_offset(conn, "file:/y") is None
    conn.close()


def test_nothing_is_kept_without_commit(tmp_path: Path) -> None:
    conn = open_state(tmp_path, [journal.SCHEMA])

    def crash_before_commit() -> None:
        with transaction(conn):
            journal.append(conn, [ev(1)])
            journal.set_offset(conn, "k", 9)
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError, match="crash before commit"):
        crash_before_commit()
    assert list(journal.replay(conn)) == []
    assert journal.get_offset(conn, "k") is None
    conn.close()


def test_release_deletes_half_open_range_and_marks(tmp_path: Path) -> None:
    conn = open_state(tmp_path, [journal.SCHEMA])
    with transaction(conn):
        journal.append(conn, [ev(t) for t in (59.9, 60, 61, 119.99, 120)])
        journal.set_offset(conn, "k", 1)
        journal.set_offset(conn, "k", 2)
    with transaction(conn):
        assert journal.release(conn, 60, 120) == 3
        journal.mark_released(conn, 60)
        journal.mark_released(conn, 60)
    assert [e.ts for part in journal.replay(conn) for e in part] == [59.9, 120]
    assert journal.released_windows(conn) == {60}
    assert journal.get_offset(conn, "k") == 2
    conn.close()


def test_replay_of_empty_journal(tmp_path: Path) -> None:
    conn = open_state(tmp_path, [journal.SCHEMA])
    assert list(journal.replay(conn)) == []
    assert journal.released_windows(conn) == set()
    conn.close()


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.integers(0, 20).map(float), max_size=12), st.integers(1, 5)),
        st.tuples(st.just("release"), st.integers(0, 20), st.integers(0, 8)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_matches_a_list_model(tmp_path: Path, script: list[tuple[str, Any, int]]) -> None:
    conn = open_state(tmp_path / uuid.uuid4().hex, [journal.SCHEMA])
    model: list[tuple[float, int]] = []  # (ts, arrival)
    arrival = 0
    try:
        for op, arg, n in script:
            if op == "append":
                batch = []
                for ts in arg:
                    batch.append(Event(f"e{arrival}", ts, "u"))
                    model.append((ts, arrival))
                    arrival += 1
                with transaction(conn):
                    journal.append(conn, batch, block=n)
            else:
                start, end = float(arg), float(arg) + n
                with transaction(conn):
                    removed = journal.release(conn, start, end)
                kept = [m for m in model if not start <= m[0] < end]
                assert removed == len(model) - len(kept)
                model = kept
            replayed = [e for part in journal.replay(conn, chunk=3) for e in part]
            assert [(e.ts, int(e.name[1:])) for e in replayed] == sorted(model)
    finally:
        conn.close()
