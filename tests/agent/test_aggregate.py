"""Tumbling windows, lateness, released windows, flush, dimension handling and the counters."""

from __future__ import annotations

import math

import pytest

from agent.aggregate import WindowAggregator, WindowState, bucket_labels, label
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec

H = 3600


def policy(*metrics: Metric, size: str = "1h", lateness: str = "5m") -> Policy:
    return Policy(
        version=1,
        name="t",
        budget=Budget(rho=1.0),
        window=WindowSpec(size=size, lateness=lateness),
        attrs={"os": AttrRule(), "page": AttrRule(), "ok": AttrRule(kind="bool")},
        metrics=list(metrics) or [Metric(name="hits", events=["hit"], stat="count", max_contributions=100)],
    )


def ev(
    ts: float, unit: str = "u1", name: str = "hit", value: float | None = None, **attrs: str | bool
) -> Event:
    return Event(name, ts, unit, value=value, attrs=dict(attrs))


def counts(states: list[WindowState], metric: int = 0) -> dict[int, int]:
    return {s.start: sum(p[1] for p in s.metrics[metric].parts.values()) for s in states}


def test_windows_close_by_clock_and_watermark_or_idle() -> None:
    agg = WindowAggregator(policy(), next_start=0)
    agg.add([ev(10), ev(H - 1), ev(H), ev(2 * H + 5)])
    assert agg.watermark == 2 * H + 5
    assert agg.open_windows == 3
    # [0, H) closes at H + 5m by the clock; busy input also needs the watermark past it
    assert agg.ready(H + 299, idle=True) == []
    ready = agg.ready(10 * H, idle=False)  # watermark 2H + 5: [H, 2H) needs 2H + 5m
    assert [(s.start, s.end) for s in ready] == [(0, H)]
    assert counts(ready) == {0: 2}
    assert agg.ready(2 * H + 299, idle=True) == []
    assert counts(agg.ready(2 * H + 300, idle=True)) == {H: 1}
    assert agg.open_windows == 1
    assert agg.next_start == 2 * H


def test_a_future_dated_event_never_closes_windows_early() -> None:
    agg = WindowAggregator(policy(), next_start=0)
    agg.add([ev(10), ev(50 * H)])  # the watermark jumps 50 hours ahead
    assert agg.ready(H + 10, idle=False) == []
    assert agg.ready(H + 10, idle=True) == []
    assert [s.start for s in agg.ready(3 * H, idle=False)] == [0, H]


def test_late_means_before_the_schedule_position() -> None:
    agg = WindowAggregator(policy(), next_start=0)
    agg.add([ev(10), ev(5 * H)])  # the watermark is far past [0, H), but it is still open
    assert not agg.is_late(H - 1)
    agg.add([ev(H - 1)])
    assert counts(agg.ready(H + 300, idle=True)) == {0: 2}
    assert agg.is_late(H - 1)
    agg.add([ev(H - 1), ev(50)])
    assert agg.stats.late == 2


def test_already_released_windows_are_late_after_a_restart() -> None:
    agg = WindowAggregator(policy(), next_start=2 * H)
    assert agg.is_late(10)
    assert agg.is_late(H + 10)
    assert not agg.is_late(2 * H)
    agg.add([ev(10), ev(2 * H + 1)])
    assert agg.stats.late == 1
    assert counts(agg.flush()) == {2 * H: 1}


def test_every_window_of_the_schedule_is_handed_out_no_gap_skipping() -> None:
    """Issue 9, point 2: a gap of days is filled, whatever the data; later windows stay open."""
    agg = WindowAggregator(policy(), next_start=0)
    agg.add([ev(10), ev(100 * H + 10), ev(120 * H)])
    states = agg.take_until(101 * H)
    assert [s.start for s in states] == [i * H for i in range(101)]
    assert [s.events for s in states] == [1] + [0] * 99 + [1]
    assert agg.open_windows == 1
    assert agg.next_start == 101 * H  # [120H, 121H) waits for a later run


def test_the_schedule_does_not_depend_on_the_data() -> None:
    """D and D plus one unit active three days later hand out exactly the same windows."""
    d = [ev(10, unit="a"), ev(H + 10, unit="b")]
    extra = [ev(75 * H, unit="newcomer")]
    for events in (d, d + extra, []):
        agg = WindowAggregator(policy(), next_start=0)
        agg.add(events)
        assert [s.start for s in agg.ready(24 * H + 300, idle=True)] == [i * H for i in range(24)]
        assert [s.start for s in agg.take_until(96 * H)] == [i * H for i in range(24, 96)]


def test_weekly_budgets_align_windows_to_monday() -> None:
    p = Policy(
        version=1,
        name="t",
        budget=Budget(rho=1.0, period="week"),
        window=WindowSpec(size="7d", lateness="0s"),
        metrics=[Metric(name="hits", events=["hit"], stat="count")],
    )
    monday = 1_767_571_200  # 2026-01-05T00:00:00Z
    agg = WindowAggregator(p)
    agg.add([ev(monday + 3 * 86400)])
    (state,) = agg.flush()
    assert (state.start, state.end) == (monday, monday + 7 * 86400)


