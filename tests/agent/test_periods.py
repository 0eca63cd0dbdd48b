"""Per-period contribution bounds and period totals (issue 15): policy rules, online enforcement
across windows and restarts, the once-per-period charge, and the period-total batch.

Real state database, real OpenDP, real signing; the clock is passed in.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent import ledger, outbox, periods
from agent.aggregate import WindowAggregator
from agent.config import load_config
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, load_policy, policy_digest
from agent.release import expected_error, period_cost, window_cost
from agent.runtime import Agent
from agent.scaffold import init_dir
from hushmetric.batch import Noise, Row, decode_batch, encode_batch
from hushmetric.errors import ConfigError

H = 3600
DAY = 86400
T = 1_767_571_200  # 2026-01-05T00:00:00Z, a Monday

MINIMAL = """
version = 1
name = "t"
[budget]
rho = 1.0
[attrs.plan]
kind = "label"
[[metrics]]
name = "signups"
events = ["signup"]
stat = "count"
dims = { plan = ["free", "pro"] }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


# -- policy ----------------------------------------------------------------------------------------


def test_a_policy_without_the_new_keys_keeps_its_digest(tmp_path: Path) -> None:
    """Collectors attach approved digests: adding the keys must not change existing policies' digests
    (the value pinned was computed by the code before period bounds existed)."""
    policy = load_policy(write(tmp_path, MINIMAL))
    assert policy_digest(policy) == "60a0a02279d20e3a6cbb74fdf57ee6706a70e7662a13c8eee82c466b8a8dbc75"
    period = load_policy(write(tmp_path, MINIMAL + 'bound = "period"\n'))
    assert policy_digest(period) != policy_digest(policy)


@pytest.mark.parametrize(
    ("extra", "key", "expect"),
    [
        ("period_total = 0.3\n", "metrics[0].period_total", 'set `bound = "period"`'),
        ('bound = "period"\nperiod_total = 1.0\n', "metrics[0].period_total", "Expected `float` < 1"),
        ('bound = "day"\n', "metrics[0].bound", "Invalid enum value 'day'"),
    ],
)
def test_period_keys_are_checked(tmp_path: Path, extra: str, key: str, expect: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, MINIMAL + extra))
    assert info.value.key == key
    assert expect in str(info.value)


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (('stat = "count"', 'stat = "distinct_units"'), "not distinct_units"),
        (('dims = { plan = ["free", "pro"] }', 'dims = { plan = "open" }'), "declared dimension values"),
    ],
)
def test_period_bounds_refuse_what_they_cannot_bound(
    tmp_path: Path, change: tuple[str, str], expect: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, MINIMAL.replace(*change) + 'bound = "period"\n'))
    assert info.value.key == "metrics[0].bound"
    assert expect in str(info.value)


def test_a_period_total_only_for_sums_of_windows(tmp_path: Path) -> None:
    text = MINIMAL.replace('stat = "count"', 'stat = "mean"') + 'bound = "period"\nperiod_total = 0.3\n'
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, text))
    assert info.value.key == "metrics[0].period_total"
    assert "not mean" in str(info.value)


# -- aggregation -----------------------------------------------------------------------------------


def policy(bound: str = "period", *, total: float = 0.0, contributions: int = 2) -> Policy:
    return Policy(
        version=1,
        name="t",
        budget=Budget(rho=2.4),
        attrs={"plan": AttrRule()},
        metrics=[
            Metric(
                name="signup",
                events=["signup"],
                stat="count",
                dims={"plan": ["free", "team"]},
                max_contributions=contributions,
                bound=bound,  # type: ignore[arg-type]
                period_total=total,
            ),
            Metric(name="views", events=["view"], stat="count"),
        ],
    )


def counts(states: Any, metric: int = 0) -> list[int]:
    return [sum(acc[1] for acc in s.metrics[metric].parts.values()) for s in states]


