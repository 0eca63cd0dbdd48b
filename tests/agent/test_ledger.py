"""Privacy ledger: periods, charges in the caller's transaction, refusals, exhaustion, totals."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import ledger
from agent.aggregate import WindowAggregator
from agent.ledger import BudgetExhausted
from agent.model import Event
from agent.policy import Budget, Metric, Policy
from agent.release import Release, release_window, window_cost
from agent.state import open_state, transaction

H = 3600
DAY = 86400
T0 = 1_764_115_200  # 2025-11-26T00:00:00Z


def policy(budget: Budget | None = None) -> Policy:
    return Policy(
        version=1,
        name="t",
        budget=budget or Budget(rho=1.0),
        metrics=[
            Metric(name="hits", events=["hit"], stat="count"),
            Metric(name="v", events=["hit"], stat="sum"),
        ],
    )


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_state(tmp_path, [ledger.SCHEMA])
    yield c
    c.close()


def test_period_of_uses_utc_event_time() -> None:
    assert ledger.period_of(policy(), T0) == "2025-11-26"
    assert ledger.period_of(policy(), T0 - 1) == "2025-11-25"
    assert ledger.period_of(policy(Budget(rho=1.0, period="week")), T0) == "2025-W48"
    assert ledger.period_of(policy(Budget(rho=1.0, period="month")), T0) == "2025-11"


def fake(
    start: int, rho: float | None = 0.25, eps: float | None = None, delta: float | None = None
) -> Release:
    return Release(start=start, end=start + H, rows=[], rho=rho, epsilon=eps, delta=delta)


def test_charges_accumulate_per_period_and_total_matches(conn: sqlite3.Connection) -> None:
    p = policy()
    with transaction(conn):
        for i, start in enumerate([T0, T0 + H, T0 + DAY]):
            ledger.charge(conn, period=ledger.period_of(p, start), release=fake(start, delta=1e-8), seq=i + 1)
    assert ledger.spent(conn, "2025-11-26") == ledger.Spend(rho=0.5, delta=2e-8, releases=2)
    assert ledger.remaining(conn, p, "2025-11-26") == pytest.approx(0.5)
    assert ledger.remaining(conn, p, "2025-11-28") == 1.0
    kept = ledger.total(conn)
    assert (kept.rho, kept.releases) == (0.75, 3)
    assert kept.delta == pytest.approx(3e-8)
    check = ledger.verify(conn, p)
    assert check.ok
    assert check.total == check.charged


def test_charge_rolls_back_with_the_callers_transaction(conn: sqlite3.Connection) -> None:
    def charge_then_fail() -> None:
        with transaction(conn):
            ledger.charge(conn, period="2025-11-26", release=fake(T0), seq=1)
            raise RuntimeError("outbox insert failed")

    with pytest.raises(RuntimeError, match="outbox insert failed"):
        charge_then_fail()
    assert ledger.total(conn) == ledger.Spend()
    assert ledger.spent(conn, "2025-11-26").releases == 0


def test_the_same_batch_cannot_be_charged_twice(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        ledger.charge(conn, period="2025-11-26", release=fake(T0), seq=7)
    with pytest.raises(sqlite3.IntegrityError), transaction(conn):
        ledger.charge(conn, period="2025-11-26", release=fake(T0 + H), seq=7)
    assert ledger.total(conn).releases == 1


def test_exhausted_budget_stops_releases_loudly(conn: sqlite3.Connection) -> None:
    """The pipeline's loop in miniature: 30 hourly windows of one day under a cap of 24 windows."""
    p = policy(Budget(rho=0.24))  # 0.01 per 1 h window
    agg = WindowAggregator(p)
    agg.add([Event("hit", float(T0 + i * 300), f"u{i}", value=0.5) for i in range(12 * 24)])
    windows = agg.flush()
    assert len(windows) == 24
    cost, _ = window_cost(p)
    released = refused = 0
    for seq, state in enumerate(windows + windows[:6], start=1):
        period = ledger.period_of(p, state.start)
        with transaction(conn):
            if ledger.affordable(conn, p, period, cost):
                ledger.charge(conn, period=period, release=release_window(state, p), seq=seq, policy=p)
                released += 1
            else:
                ledger.refuse(conn, period=period, window_start=state.start, reason="budget_exhausted")
                refused += 1
    assert (released, refused) == (24, 6)
    (day,) = ledger.summary(conn, p)
    assert (day.period, day.releases, day.refusals) == ("2025-11-26", 24, 6)
    assert day.spent == pytest.approx(0.24)
    assert day.spent <= 0.24 * (1 + 1e-9)
    assert day.left == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(BudgetExhausted) as err, transaction(conn):
        ledger.charge(conn, period=day.period, release=release_window(windows[0], p), seq=999, policy=p)
    assert err.value.code == "budget"
    assert err.value.period == "2025-11-26"
    check = ledger.verify(conn, p)
    assert check.ok, check.problems
    assert check.charged.rho == pytest.approx(sum(cost for _ in range(24)))


