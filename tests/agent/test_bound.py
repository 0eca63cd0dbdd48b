"""Contribution bounding: caps per unit are never exceeded, clamping is exact, sensitivity is honest."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.aggregate import WindowAggregator
from agent.bound import CONTRIBUTION_DROPPED, NEW, PARTITION_DROPPED, Bounder, Bounds, quantum_for
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy

units = st.sampled_from([f"u{i}" for i in range(6)])
keys = st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]))
caps = st.integers(min_value=1, max_value=4)


@given(st.lists(st.tuples(units, keys), max_size=200), caps, caps)
def test_bounder_never_exceeds_caps(stream: list[tuple[str, tuple[str, ...]]], p: int, c: int) -> None:
    bounder = Bounder(p, c)
    admitted: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for unit, key in stream:
        outcome = bounder.admit(unit, key)
        if outcome < CONTRIBUTION_DROPPED:
            assert (outcome == NEW) == (admitted[unit, key] == 0)
            admitted[unit, key] += 1
        elif outcome == PARTITION_DROPPED:
            assert admitted[unit, key] == 0
        else:
            assert admitted[unit, key] == c
    per_unit: defaultdict[str, int] = defaultdict(int)
    for (unit, _), n in admitted.items():
        assert 1 <= n <= c
        per_unit[unit] += 1
    assert all(n <= p for n in per_unit.values())
    assert all(bounder.partitions_of(u) == n for u, n in per_unit.items())


bounds_pairs = st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.floats(1e-3, 1e6, allow_nan=False)).map(
    lambda t: (t[0], t[0] + t[1])
)


@given(bounds_pairs, st.floats(allow_nan=False))
def test_clamp_and_fixed_point(bounds: tuple[float, float], value: float) -> None:
    lower, upper = bounds
    b = Bounds.of(Metric(name="m", events=["e"], stat="sum", lower=lower, upper=upper))
    clamped = b.clamp(value)
    assert lower <= clamped <= upper
    if lower <= value <= upper:
        assert clamped == value
    assert abs(b.fixed(value)) <= b.magnitude
    assert max(abs(lower), abs(upper)) / b.quantum * (1 + 1e-9) >= 1000
    assert abs(b.fixed(value) * b.quantum - clamped) <= b.quantum / 2 * (1 + 1e-9)


def test_quantum_is_decimal() -> None:
    assert quantum_for(0, 1) == 0.001
    assert quantum_for(0, 5000) == 1
    assert quantum_for(-20, 10) == 0.01


STATS = ["count", "sum", "mean", "histogram", "distinct_units"]


def _policy(stat: str, p: int, c: int) -> Policy:
    metric = Metric(
        name="m",
        events=["e"],
        stat=stat,  # type: ignore[arg-type]  # a Literal chosen from STATS
        lower=-5.0,
        upper=10.0,
        buckets=[-5.0, 0.0, 5.0, 10.0] if stat == "histogram" else [],
        dims={"k": ["a", "b", "c", "d"]},
        max_partitions=p,
        max_contributions=c,
    )
    return Policy(version=1, name="t", budget=Budget(rho=1.0), attrs={"k": AttrRule()}, metrics=[metric])


def _vector(policy: Policy, events: list[Event]) -> list[int]:
    agg = WindowAggregator(policy)
    agg.add(events)
    (state,) = agg.flush()
    bounds = Bounds.of(policy.metrics[0])
    parts = state.metrics[0].parts
    out: list[int] = []
    for key in ("a", "b", "c", "d"):
        acc = parts.get((key,), [0] * 5)
        stat = policy.metrics[0].stat
        if stat == "mean":
            out += [acc[1], acc[2] * bounds.mean_count_weight]
        elif stat == "distinct_units":
            out.append(acc[0])
        elif stat == "histogram":
            out += acc[1:4] + [0] * (3 - len(acc[1:4]))
        else:
            out.append(acc[1])
    return out


events_st = st.lists(
    st.builds(
        lambda u, k, v: Event("e", 10.0, u, value=v, attrs={"k": k}),
        units,
        st.sampled_from(["a", "b", "c", "d"]),
        st.floats(-100, 100, allow_nan=False),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(events_st, st.sampled_from(STATS), caps, caps, units)
def test_removing_a_unit_moves_the_aggregate_within_the_sensitivity(
    events: list[Event], stat: str, p: int, c: int, victim: str
) -> None:
    """The property the noise relies on: one unit's whole presence changes the released integer
    vector by at most the declared L1 and L2 sensitivity."""
    policy = _policy(stat, p, c)
    with_unit = _vector(policy, [Event("e", 0.0, "anchor"), *events])
    without = _vector(policy, [Event("e", 0.0, "anchor"), *(e for e in events if e.unit != victim)])
    diff = [a - b for a, b in zip(with_unit, without, strict=True)]
    sens = Bounds.of(policy.metrics[0]).sensitivity(stat)
    assert sum(abs(d) for d in diff) <= sens.l1
    assert math.sqrt(sum(d * d for d in diff)) <= sens.l2 * (1 + 1e-12)
    assert sum(1 for d in diff if d) <= sens.l0 * (3 if stat in ("histogram", "mean") else 1)


@settings(max_examples=100, deadline=None)
@given(events_st, caps, caps)
def test_aggregator_never_lets_a_unit_exceed_its_caps(events: list[Event], p: int, c: int) -> None:
    metric = Metric(
        name="m", events=["e"], stat="count", dims={"k": "open"}, max_partitions=p, max_contributions=c
    )
    pol = Policy(version=1, name="t", budget=Budget(rho=1.0), attrs={"k": AttrRule()}, metrics=[metric])
    agg = WindowAggregator(pol)
    agg.add(events)
    admitted = 0
    for state in agg.flush():
        mw = state.metrics[0]
        admitted += sum(mw.contributions.values())
        assert len(mw.parts) <= p * len({u for u, _ in mw.contributions})  # memory: units x cap
        per_unit: Counter[str] = Counter()
        per_part: Counter[tuple[str, ...]] = Counter()
        for (unit, key), n in mw.contributions.items():
            assert 1 <= n <= c
            per_unit[unit] += 1
            per_part[key] += n
        assert all(n <= p for n in per_unit.values())
        assert {k: acc[1] for k, acc in mw.parts.items()} == dict(per_part)
        assert {k: acc[0] for k, acc in mw.parts.items()} == dict(
            Counter(key for (_, key) in mw.contributions)
        )
    s = agg.stats
    assert admitted + s.contributions_dropped + s.partitions_dropped == len(events)
