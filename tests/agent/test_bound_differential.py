"""The bounding hand-inlined in ``WindowAggregator.add`` (the agent's hot loop) against ``Bounder.admit``.

The noise scale is derived from :class:`agent.bound.Bounds`, and :class:`agent.bound.Bounder` is the
readable statement of what the caps mean. The aggregator inlines ``admit`` for speed, so the two are
run side by side here on the same events, in the same order, cut into batches anywhere: every
contribution must be admitted or dropped the same way, with the same reason, leaving the same state
and the same per-partition unit counts.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.aggregate import WindowAggregator
from agent.bound import CONTRIBUTION_DROPPED, NEW, PARTITION_DROPPED, Bounder
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec

H = 3600
UNITS = ["u1", "u2", "u3", "u4"]
PAGES = ["a", "b", "c", "d", "e"]
STATS = ["count", "sum", "mean", "distinct_units"]


def policy(
    stat: str, max_partitions: int, max_contributions: int, open_dim: bool, bound: str = "window"
) -> Policy:
    metric = Metric(
        name="m",
        events=["hit"],
        stat=stat,  # type: ignore[arg-type]
        lower=0.0,
        upper=10.0,
        dims={"page": "open" if open_dim else PAGES},
        max_partitions=max_partitions,
        max_contributions=max_contributions,
        bound=bound,  # type: ignore[arg-type]
    )
    return Policy(
        version=1,
        name="t",
        budget=Budget(rho=1.0),
        window=WindowSpec(size="1h", lateness="5m"),
        attrs={"page": AttrRule()},
        metrics=[metric],
    )


events = st.lists(
    st.tuples(st.sampled_from(UNITS), st.sampled_from(PAGES), st.floats(-5, 15), st.integers(0, H - 1)),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    stat=st.sampled_from(STATS),
    max_partitions=st.integers(1, 4),
    max_contributions=st.integers(1, 4),
    open_dim=st.booleans(),
    bound=st.sampled_from(["window", "period"]),
    rows=events,
    cuts=st.lists(st.integers(0, 120), max_size=5),
)
def test_the_inlined_bounding_decides_like_bounder_admit(
    stat: str,
    max_partitions: int,
    max_contributions: int,
    open_dim: bool,
    bound: str,
    rows: list[tuple[str, str, float, int]],
    cuts: list[int],
) -> None:
    """Per window, and per period (one window of the period here: the window records what the
    period's bounder admitted, so both hold the reference's state)."""
    agg = WindowAggregator(policy(stat, max_partitions, max_contributions, open_dim, bound))
    batch = [
        Event("hit", float(ts), unit, value=value, attrs={"page": page}) for unit, page, value, ts in rows
    ]
    bounds = sorted({0, len(batch), *(c for c in cuts if c <= len(batch))})
    for lo, hi in itertools.pairwise(bounds):
        agg.add(batch[lo:hi])

    reference = Bounder(max_partitions, max_contributions)
    outcomes = [reference.admit(e.unit, (str(e.attrs["page"]),)) for e in batch]
    units_per_partition: dict[tuple[str, ...], int] = {}
    for e, outcome in zip(batch, outcomes, strict=True):
        if outcome == NEW:
            key = (str(e.attrs["page"]),)
            units_per_partition[key] = units_per_partition.get(key, 0) + 1

    windows = agg.flush()
    assert len(windows) == (1 if batch else 0)
    assert agg.stats.partitions_dropped == outcomes.count(PARTITION_DROPPED)
    assert agg.stats.contributions_dropped == outcomes.count(CONTRIBUTION_DROPPED)
    if windows:
        mw = windows[0].metrics[0]
        # per period, the window records contributions only; the period's bounder counts partitions
        assert mw.touched == (reference.touched if bound == "window" else {})
        assert mw.contributions == reference.contributions
        if bound == "period":
            period = agg.period_usage("m", windows[0].period)
            assert period is not None
            assert period.touched == reference.touched
            assert period.contributions == reference.contributions
        assert {key: part[0] for key, part in mw.parts.items()} == units_per_partition


@settings(max_examples=100, deadline=None)
@given(
    max_contributions=st.integers(1, 4),
    bound=st.sampled_from(["window", "period"]),
    units=st.lists(st.sampled_from(UNITS), max_size=80),
)
def test_a_metric_without_dimensions_decides_like_bounder_admit(
    max_contributions: int, bound: str, units: list[str]
) -> None:
    """Without dimensions there is one partition, so the aggregator keeps no per-unit partition
    count (``touched``): the decisions and the contributions must still be admit's."""
    metric = Metric(
        name="m", events=["hit"], stat="count", max_contributions=max_contributions, bound=bound  # type: ignore[arg-type]
    )
    p = Policy(
        version=1, name="t", budget=Budget(rho=1.0), window=WindowSpec(size="1h", lateness="5m"),
        attrs={}, metrics=[metric],
    )  # fmt: skip
    agg = WindowAggregator(p)
    agg.add([Event("hit", float(i), unit) for i, unit in enumerate(units)])
    reference = Bounder(1, max_contributions)
    outcomes = [reference.admit(unit, ()) for unit in units]
    windows = agg.flush()
    assert agg.stats.partitions_dropped == outcomes.count(PARTITION_DROPPED) == 0
    assert agg.stats.contributions_dropped == outcomes.count(CONTRIBUTION_DROPPED)
    if windows:
        assert windows[0].metrics[0].contributions == reference.contributions
        assert windows[0].metrics[0].parts.get((), [0])[0] == len(reference.touched)
