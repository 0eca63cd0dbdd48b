"""The privacy ledger: every release's ρ/ε/δ charged to the budget period of its window, persistently.

Synchronous sqlite3 on the agent's state database. Functions here never commit: the caller charges
inside :func:`agent.state.transaction` together with the outbox insert of the signed batch, so a crash
either keeps both or neither — a release is never sent without its charge (no under-count) and never
charged twice. A window whose charge would exceed the period's cap is refused and the refusal is
recorded (``refuse``), so an exhausted budget is visible in ``hush-agent ledger`` rather than silent.

The charge goes to the UTC period (day, ISO week, calendar month) containing the window's start in
event time, so replaying old data cannot borrow from today's budget. Policy validation makes every
window lie inside one period (sizes divide a day or an ISO week; weekly windows start on Mondays),
so a period's data is never charged to a neighbouring period. δ is capped per period like ρ
(``budget.max_delta``).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable

import msgspec

from agent.policy import Policy, period_key
from agent.release import Release
from hushmetric.errors import HushError

__all__ = [
    "SCHEMA",
    "BudgetExhausted",
    "LedgerCheck",
    "PeriodSummary",
    "Spend",
    "affordable",
    "cap_of",
    "charge",
    "charged_by_period",
    "charged_total",
    "delta_remaining",
    "last_seq",
    "mark_period_charged",
    "period_charged",
    "period_of",
    "rebuild_total",
    "refuse",
    "remaining",
    "reset_seq",
    "spent",
    "summary",
    "total",
    "verify",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_charge (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    rho REAL NOT NULL DEFAULT 0 CHECK (rho >= 0),
    epsilon REAL NOT NULL DEFAULT 0 CHECK (epsilon >= 0),
    delta REAL NOT NULL DEFAULT 0 CHECK (delta >= 0),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS privacy_charge_period ON privacy_charge (period);
CREATE TABLE IF NOT EXISTS privacy_refusal (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS privacy_refusal_period ON privacy_refusal (period);
CREATE TABLE IF NOT EXISTS privacy_total (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rho REAL NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    releases INTEGER NOT NULL
);
INSERT OR IGNORE INTO privacy_total (id, rho, epsilon, delta, releases) VALUES (1, 0, 0, 0, 0);
CREATE TABLE IF NOT EXISTS privacy_period_charge (
    period TEXT NOT NULL,
    policy TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (period, policy)
);
"""

# Relative slack when comparing sums of floats with a cap: a period of equal per-window shares must
# fit exactly, whatever the order of additions.
_SLACK = 1e-9


class BudgetExhausted(HushError):
    """A charge would take a period past its cap (``measure``: rho, epsilon or delta); nothing was charged."""

    code = "budget"

    def __init__(self, period: str, needed: float, left: float, *, measure: str = "rho") -> None:
        super().__init__(
            f"privacy budget of {period} exhausted: needs {measure} {needed:.6g}, {max(left, 0):.6g} left"
        )
        self.period = period
        self.needed = needed
        self.left = left
        self.measure = measure


class Spend(msgspec.Struct, frozen=True):
    rho: float = 0.0
    epsilon: float = 0.0
    delta: float = 0.0
    releases: int = 0


class PeriodSummary(msgspec.Struct, frozen=True):
    period: str
    measure: str  # "rho" (zcdp) or "epsilon" (pure)
    spent: float
    cap: float
    left: float
    delta: float
    releases: int
    refusals: int


class LedgerCheck(msgspec.Struct, frozen=True):
    ok: bool
    total: Spend  # the running total kept with every charge
    charged: Spend  # the sum of the individual charges
    problems: list[str]


def period_of(policy: Policy, window_start: int) -> str:
    """The UTC budget period containing ``window_start``: ``2026-11-26``, ``2026-W48`` or ``2026-11``."""
    return period_key(policy, window_start)


def cap_of(policy: Policy) -> float:
    b = policy.budget
    cap = b.rho if b.mechanism == "zcdp" else b.epsilon
    assert cap is not None  # enforced when the policy is loaded
    return cap


def _measure(policy: Policy) -> str:
    return "rho" if policy.budget.mechanism == "zcdp" else "epsilon"


def spent(conn: sqlite3.Connection, period: str) -> Spend:
    row = conn.execute(
        "SELECT COALESCE(SUM(rho), 0), COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0), COUNT(*) "
        "FROM privacy_charge WHERE period = ?",
        (period,),
    ).fetchone()
    return Spend(float(row[0]), float(row[1]), float(row[2]), int(row[3]))