def test_unmatched_undeclared_missing_value_and_clamping() -> None:
    p = policy(
        Metric(
            name="by_os", events=["hit"], stat="count", dims={"os": ["linux", "mac"]}, max_contributions=9
        ),
        Metric(name="lat", events=["hit"], stat="sum", lower=0, upper=10, max_contributions=9),
        Metric(name="okc", events=["hit"], stat="count", dims={"ok": ["true", "false"]}, max_contributions=9),
    )
    agg = WindowAggregator(p)
    agg.add(
        [
            ev(1, name="other"),
            ev(2, unit="a", os="linux", value=5.0, ok=True),
            ev(3, unit="b", os="windows", value=50.0, ok=False),
            ev(4, unit="c", value=-3.0),
            ev(5, unit="d", os="mac", value=math.nan),
        ]
    )
    s = agg.stats
    assert s.unmatched == 1
    assert s.undeclared == 1 + 1 + 2  # windows (by_os); no os (by_os); no ok (okc) twice
    assert s.missing_value == 1
    assert s.clamped == 2
    (state,) = agg.flush()
    by_os, lat, okc = state.metrics
    assert {k: v[1] for k, v in by_os.parts.items()} == {("linux",): 1, ("mac",): 1}
    assert lat.parts[()][1] == round((5 + 10 + 0) / 0.01)
    assert {k: v[1] for k, v in okc.parts.items()} == {("true",): 1, ("false",): 1}


def test_caps_are_enforced_and_counted() -> None:
    p = policy(
        Metric(
            name="pages",
            events=["hit"],
            stat="count",
            dims={"page": "open"},
            max_partitions=2,
            max_contributions=3,
        )
    )
    agg = WindowAggregator(p)
    agg.add([ev(1, page="a")] * 5 + [ev(2, page="b"), ev(3, page="c"), ev(4, unit="u2", page="c")])
    assert agg.stats.contributions_dropped == 2
    assert agg.stats.partitions_dropped == 1
    (state,) = agg.flush()
    assert {k: v for k, v in state.metrics[0].parts.items()} == {
        ("a",): [1, 3],
        ("b",): [1, 1],
        ("c",): [1, 1],
    }


def test_an_extra_unit_arriving_first_cannot_suppress_a_popular_value() -> None:
    """Issue 9, point 3: D vs D + one unit that arrives first with many new values. Under the old
    global cap on distinct values (10,000) the extra unit's values filled the cap and ``hot`` was
    refused in D' only; now every value is kept and both release the same set of popular values."""
    from agent.release import release_window

    p = Policy(
        version=1,
        name="t",
        budget=Budget(rho=50.0),
        attrs={"page": AttrRule()},
        metrics=[
            Metric(name="pages", events=["hit"], stat="count", dims={"page": "open"}, max_partitions=50)
        ],
    )
    rare = [ev(1, unit=f"r{i}", page=f"rare{i}") for i in range(9_990)]
    hot = [ev(2, unit=f"h{i}", page=page) for i in range(400) for page in ("hot", "warm")]
    extra = [ev(0, unit="extra", page=f"new{i}") for i in range(50)]

    def released(events: list[Event]) -> set[str]:
        agg = WindowAggregator(p)
        agg.add(events)
        (state,) = agg.flush()
        return {row.dims["page"] for row in release_window(state, p).rows if row.value > 100}

    d, d_plus = released(rare + hot), released(extra + rare + hot)
    assert d == d_plus == {"hot", "warm"}


def test_histogram_buckets_and_distinct_units() -> None:
    p = policy(
        Metric(
            name="h",
            events=["hit"],
            stat="histogram",
            lower=0,
            upper=100,
            buckets=[0, 10, 50, 100],
            max_contributions=10,
        ),
        Metric(name="d", events=["hit"], stat="distinct_units", max_contributions=10),
    )
    agg = WindowAggregator(p)
    agg.add([ev(1, value=v) for v in (0, 9.99, 10, 49, 50, 100, 1000, -1)] + [ev(2, unit="u2", value=5)])
    (state,) = agg.flush()
    assert state.metrics[0].parts[()] == [2, 4, 2, 3]
    assert state.metrics[1].parts[()] == [2]
    assert bucket_labels([0, 10, 50, 100]) == ["0..10", "10..50", "50..100"]


def test_label() -> None:
    assert [label(True), label(False), label(3), label("x")] == ["true", "false", "3", "x"]


@pytest.mark.parametrize("n", [0, 1])
def test_ready_before_any_event(n: int) -> None:
    agg = WindowAggregator(policy())
    agg.add([ev(1, name="nope")] * n)
    assert agg.ready(10 * H, idle=True) == []
    assert agg.flush() == []  # the schedule has not started
