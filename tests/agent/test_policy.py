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