def test_a_unit_is_capped_over_the_whole_period_not_per_window() -> None:
    p = policy()
    agg = WindowAggregator(p, next_start=T)
    # One unit, three events in each of the day's first four windows, and again the next day.
    flood = [Event("signup", T + w * H + i, "u1", attrs={"plan": "free"}) for w in range(4) for i in range(3)]
    agg.add([*flood, Event("signup", T + DAY + 5, "u1", attrs={"plan": "free"})])
    states = agg.take_until(T + DAY + H)
    assert counts(states)[:4] == [2, 0, 0, 0]
    assert counts(states)[-1] == 1
    assert agg.stats.contributions_dropped == 10
    # The window-bounded metric next to it keeps counting per window.
    agg2 = WindowAggregator(policy("window"), next_start=T)
    agg2.add(flood)
    assert counts(agg2.take_until(T + 4 * H)) == [2, 2, 2, 2]


def test_period_bounders_are_dropped_when_the_schedule_leaves_the_period() -> None:
    p = policy()
    agg = WindowAggregator(p, next_start=T)
    agg.add([Event("signup", T + 5, f"u{i}", attrs={"plan": "free"}) for i in range(50)])
    bounder = agg.period_usage("signup", "2026-01-05")
    assert bounder is not None
    assert bounder.units == 50
    agg.take_until(T + DAY)
    assert agg.period_usage("signup", "2026-01-05") is None


def test_restored_usage_counts_against_the_bound() -> None:
    p = policy()
    agg = WindowAggregator(p, next_start=T + 6 * H)
    agg.restore_period_usage("signup", "2026-01-05", [("u1", ("free",), 2), ("u2", ("free",), 1)])
    agg.add(
        [Event("signup", T + 7 * H + i, u, attrs={"plan": "free"}) for u in ("u1", "u2") for i in range(3)]
    )
    (state,) = agg.take_until(T + 8 * H)[-1:]
    assert counts([state]) == [1]  # u1 had used its 2, u2 one of 2


# -- release ---------------------------------------------------------------------------------------


def test_period_bounds_give_each_window_the_noise_of_one_release_over_the_period() -> None:
    """k = 24 windows: window bounds give each window ρ_m/24; period bounds give the whole vector ρ_m,
    so σ falls by √24 — and by √(24 · 0.7) with 30 % of the budget on the period total."""
    window = {e.metric: e for e in expected_error(policy("window"))}
    period = {e.metric: e for e in expected_error(policy())}
    levels = {e.metric: e for e in expected_error(policy(total=0.3))}
    assert window["signup"].std / period["signup"].std == pytest.approx(math.sqrt(24), rel=1e-6)
    assert window["signup"].std / levels["signup"].std == pytest.approx(math.sqrt(24 * 0.7), rel=1e-6)
    assert period["signup"].bound == "period"
    assert window["signup"].bound == "window"
    assert levels["signup"].total_std == pytest.approx(window["signup"].std / math.sqrt(24 * 0.3), rel=1e-6)
    assert window["views"].std == period["views"].std  # the other metric is unchanged


def test_the_period_charge_is_the_period_share_and_the_windows_the_rest() -> None:
    p = policy(total=0.3)
    cost, _ = window_cost(p)
    assert cost == pytest.approx(2.4 / 24 / 2)  # views only, every window
    assert period_cost(p) == pytest.approx(2.4 / 2)  # signup, windows and total, once per day
    assert 24 * cost + period_cost(p) <= 2.4 * (1 + 1e-9)


def test_a_window_row_encodes_as_before_and_a_period_row_carries_its_level() -> None:
    """Wire compatibility: a window row has no `level` key (same bytes as an older agent's)."""
    import msgspec

    row = Row("signup", "count", {}, 3.0, Noise("gaussian", 1.0))
    assert "level" not in msgspec.msgpack.decode(msgspec.msgpack.encode(row))
    period = Row("signup", "count", {}, 3.0, Noise("gaussian", 1.0), "period")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(period))["level"] == "period"
    assert encode_batch  # the batch codec is the one msgspec encoder


# -- runtime ---------------------------------------------------------------------------------------