def remaining(conn: sqlite3.Connection, policy: Policy, period: str) -> float:
    """ρ (zcdp) or ε (pure) left in ``period``; never below zero."""
    s = spent(conn, period)
    return max(cap_of(policy) - (s.rho if policy.budget.mechanism == "zcdp" else s.epsilon), 0.0)


def delta_remaining(conn: sqlite3.Connection, policy: Policy, period: str) -> float:
    """δ left in ``period`` under ``budget.max_delta``; never below zero."""
    return max(policy.budget.max_delta - spent(conn, period).delta, 0.0)


def affordable(
    conn: sqlite3.Connection, policy: Policy, period: str, cost: float, delta: float = 0.0
) -> bool:
    """Whether a release costing ``cost`` (ρ or ε) and ``delta`` still fits ``period``'s caps."""
    return _refusal(conn, policy, period, cost, delta) is None


def _refusal(
    conn: sqlite3.Connection, policy: Policy, period: str, cost: float, delta: float
) -> BudgetExhausted | None:
    left = remaining(conn, policy, period)
    if cost > left + _SLACK * cap_of(policy):
        return BudgetExhausted(period, cost, left, measure=_measure(policy))
    if delta > 0:
        left_delta = delta_remaining(conn, policy, period)
        if delta > left_delta + _SLACK * policy.budget.max_delta:
            return BudgetExhausted(period, delta, left_delta, measure="delta")
    return None


def charge(
    conn: sqlite3.Connection,
    *,
    period: str,
    release: Release,
    seq: int,
    policy: Policy | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Record ``release``'s spend against ``period``, tied to batch ``seq``, in the caller's transaction.

    With ``policy``, refuse (raise :class:`BudgetExhausted`, nothing written) if the charge would pass
    the period's cap on ρ/ε or on δ (``budget.max_delta``). The pipeline always passes it: this check
    runs inside the charging transaction, so it is the one that decides, whatever was checked before.
    """
    if release.rho is None and release.epsilon is None:
        raise ValueError("a release without ρ or ε cannot be charged (the ledger would under-count)")
    rho, eps, delta = release.rho or 0.0, release.epsilon or 0.0, release.delta or 0.0
    if policy is not None:
        refused = _refusal(conn, policy, period, rho if policy.budget.mechanism == "zcdp" else eps, delta)
        if refused is not None:
            raise refused
    conn.execute(
        "INSERT INTO privacy_charge (period, window_start, window_end, seq, rho, epsilon, delta, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (period, release.start, release.end, seq, rho, eps, delta, clock()),
    )
    conn.execute(
        "UPDATE privacy_total SET rho = rho + ?, epsilon = epsilon + ?, delta = delta + ?, "
        "releases = releases + 1 WHERE id = 1",
        (rho, eps, delta),
    )


def period_charged(conn: sqlite3.Connection, period: str, policy_digest: str) -> bool:
    """Whether the once-per-period charge of the policy's period-bounded metrics was paid for
    ``period`` (it is part of the charge of the batch that released the period's first window)."""
    row = conn.execute(
        "SELECT 1 FROM privacy_period_charge WHERE period = ? AND policy = ?", (period, policy_digest)
    ).fetchone()
    return row is not None


def mark_period_charged(conn: sqlite3.Connection, period: str, policy_digest: str, seq: int) -> None:
    """Record that batch ``seq``'s charge paid the period charge; in the charging transaction.

    Keyed by policy digest: a policy changed mid-period pays its own period charge (its windows form
    a new period vector), never less than it needs."""
    conn.execute(
        "INSERT INTO privacy_period_charge (period, policy, seq) VALUES (?, ?, ?)",
        (period, policy_digest, seq),
    )


def refuse(
    conn: sqlite3.Connection,
    *,
    period: str,
    window_start: int,
    reason: str,
    clock: Callable[[], float] = time.time,
) -> None:
    """Record that a window was not released (e.g. ``budget_exhausted``); its data is discarded."""
    conn.execute(
        "INSERT INTO privacy_refusal (period, window_start, reason, at) VALUES (?, ?, ?, ?)",
        (period, window_start, reason, clock()),
    )


def summary(conn: sqlite3.Connection, policy: Policy) -> list[PeriodSummary]:
    """Per period, oldest first: spent, cap, left, releases and refusals (``hush-agent ledger``)."""
    refusals = dict(conn.execute("SELECT period, COUNT(*) FROM privacy_refusal GROUP BY period").fetchall())
    charged = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT period, SUM(rho), SUM(epsilon), SUM(delta), COUNT(*) FROM privacy_charge GROUP BY period"
        )
    }
    cap = cap_of(policy)
    zcdp = policy.budget.mechanism == "zcdp"
    out = []
    for period in sorted(set(refusals) | set(charged)):
        rho, eps, delta, releases = charged.get(period, (0.0, 0.0, 0.0, 0))
        used = float(rho if zcdp else eps)
        out.append(
            PeriodSummary(
                period,
                _measure(policy),
                used,
                cap,
                max(cap - used, 0.0),
                float(delta),
                int(releases),
                int(refusals.get(period, 0)),
            )
        )
    return out


