"""agent.transport: the one back-off formula (sender, enrollment, MQTT reconnects) and the channel rules."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import CollectorConfig
from agent.sources import MqttSource
from agent.transport import Backoff, dial
from hushmetric.errors import ConfigError


@given(base=st.floats(0.01, 10), cap=st.floats(0.01, 600), n=st.integers(0, 80), seed=st.integers(0, 2**32))
def test_delay_n_is_uniform_in_half_to_whole_of_the_capped_exponential(
    base: float, cap: float, n: int, seed: int
) -> None:
    backoff = Backoff(base, cap, random.Random(seed))
    delays = [backoff.next() for _ in range(n + 1)]
    d = min(max(cap, base), base * 2.0 ** min(n, 32))
    assert d / 2 <= delays[n] <= d
    assert delays[n] > 0  # never zero: a flapping peer is not hammered


def test_reset_starts_the_schedule_over() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(1))
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_the_mqtt_source_keeps_its_reconnect_schedule() -> None:
    # Before it used Backoff, the source waited ceiling/2 + U(0, ceiling/2) with
    # ceiling = min(cap, base·2^failures) after `failures` consecutive failures (1, 2, ...).
    src = MqttSource(
        host="127.0.0.1", port=1, topics=["t/#"], client_id="c", backoff_base=0.5, backoff_cap=30.0,
        rng=random.Random(7),
    )  # fmt: skip
    old = random.Random(7)
    for failures in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** min(failures, 30))
        assert src._backoff.next() == ceiling / 2 + old.uniform(0, ceiling / 2)


def test_only_allow_listed_endpoints_are_dialled() -> None:
    cfg = CollectorConfig(endpoints=["127.0.0.1:7443"], tls=False)
    with pytest.raises(ConfigError, match="allow-list"):
        dial(cfg, None, "127.0.0.1:7444")
