"""Policy loading: the shipped example is valid, and every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.policy import load_policy, per_window_budget, policy_digest
from hushmetric.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "policy.toml"

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


def test_shipped_example_is_valid() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.metrics
    assert policy.budget.mechanism == "zcdp"
    # a full period of windows fits the cap exactly
    windows_per_day = 86400 // policy.window_seconds
    assert per_window_budget(policy) * windows_per_day == pytest.approx(policy.budget.rho)


def test_digest_ignores_comments_and_layout(tmp_path: Path) -> None:
    a = load_policy(write(tmp_path, MINIMAL))
    b = load_policy(
        write(tmp_path, "# a comment\n" + MINIMAL.replace('name = "t"', 'name   =   "t"  # same'))
    )
    assert policy_digest(a) == policy_digest(b)
    c = load_policy(write(tmp_path, MINIMAL.replace("rho = 1.0", "rho = 2.0")))
    assert policy_digest(a) != policy_digest(c)


@pytest.mark.parametrize(
    ("change", "key", "expect"),
    [
        (("rho = 1.0", 'rho = "lots"'), "budget.rho", "Expected `float"),
        (("rho = 1.0", "rho = 1.0\nrhoo = 2"), "budget", "unknown key `rhoo`"),
        (('stat = "count"', 'stat = "median"'), "metrics[0].stat", "Invalid enum value 'median'"),
        (("[budget]\nrho = 1.0", '[budget]\nmechanism = "pure"'), "budget.epsilon", "needs `epsilon`"),
        (
            ('dims = { plan = ["free", "pro"] }', 'dims = { country = "open" }'),
            "metrics[0].dims.country",
            "not an allowed",
        ),
        (('stat = "count"', 'stat = "histogram"'), "metrics[0].buckets", "at least two"),
        (('name = "signups"', 'name = "Sign Ups"'), "metrics[0].name", "match"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, change: tuple[str, str], key: str, expect: str) -> None:
    path = write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert expect in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_policy(write(tmp_path, "version = = 1"))
    with pytest.raises(ConfigError, match="file not found"):
        load_policy(tmp_path / "nope.toml")


def test_minimised_keeps_only_attributes_some_metric_uses(tmp_path: Path) -> None:
    from agent.policy import minimised, used_attrs

    text = MINIMAL.replace("[attrs.plan]", '[attrs.message]\nkind = "text"\n[attrs.plan]')
    policy = load_policy(write(tmp_path, text))
    assert set(policy.attrs) == {"plan", "message"}
    assert used_attrs(policy) == {"plan"}
    lean = minimised(policy)
    assert set(lean.attrs) == {"plan"}
    assert lean.metrics == policy.metrics
    assert policy_digest(policy) != policy_digest(lean)  # batches carry the digest of the policy as written


def test_pipeline_redactor_drops_unused_attributes_before_scanning(tmp_path: Path) -> None:
    from agent.model import Event
    from agent.policy import minimised
    from agent.redact import Redactor

    text = MINIMAL.replace("[attrs.plan]", '[attrs.message]\nkind = "text"\n[attrs.plan]')
    redactor = Redactor(minimised(load_policy(write(tmp_path, text))), b"s" * 32)
    out = redactor.redact(Event("signup", 1.0, "u1", None, {"plan": "free", "message": "mail a@example.org"}))
    assert out is not None
    assert out.attrs == {"plan": "free"}
    assert redactor.take_counts() == {"dropped_key": 1}  # never scanned: no email finding counted


# -- windows divide and align with budget periods (issue 9, point 4) --------------------------------

DAY = 86400
MONDAY = 1_767_571_200  # 2026-01-05T00:00:00Z, a Monday


def with_window(period: str, size: str, extra: str = "") -> str:
    return (
        MINIMAL.replace("rho = 1.0", f'rho = 1.0\nperiod = "{period}"{extra}')
        + f'[window]\nsize = "{size}"\n'
    )


@pytest.mark.parametrize(
    ("period", "size"), [("day", "5h"), ("day", "7m"), ("month", "5h"), ("week", "5h"), ("week", "2d")]
)
def test_a_window_that_does_not_divide_its_period_is_refused(tmp_path: Path, period: str, size: str) -> None:
    path = write(tmp_path, with_window(period, size))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: window.size: {size} does not divide one "), message
    assert "valid sizes" in message
    assert "1h" in message
    assert "6h" in message


def _allowed() -> list[tuple[str, str]]:
    from agent.policy import valid_window_sizes

    return [(period, size) for period in ("day", "week", "month") for size in valid_window_sizes(period)]


@pytest.mark.parametrize(("period", "size"), _allowed())
def test_no_period_can_spend_more_than_its_cap(tmp_path: Path, period: str, size: str) -> None:
    """Every allowed combination: each window lies inside one period, and the windows of the longest
    period at the default per-window budget add up to at most the cap."""
    from agent import ledger
    from agent.policy import window_start, windows_per_period

    policy = load_policy(write(tmp_path, with_window(period, size)))
    seconds = policy.window_seconds
    cost = per_window_budget(policy)
    assert cost * windows_per_period(policy) <= policy.budget.rho * (1 + 1e-9)
    # walk a whole leap year of windows (short and long months, ISO weeks across the new year)
    step = max(seconds, 3600)
    spent: dict[str, float] = {}
    for ts in range(1_703_980_800, 1_703_980_800 + 367 * DAY, step):  # from 2023-12-31
        start = window_start(policy, ts)
        assert start <= ts < start + seconds
        first, last = ledger.period_of(policy, start), ledger.period_of(policy, start + seconds - 1)
        assert first == last, (start, first, last)  # the window never straddles two periods
        if step == seconds:
            spent[first] = spent.get(first, 0.0) + cost
    assert all(v <= policy.budget.rho * (1 + 1e-9) for v in spent.values())


def test_weekly_windows_start_on_monday(tmp_path: Path) -> None:
    from agent.policy import window_start

    policy = load_policy(write(tmp_path, with_window("week", "7d")))
    assert window_start(policy, MONDAY) == MONDAY
    assert window_start(policy, MONDAY + 6 * DAY + 86399) == MONDAY
    assert window_start(policy, MONDAY - 1) == MONDAY - 7 * DAY
    assert window_start(policy, 0) == -3 * DAY  # the epoch is a Thursday: its ISO week began on Monday


def test_monthly_default_budget_fits_the_longest_month(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, with_window("month", "1d")))
    assert per_window_budget(policy) == pytest.approx(1.0 / 31)


# -- δ capped per period (issue 9, point 6) ---------------------------------------------------------


def test_a_period_whose_windows_could_pass_max_delta_is_refused(tmp_path: Path) -> None:
    from agent.policy import period_delta

    open_dims = MINIMAL.replace('dims = { plan = ["free", "pro"] }', 'dims = { plan = "open" }')
    weekly = open_dims.replace("rho = 1.0", 'rho = 1.0\nperiod = "week"') + '[window]\nsize = "1h"\n'
    path = write(tmp_path, weekly)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: budget.delta: "), message
    assert "1.68e-05 (168 windows x delta 1e-07)" in message
    assert "max_delta 1e-05" in message
    assert "lower budget.delta to at most 5.95e-08" in message
    # lowering delta, raising max_delta, or fewer chargeable windows (per_window) all fit
    for fix in ("delta = 5e-8", "max_delta = 2e-5", "per_window = 0.01"):
        ok = load_policy(write(tmp_path, weekly.replace("rho = 1.0", f"rho = 1.0\n{fix}")))
        assert period_delta(ok) <= ok.budget.max_delta
    # declared dimensions spend no δ: any number of windows is fine
    assert period_delta(load_policy(write(tmp_path, with_window("week", "1h")))) == 0.0