POLICY = """
version = 1
name = "periods-test"
[budget]
rho = 2.4
[window]
size = "1h"
lateness = "5m"
[attrs.plan]
kind = "label"
[[metrics]]
name = "signup"
events = ["signup"]
stat = "count"
dims = {{ plan = ["free", "team"] }}
max_contributions = 2
bound = "period"
period_total = {total}
[[metrics]]
name = "views"
events = ["view"]
stat = "count"
"""


def make_dir(root: Path, total: float = 0.3) -> Path:
    init_dir(root, tenant="acme", collector=None, agent="edge-1", force=False)
    (root / "policy.toml").write_text(POLICY.format(total=total))
    text = (root / "agent.toml").read_text()
    source = f'[[sources]]\ntype = "file"\npath = "{root / "unused.jsonl"}"\nfollow = false\n'
    (root / "agent.toml").write_text(text.replace('[[sources]]\ntype = "demo"\nseed = 7\n', source))
    return root / "agent.toml"


def run_once(config: Path, events: list[dict[str, Any]], start: int, stop: int) -> Any:
    feed = config.parent / "feed.jsonl"
    feed.write_text("".join(json.dumps(e) + "\n" for e in events))
    agent = Agent(load_config(config), clock=lambda: T + 10 * DAY)

    async def go() -> Any:
        try:
            return await agent.run_once(input_path=str(feed), start=start, stop=stop)
        finally:
            await agent.aclose()

    return asyncio.run(go())


def batches(config: Path) -> list[Any]:
    conn = sqlite3.connect(config.parent / "state" / "agent.db")
    try:
        return [decode_batch(s.payload) for s in outbox.pending(conn, 100_000)]
    finally:
        conn.close()


def signup(ts: float, unit: str, plan: str = "free") -> dict[str, Any]:
    return {"name": "signup", "ts": ts, "unit": unit, "attrs": {"plan": plan}}


def public(batch: Any) -> tuple[Any, ...]:
    rows = sorted((r.metric, r.stat, r.level, tuple(sorted(r.dims.items())), r.noise) for r in batch.rows)
    return (batch.seq, batch.created, batch.window, batch.policy, batch.privacy, rows)


def test_two_days_release_windows_then_the_total_and_charge_each_day_once(tmp_path: Path) -> None:
    config = make_dir(tmp_path / "site")
    events = [signup(T + 60 * i, f"u{i}") for i in range(30)]
    report = run_once(config, events, T, T + 2 * DAY)
    assert report.windows_released == 48
    assert report.totals_released == 2
    out = batches(config)
    assert len(out) == 50  # 24 windows and the day's total, twice
    p = load_policy(config.parent / "policy.toml")
    cost, _ = window_cost(p)
    for day in range(2):
        day_batches = out[day * 25 : (day + 1) * 25]
        first, *rest, total = day_batches
        assert first.privacy.rho == pytest.approx(cost + period_cost(p))
        assert all(b.privacy.rho == pytest.approx(cost) for b in rest)
        assert total.privacy.rho == 0.0
        assert (total.window.start, total.window.end) == (day_batches[0].window.start, rest[-1].window.end)
        assert {r.level for r in total.rows} == {"period"}
        assert {r.metric for r in total.rows} == {"signup"}
        assert {r.level for b in day_batches[:-1] for r in b.rows} == {"window"}
    conn = sqlite3.connect(config.parent / "state" / "agent.db")
    try:
        for summary in ledger.summary(conn, p):
            assert summary.spent == pytest.approx(2.4)
            assert summary.spent <= summary.cap * (1 + 1e-9)
        assert ledger.verify(conn, p).ok
    finally:
        conn.close()


def test_a_unit_flooding_every_window_changes_no_public_byte(tmp_path: Path) -> None:
    """Neighbouring inputs under period bounds: D vs D plus one unit with events in every window of
    the day. Same batches (windows, seqs, created, privacy, row keys and scales, the total's too)."""
    d = [signup(T + 60 * i, f"u{i}") for i in range(20)]
    flood = [
        signup(T + w * H + i, "flooder", plan)
        for w in range(24)
        for i in range(5)
        for plan in ("free", "team")
    ]
    streams = []
    for name, events in (("d", d), ("d_plus", d + flood)):
        config = make_dir(tmp_path / name)
        run_once(config, events, T, T + DAY)
        streams.append([public(b) for b in batches(config)])
    assert streams[0] == streams[1]
    assert len(streams[0]) == 25


