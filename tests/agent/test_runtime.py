"""The daemon's release path in process: atomic charging, the fixed window schedule, what leaves.

Real state database, real OpenDP, real signing; the clock is passed in.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent import journal, ledger, outbox
from agent.aggregate import WindowAggregator
from agent.config import load_config
from agent.model import Event
from agent.release import release_window, window_cost
from agent.runtime import Agent
from agent.setup import init_dir
from agent.state import transaction
from hushmetric.batch import decode_batch

H = 3600
T = 1_767_571_200  # 2026-01-05T00:00:00Z, a Monday

POLICY = """
version = 1
name = "runtime-test"
[budget]
rho = {rho}
[window]
size = "1h"
lateness = "5m"
[attrs.plan]
kind = "label"
[attrs.page]
kind = "label"
[[metrics]]
name = "signup"
events = ["signup"]
stat = "count"
dims = {{ plan = ["free", "team"] }}
[[metrics]]
name = "pages"
events = ["view"]
stat = "count"
dims = {{ page = "open" }}
max_partitions = 3
"""


def make_dir(root: Path, *, rho: float = 2.4, source: str | None = None) -> Path:
    init_dir(root, tenant="acme", collector=None, agent="edge-1", force=False)
    (root / "policy.toml").write_text(POLICY.format(rho=rho))
    if source is not None:
        text = (root / "agent.toml").read_text()
        (root / "agent.toml").write_text(text.replace('[[sources]]\ntype = "demo"\nseed = 7\n', source))
    return root / "agent.toml"


def new_agent(config: Path, now: float) -> Agent:
    return Agent(load_config(config), clock=lambda: now)


def test_a_charge_that_no_longer_fits_rolls_back_and_is_recorded(tmp_path: Path) -> None:
    """Issue 9, point 5: affordability is re-checked inside the charging transaction. Another writer
    spends the period between the early check and the commit: nothing is sealed or charged."""
    agent = new_agent(make_dir(tmp_path / "site"), T + 10 * H)
    try:
        agg = WindowAggregator(agent.policy)
        agg.add([Event("signup", T + 5, "u1", attrs={"plan": "free"})])
        (state,) = agg.flush()
        period = ledger.period_of(agent.policy, state.start)
        cost, _ = window_cost(agent.policy)
        released = release_window(state, agent.policy)  # noise drawn while the period still had room
        other = sqlite3.connect(tmp_path / "site" / "state" / "agent.db", isolation_level=None)
        with transaction(other):  # a second writer takes the whole day's budget meanwhile
            for seq in range(24):
                fake = msgspec_release(state.start + seq * H, cost)
                ledger.charge(other, period=period, release=fake, seq=1000 + seq)
        other.close()
        assert agent.commit_release(state, released, period) is None
        assert outbox.depth(agent.conn).count == 0
        (day,) = ledger.summary(agent.conn, agent.policy)
        assert day.releases == 24 and day.refusals == 1 and day.spent <= day.cap * (1 + 1e-9)
        assert journal.released_windows(agent.conn) == {state.start}  # discarded, not retried
    finally:
        asyncio.run(agent.aclose())


def msgspec_release(start: int, rho: float) -> Any:
    from agent.release import Release

    return Release(start=start, end=start + H, rows=[], rho=rho, epsilon=None, delta=None)


def batches(config: Path) -> list[Any]:
    conn = sqlite3.connect(config.parent / "state" / "agent.db")
    try:
        return [decode_batch(s.payload) for s in outbox.pending(conn, 100_000)]
    finally:
        conn.close()


def write_events(path: Path, events: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


@pytest.fixture
def fixed_now() -> float:
    return float(T + 3 * 86400)
