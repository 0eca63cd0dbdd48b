"""Guided tuning: the suggested budget is the smallest that meets the target error."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.aggregate import WindowAggregator
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec, load_policy, per_window_budget
from agent.release import expected_error, release_window
from agent.tune import suggest_budget, threshold_basis, threshold_notes
from hushmetric.errors import ConfigError

POLICY = load_policy(Path(__file__).resolve().parents[2] / "configs" / "policy.toml")


def worst(budget: float, names: list[str]) -> float:
    return max(e.half_width_95 for e in expected_error(POLICY, budget=budget) if e.metric in names)


@pytest.mark.parametrize("target", [2.0, 5.0, 40.0])
def test_suggested_budget_meets_the_target_and_is_minimal(target: float) -> None:
    names = ["signup", "kpi_viewed"]
    s = suggest_budget(POLICY, target, names)
    assert worst(s.needed_per_window, names) <= target
    assert worst(s.needed_per_window * 0.98, names) > target  # 2 % less budget misses it
    windows = 86400 // POLICY.window_seconds
    assert s.needed_per_period == pytest.approx(s.needed_per_window * windows)
    assert s.current_per_window == pytest.approx(per_window_budget(POLICY))
    assert (s.missing_now != []) == (worst(s.current_per_window, names) > target)


def test_a_zcdp_error_halves_with_four_times_the_budget() -> None:
    a = suggest_budget(POLICY, 10.0, ["signup"]).needed_per_window
    b = suggest_budget(POLICY, 5.0, ["signup"]).needed_per_window
    assert b / a == pytest.approx(4.0, rel=1e-3)


def test_bad_requests_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no metric named nope"):
        suggest_budget(POLICY, 5.0, ["nope"])
    with pytest.raises(ConfigError, match="positive"):
        suggest_budget(POLICY, 0.0)


def _open_policy(stat: str) -> Policy:
    return Policy(
        version=1,
        name="open",
        budget=Budget(rho=8.0),
        window=WindowSpec(size="1d", lateness="0s"),
        attrs={"ep": AttrRule()},
        metrics=[
            Metric(name="m", events=["e"], stat=stat, dims={"ep": "open"}, upper=10.0, max_contributions=20)
        ],
    )


def _released_values(stat: str, units: int, each: int) -> set[str]:
    policy = _open_policy(stat)
    agg = WindowAggregator(policy)
    agg.add(
        [Event("e", 5.0, f"u{u}", value=1.0, attrs={"ep": "/a"}) for u in range(units) for _ in range(each)]
    )
    (state,) = agg.flush()
    return {row.dims["ep"] for row in release_window(state, policy).rows}


@pytest.mark.parametrize(
    ("stat", "says"),
    [
        ("count", "noisy count of contributions"),
        ("distinct_units", "noisy count of distinct units (the released value itself)"),
        ("sum", "noisy count of distinct units, used only to select values; the sum is noised separately"),
        ("mean", "noisy count of distinct units, used only to select values"),
        ("histogram", "noisy count of distinct units, used only to select values"),
    ],
)
def test_threshold_text_names_what_the_threshold_is_compared_with(stat: str, says: str) -> None:
    assert says in threshold_basis(stat)
    lines = threshold_notes(expected_error(_open_policy(stat) if stat != "histogram" else POLICY))
    assert any(says in line for line in lines) or stat == "histogram"
    assert "distinct units a value" not in "\n".join(lines)  # the old, wrong explanation


def test_threshold_notes_only_for_metrics_with_a_threshold() -> None:
    notes = threshold_notes(expected_error(POLICY))  # its open metrics are both counts
    assert [n for n in notes if n.startswith("  ") and ":" in n] == [f"  count: {threshold_basis('count')}"]


def test_the_text_is_what_release_does() -> None:
    # count: the threshold (46 at σ 5 here) is on contributions — 4 units with 20 events each (80)
    # clear it by 6.8 σ, which 4 distinct units never could.
    (count,) = expected_error(_open_policy("count"))
    assert count.threshold is not None
    assert count.threshold > 4
    assert 80 - count.threshold > 6 * count.std
    assert _released_values("count", units=4, each=20) == {"/a"}
    # sum: the threshold (3 here) is on distinct units — one unit with 20 events never clears it,
    # though 20 contributions would.
    (total,) = expected_error(_open_policy("sum"))
    assert total.threshold is not None
    assert 1 < total.threshold < 20
    assert _released_values("sum", units=1, each=20) == set()