def test_a_restart_mid_period_keeps_the_bounds_and_the_single_charge(tmp_path: Path) -> None:
    """Run 1 releases the morning; run 2 (a new process) the rest of the day. The unit that used its
    bound in the morning cannot add more in the afternoon, and the day is charged once."""
    config = make_dir(tmp_path / "site")
    run_once(config, [signup(T + H + i, "u1") for i in range(2)], T, T + 6 * H)
    db = config.parent / "state" / "agent.db"
    conn = sqlite3.connect(db)
    try:
        digest = policy_digest(load_policy(config.parent / "policy.toml"))
        assert periods.usage(conn, digest, "signup", "2026-01-05") == [("u1", ("free",), 2)]
    finally:
        conn.close()
    afternoon = [signup(T + 12 * H + i, "u1") for i in range(3)] + [signup(T + 13 * H, "u2")]
    run_once(config, afternoon, T + 6 * H, T + DAY)
    conn = sqlite3.connect(db)
    try:
        p = load_policy(config.parent / "policy.toml")
        ((_, n),) = conn.execute("SELECT unit, n FROM period_usage WHERE unit = 'u1'").fetchall() or [
            (None, None)
        ]
        assert n == 2  # the afternoon's three events of u1 were all dropped
        (day,) = ledger.summary(conn, p)
        cost, _ = window_cost(p)
        assert day.spent == pytest.approx(24 * cost + period_cost(p))
        totals = periods.totals(conn, p, digest, "2026-01-05")
        assert totals[0] is not None
        assert totals[0].parts[("free",)][1] == 3
    finally:
        conn.close()
    out = batches(config)
    assert len(out) == 25
    assert [b.privacy.rho > 0.1 for b in out].count(True) == 1


def test_a_schedule_starting_mid_day_still_pays_the_whole_period(tmp_path: Path) -> None:
    """The charge never depends on how many windows of the period are left."""
    config = make_dir(tmp_path / "site")
    run_once(config, [], T + 20 * H, T + DAY)
    out = batches(config)
    p = load_policy(config.parent / "policy.toml")
    cost, _ = window_cost(p)
    assert len(out) == 5
    assert out[0].privacy.rho == pytest.approx(cost + period_cost(p))
    assert (out[-1].window.start, out[-1].window.end) == ("2026-01-05T20:00:00Z", "2026-01-06T00:00:00Z")


def test_a_refused_last_window_still_closes_the_period_with_its_total(tmp_path: Path) -> None:
    """The total was paid with the period's first window: when the last window is refused (another
    writer spent the rest of the day meanwhile), the total of the released windows still leaves."""
    config = make_dir(tmp_path / "site")
    agent = Agent(load_config(config), clock=lambda: T + 10 * DAY)
    try:
        agg = WindowAggregator(agent.policy, next_start=T)
        agg.add([Event("signup", T + w * H + 5, f"u{w}", attrs={"plan": "free"}) for w in range(24)])
        states = agg.take_until(T + DAY)
        for state in states[:-1]:
            assert agent._release_one(state) is not None
        left = ledger.remaining(agent.conn, agent.policy, "2026-01-05")
        other = sqlite3.connect(config.parent / "state" / "agent.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO privacy_charge (period, window_start, window_end, seq, rho, at) VALUES (?, ?, ?, ?, ?, ?)",
            ("2026-01-05", 0, 0, 10_000, left, 0.0),
        )
        other.execute("COMMIT")
        other.close()
        assert agent._release_one(states[-1]) is None
    finally:
        asyncio.run(agent.aclose())
    out = batches(config)
    assert len(out) == 24
    assert {r.level for r in out[-1].rows} == {"period"}
    assert out[-1].window.end == "2026-01-06T00:00:00Z"