def test_pure_budget_uses_epsilon(conn: sqlite3.Connection) -> None:
    p = policy(Budget(mechanism="pure", epsilon=2.0))
    with transaction(conn):
        ledger.charge(conn, period="2025-11", release=fake(T0, rho=None, eps=1.5), seq=1, policy=p)
    assert ledger.remaining(conn, p, "2025-11") == pytest.approx(0.5)
    assert not ledger.affordable(conn, p, "2025-11", 0.6)
    (row,) = ledger.summary(conn, p)
    assert (row.measure, row.spent, row.cap) == ("epsilon", 1.5, 2.0)


def test_verify_detects_a_tampered_total(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        ledger.charge(conn, period="2025-11-26", release=fake(T0), seq=1)
        conn.execute("UPDATE privacy_total SET rho = 0.1")
    check = ledger.verify(conn)
    assert not check.ok
    assert "rho" in check.problems[0]


def test_schema_is_idempotent(conn: sqlite3.Connection) -> None:
    conn.executescript(ledger.SCHEMA)
    assert ledger.total(conn) == ledger.Spend()


def test_a_release_without_spend_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(ValueError, match="under-count"), transaction(conn):
        ledger.charge(conn, period="2025-11-26", release=fake(T0, rho=None), seq=1)


def test_delta_is_capped_per_period_like_rho(conn: sqlite3.Connection) -> None:
    """budget.max_delta: a charge that would take a period's δ past it is refused, nothing written."""
    p = policy(Budget(rho=100.0, delta=1e-7, max_delta=3e-7))
    with transaction(conn):
        for seq in (1, 2, 3):
            ledger.charge(
                conn, period="2025-11-26", release=fake(T0 + seq * H, delta=1e-7), seq=seq, policy=p
            )
    assert ledger.delta_remaining(conn, p, "2025-11-26") == pytest.approx(0.0, abs=1e-15)
    assert not ledger.affordable(conn, p, "2025-11-26", 0.25, 1e-7)
    assert ledger.affordable(conn, p, "2025-11-26", 0.25)  # ρ alone still fits
    with pytest.raises(BudgetExhausted) as err, transaction(conn):
        ledger.charge(conn, period="2025-11-26", release=fake(T0 + 4 * H, delta=1e-7), seq=4, policy=p)
    assert err.value.measure == "delta"
    assert "needs delta" in str(err.value)
    assert ledger.spent(conn, "2025-11-26").releases == 3  # rolled back
    assert ledger.affordable(conn, p, "2025-11-27", 0.25, 1e-7)  # the next day has its own δ
    assert ledger.verify(conn, p).ok


def test_the_reads_and_the_rebuild_the_integrity_check_uses(conn: sqlite3.Connection) -> None:
    assert (ledger.last_seq(conn), ledger.reset_seq(conn), ledger.charged_by_period(conn)) == (0, 0, {})
    with transaction(conn):
        ledger.charge(conn, period="2025-11-26", release=fake(T0, delta=1e-8), seq=3)
        ledger.charge(conn, period="2025-11-27", release=fake(T0 + DAY), seq=4)
        ledger.charge(conn, period="2025-11-26", release=fake(T0), seq=-2)  # a reset charge
        # a running total that drifted from the charges (lost or restored apart from them)
        conn.execute("UPDATE privacy_total SET rho = 9, releases = 1")
    assert (ledger.last_seq(conn), ledger.reset_seq(conn)) == (4, -2)
    assert ledger.charged_by_period(conn) == {"2025-11-26": (0.5, 0.0, 1e-8), "2025-11-27": (0.25, 0.0, 0.0)}
    assert not ledger.verify(conn).ok
    with transaction(conn):
        ledger.rebuild_total(conn)
    assert ledger.total(conn) == ledger.charged_total(conn) == ledger.Spend(0.75, 0.0, 1e-8, 3)
    assert ledger.verify(conn).ok
