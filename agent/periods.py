"""Persistent state of metrics bounded per budget period: what each unit already contributed to the
period's released windows, and the running totals a period-total release will be made of.

Synchronous sqlite3 on the agent's state database. Nothing here commits: :func:`record_window` runs
inside the transaction that charges, seals and queues the window's batch, so after a crash either
the window is released and its usage and totals are recorded, or neither (its events are still in
the journal and are replayed against the usage of the windows released before it).

Why it must persist: a released window's events leave the journal, so after a restart mid-period
the journal alone no longer shows what a unit already contributed earlier in the period; without
this state a unit could contribute its bound again after every restart, and the period vector's
sensitivity — which the whole period's charge was computed from — would no longer hold.

Bounded: one usage row per (unit, partition) a unit touched, at most ``max_partitions`` per unit,
metric and period; one total row per declared partition. Rows of periods before the one being
released are deleted with every release, so only the current period is ever kept (plus, after a
policy change mid-period, the rows of the old policy for that period).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from agent.aggregate import MetricWindow, WindowState
from agent.bound import Bounds
from agent.policy import Policy

__all__ = ["SCHEMA", "first_start", "has_period_bounds", "has_totals", "record_window", "totals", "usage"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS period_usage (
    policy TEXT NOT NULL,
    metric TEXT NOT NULL,
    period TEXT NOT NULL,
    unit TEXT NOT NULL,
    part TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (policy, metric, period, unit, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS period_total (
    policy TEXT NOT NULL,
    metric TEXT NOT NULL,
    period TEXT NOT NULL,
    part TEXT NOT NULL,
    acc BLOB NOT NULL,
    PRIMARY KEY (policy, metric, period, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS period_span (
    policy TEXT NOT NULL,
    period TEXT NOT NULL,
    first_start INTEGER NOT NULL,
    PRIMARY KEY (policy, period)
);
"""

_key_encode = msgspec.json.Encoder().encode
_key_decode = msgspec.json.Decoder(list[str]).decode
_acc_encode = msgspec.msgpack.Encoder().encode
_acc_decode = msgspec.msgpack.Decoder(list[int]).decode


def has_period_bounds(policy: Policy) -> bool:
    return any(m.bound == "period" for m in policy.metrics)


def has_totals(policy: Policy) -> bool:
    return any(m.period_total > 0 for m in policy.metrics)


def _part(key: tuple[str, ...]) -> str:
    return _key_encode(list(key)).decode()


def record_window(conn: sqlite3.Connection, policy: Policy, digest: str, state: WindowState) -> None:
    """Add a released window's per-unit contributions (and accumulators, for metrics with a period
    total) to its period's state; forget earlier periods. Part of the caller's transaction."""
    period = state.period
    conn.execute("DELETE FROM period_usage WHERE period < ?", (period,))
    conn.execute("DELETE FROM period_total WHERE period < ?", (period,))
    conn.execute("DELETE FROM period_span WHERE period < ?", (period,))
    conn.execute(
        "INSERT OR IGNORE INTO period_span (policy, period, first_start) VALUES (?, ?, ?)",
        (digest, period, state.start),
    )
    for metric, mw in zip(policy.metrics, state.metrics, strict=True):
        if metric.bound != "period":
            continue
        conn.executemany(
            "INSERT INTO period_usage (policy, metric, period, unit, part, n) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (policy, metric, period, unit, part) DO UPDATE SET n = n + excluded.n",
            # a generator, not a list: one row at a time (a window holds a row per unit and partition)
            (
                (digest, metric.name, period, unit, _part(key), n)
                for (unit, key), n in mw.contributions.items()
            ),
        )
        if metric.period_total <= 0:
            continue
        for key, acc in mw.parts.items():
            part = _part(key)
            row = conn.execute(
                "SELECT acc FROM period_total WHERE policy = ? AND metric = ? AND period = ? AND part = ?",
                (digest, metric.name, period, part),
            ).fetchone()
            summed = acc if row is None else [a + b for a, b in zip(_acc_decode(row[0]), acc, strict=True)]
            conn.execute(
                "INSERT OR REPLACE INTO period_total (policy, metric, period, part, acc) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest, metric.name, period, part, _acc_encode(summed)),
            )


def usage(
    conn: sqlite3.Connection, digest: str, metric: str, period: str
) -> list[tuple[str, tuple[str, ...], int]]:
    """(unit, partition, contributions) released so far in ``period`` for a period-bounded metric."""
    return [
        (unit, tuple(_key_decode(part)), int(n))
        for unit, part, n in conn.execute(
            "SELECT unit, part, n FROM period_usage WHERE policy = ? AND metric = ? AND period = ?",
            (digest, metric, period),
        )
    ]


def first_start(conn: sqlite3.Connection, digest: str, period: str) -> int | None:
    """Start of the first window of ``period`` released under this policy (a public schedule fact)."""
    row = conn.execute(
        "SELECT first_start FROM period_span WHERE policy = ? AND period = ?", (digest, period)
    ).fetchone()
    return None if row is None else int(row[0])


def totals(
    conn: sqlite3.Connection, policy: Policy, digest: str, period: str
) -> Sequence[MetricWindow | None]:
    """Per metric in policy order: the summed accumulators of ``period``'s released windows, for the
    metrics with a period total (None for the others)."""
    out: list[MetricWindow | None] = []
    for metric in policy.metrics:
        if metric.period_total <= 0:
            out.append(None)
            continue
        mw = MetricWindow(Bounds.of(metric))
        for part, acc in conn.execute(
            "SELECT part, acc FROM period_total WHERE policy = ? AND metric = ? AND period = ?",
            (digest, metric.name, period),
        ):
            mw.parts[tuple(_key_decode(part))] = _acc_decode(acc)
        out.append(mw)
    return out