def charged_by_period(conn: sqlite3.Connection) -> dict[str, tuple[float, float, float]]:
    """Per period, the sum of its charges: (ρ, ε, δ)."""
    return {
        str(p): (float(r), float(e), float(d))
        for p, r, e, d in conn.execute(
            "SELECT period, SUM(rho), SUM(epsilon), SUM(delta) FROM privacy_charge GROUP BY period"
        )
    }


def charged_total(conn: sqlite3.Connection) -> Spend:
    """The sum of all charges (what the running total must equal)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(rho), 0), COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0), COUNT(*)"
        " FROM privacy_charge"
    ).fetchone()
    return Spend(float(row[0]), float(row[1]), float(row[2]), int(row[3]))


def last_seq(conn: sqlite3.Connection) -> int:
    """The highest batch seq charged (0 when nothing was)."""
    return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM privacy_charge").fetchone()[0])


def reset_seq(conn: sqlite3.Connection) -> int:
    """The seq below every charge and at most 0: reset charges (no batch) count down from it."""
    return min(int(conn.execute("SELECT COALESCE(MIN(seq), 0) FROM privacy_charge").fetchone()[0]), 0)


def rebuild_total(conn: sqlite3.Connection) -> None:
    """Set the running total to the sum of the charges, in the caller's transaction (after a reset:
    :func:`verify` holds again)."""
    conn.execute(
        "INSERT OR IGNORE INTO privacy_total (id, rho, epsilon, delta, releases) VALUES (1, 0, 0, 0, 0)"
    )
    conn.execute(
        "UPDATE privacy_total SET rho = (SELECT COALESCE(SUM(rho), 0) FROM privacy_charge),"
        " epsilon = (SELECT COALESCE(SUM(epsilon), 0) FROM privacy_charge),"
        " delta = (SELECT COALESCE(SUM(delta), 0) FROM privacy_charge),"
        " releases = (SELECT COUNT(*) FROM privacy_charge) WHERE id = 1"
    )


def total(conn: sqlite3.Connection) -> Spend:
    """The running total over all periods, maintained with every charge."""
    row = conn.execute("SELECT rho, epsilon, delta, releases FROM privacy_total WHERE id = 1").fetchone()
    return Spend(float(row[0]), float(row[1]), float(row[2]), int(row[3])) if row else Spend()


def verify(conn: sqlite3.Connection, policy: Policy | None = None) -> LedgerCheck:
    """Check that the running total equals the sum of the charges (and, with ``policy``, that no
    period is over its cap)."""
    rows = conn.execute("SELECT rho, epsilon, delta FROM privacy_charge").fetchall()
    charged = Spend(
        math.fsum(r[0] for r in rows), math.fsum(r[1] for r in rows), math.fsum(r[2] for r in rows), len(rows)
    )
    kept = total(conn)
    problems = []
    for name in ("rho", "epsilon", "delta"):
        a, b = getattr(kept, name), getattr(charged, name)
        if not math.isclose(a, b, rel_tol=_SLACK, abs_tol=1e-15):
            problems.append(f"total {name} {a!r} != sum of charges {b!r}")
    if kept.releases != charged.releases:
        problems.append(f"total releases {kept.releases} != {charged.releases} charges")
    if policy is not None:
        problems.extend(
            f"period {p.period} spent {p.spent:.6g} over its cap {p.cap:.6g}"
            for p in summary(conn, policy)
            if p.spent > p.cap * (1 + _SLACK)
        )
        max_delta = policy.budget.max_delta
        problems.extend(
            f"period {p.period} spent delta {p.delta:.6g} over its cap {max_delta:.6g}"
            for p in summary(conn, policy)
            if p.delta > max_delta * (1 + _SLACK)
        )
    return LedgerCheck(not problems, kept, charged, problems)
