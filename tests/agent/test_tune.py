"""Guided tuning: the suggested budget is the smallest that meets the target error."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.policy import load_policy, per_window_budget
from agent.release import expected_error
from agent.tune import suggest_budget
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
