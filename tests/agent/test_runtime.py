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
from agent.scaffold import init_dir
from agent.state import transaction
from hushmetric.batch import decode_batch
from hushmetric.errors import ConfigError

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
        assert day.releases == 24
        assert day.refusals == 1
        assert day.spent <= day.cap * (1 + 1e-9)
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


def file_source(path: Path) -> str:
    return f'[[sources]]\ntype = "file"\npath = "{path}"\nfollow = false\n'


def signup(ts: float, unit: str, plan: str = "free", **extra: str) -> dict[str, Any]:
    return {"name": "signup", "ts": ts, "unit": unit, "attrs": {"plan": plan, **extra}}


def run_once(config: Path, now: float, events: list[dict[str, Any]], **kw: Any) -> tuple[Any, list[Any]]:
    feed = config.parent / "feed.jsonl"
    feed.write_text("".join(json.dumps(e) + "\n" for e in events))
    agent = new_agent(config, now)

    async def go() -> Any:
        try:
            return await agent.run_once(input_path=str(feed), **kw)
        finally:
            await agent.aclose()

    return asyncio.run(go()), batches(config)


def public(batch: Any) -> tuple[Any, ...]:
    """Every field of a batch but the noisy values (and prev, which hashes them)."""
    rows = sorted((r.metric, r.stat, tuple(sorted(r.dims.items())), r.noise) for r in batch.rows)
    return (batch.seq, batch.created, batch.window, batch.policy, batch.privacy, batch.redactions, rows)


def test_neighbouring_inputs_give_the_same_batch_stream(tmp_path: Path) -> None:
    """Issue 9, points 1 and 2: D vs D plus one unit three days later, with unused and PII attributes.
    Same windows, seqs, created, privacy fields, row keys; no counters; only noise differs."""
    d = [signup(T + 60 * i, f"u{i}") for i in range(20)] + [signup(T + 2 * H, "v", "team")]
    extra = [signup(T + 3 * 86400 + 5, "newcomer", "team", email="someone@example.org", junk="x")]
    now = T + 10 * 86400
    streams = []
    for name, events in (("d", d), ("d_plus", d + extra)):
        config = make_dir(tmp_path / name, source=file_source(tmp_path / name / "unused.jsonl"))
        report, out = run_once(config, now, events, start=T, stop=T + 4 * 86400)
        assert report.windows_released == 96
        assert report.range_from == "2026-01-05T00:00:00Z"
        streams.append([public(b) for b in out])
    assert streams[0] == streams[1]
    first = streams[0][0]
    assert first[0] == 1
    assert first[5] == {}
    assert first[1] == "2026-01-15T00:00:00Z"  # created: the session's start, not when data came


def test_created_is_the_window_close_once_the_session_is_older(tmp_path: Path) -> None:
    config = make_dir(tmp_path / "site", source=file_source(tmp_path / "site" / "unused.jsonl"))
    agent = new_agent(config, T)
    try:
        agg = WindowAggregator(agent.policy)
        agg.add([Event("signup", T + 5 * H + 1, "u1", attrs={"plan": "free"})])
        (state,) = agg.flush()
        assert agent.created_for(state) == T + 6 * H + 300  # end + lateness
    finally:
        asyncio.run(agent.aclose())


def test_events_after_the_range_wait_in_the_journal_and_from_cannot_go_back(tmp_path: Path) -> None:
    config = make_dir(tmp_path / "site", source=file_source(tmp_path / "site" / "unused.jsonl"))
    now = T + 10 * 86400
    events = [signup(T + 10, "a"), signup(T + 30 * H, "b")]
    report, out = run_once(config, now, events, start=T, stop=T + 86400)
    assert report.windows_released == 24
    assert report.late == 0
    assert len(out) == 24
    assert journaled(config) == 1  # b, after --to, waits for the next run
    # the next run continues the schedule and releases the event kept in the journal
    report, out = run_once(config, now, [], stop=T + 2 * 86400)
    assert report.range_from == "2026-01-06T00:00:00Z"
    assert report.windows_released == 24
    assert len(out) == 48
    assert journaled(config) == 0
    with pytest.raises(ConfigError, match="--from: 2026-01-05T00:00:00Z is before windows already released"):
        run_once(config, now, [], start=T)
    with pytest.raises(ConfigError, match=r"--to: 2026-01-06T00:00:00Z is before --from 2026-01-07"):
        run_once(config, now, [], start=T + 2 * 86400, stop=T + 86400)


def test_without_from_history_is_late_and_the_report_says_so(tmp_path: Path) -> None:
    config = make_dir(tmp_path / "site", source=file_source(tmp_path / "site" / "unused.jsonl"))
    now = T + 10 * 86400 + 1800
    report, out = run_once(config, now, [signup(T + 10, "a"), signup(now - 60, "b")])
    assert report.range_from_now
    assert report.late == 1
    assert out == []
    assert report.range_from == report.range_to == "2026-01-15T00:00:00Z"


def test_the_demo_source_declares_the_default_range(tmp_path: Path) -> None:
    demo = '[[sources]]\ntype = "demo"\nseed = 7\nusers = 20\ndays = 1\n'
    config = make_dir(tmp_path / "site", source=demo)
    agent = new_agent(config, T + 30 * 86400)
    try:
        assert agent.plan_range(input_path=None, start=None, stop=None) == (T, T + 86400, False)
    finally:
        asyncio.run(agent.aclose())


def test_the_daemon_starts_its_schedule_once_and_catches_up_after_downtime(tmp_path: Path) -> None:
    config = make_dir(tmp_path / "site", source=file_source(tmp_path / "site" / "unused.jsonl"))
    first = new_agent(config, T + 30 * 60)
    try:
        assert first._start_schedule(first.clock(), persist=True) == T
    finally:
        asyncio.run(first.aclose())
    # down for a day and a half: every missed window is released, each charged to its own day
    later = new_agent(config, T + 36 * H + 300)

    async def catch_up() -> None:
        try:
            await later.recover()
            await later.release(later.aggregator.ready(later.clock(), idle=True))
        finally:
            await later.aclose()

    asyncio.run(catch_up())
    out = batches(config)
    assert [b.seq for b in out] == list(range(1, 37))
    periods = {p.period: p.releases for p in ledger_summary(config)}
    assert periods == {"2026-01-05": 24, "2026-01-06": 12}


def ledger_summary(config: Path) -> list[Any]:
    from agent.policy import load_policy

    conn = sqlite3.connect(config.parent / "state" / "agent.db")
    try:
        return ledger.summary(conn, load_policy(config.parent / "policy.toml"))
    finally:
        conn.close()


def journaled(config: Path) -> int:
    conn = sqlite3.connect(config.parent / "state" / "agent.db")
    try:
        return sum(len(chunk) for chunk in journal.replay(conn))
    finally:
        conn.close()
