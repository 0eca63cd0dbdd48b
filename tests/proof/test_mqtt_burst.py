"""Proof family 12b: a 100k-message QoS 1 burst arrives whole, on a private Mosquitto run with the
broker settings docs/operations.md recommends ("MQTT brokers").

The agent's persistent session exists (a first ``run --once`` subscribed and left); then
``mosquitto_pub`` publishes 100,000 QoS 1 messages as fast as it can while the agent is away, and a
second ``run --once`` drains them. Every message must be journaled and counted exactly once. The
same burst into a broker left at Mosquitto's defaults loses all but its 1,000 queued messages: the
check that the settings, not luck, keep the burst whole.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config import load_config
from agent.runtime import Agent
from tests.agent.test_runtime import T, make_dir
from tests.proof.brokerkit import BURST_SETTINGS, DEFAULT_SETTINGS, have_mosquitto, mosquitto, publish_lines
from tests.proof.proofkit import Figures

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="needs mosquitto and mosquitto_pub on PATH")

FAMILY = "12b mqtt burst"
BURST = 100_000


def mqtt_source(port: int) -> str:
    return f'[[sources]]\ntype = "mqtt"\nport = {port}\ntopics = ["burst/#"]\n'


def drain(config: Path, *, hours: int) -> int:
    agent = Agent(load_config(config), clock=lambda: T + 10 * 3600)

    async def go() -> int:
        try:
            return (await agent.run_once(start=T, stop=T + hours * 3600)).events
        finally:
            await agent.aclose()

    return asyncio.run(go())


def burst_into(tmp_path: Path, settings: str, n: int) -> int:
    with mosquitto(tmp_path / "broker", settings) as port:
        config = make_dir(tmp_path / "site", source=mqtt_source(port))
        assert drain(config, hours=0) == 0  # subscribes, releases nothing: the persistent session now exists
        lines = b"".join(b'{"name":"signup","ts":%d,"unit":"u%d","attrs":{"plan":"free"}}\n' % (T + i % 3000, i)
                         for i in range(n))  # fmt: skip
        publish_lines(port, "burst/a", lines)
        return drain(config, hours=1)


def test_a_100k_burst_arrives_whole_with_the_documented_broker_settings(tmp_path: Path, figures: Figures) -> None:
    got = burst_into(tmp_path / "documented", BURST_SETTINGS, BURST)
    figures.record(FAMILY, "100k QoS 1 burst, documented settings", runs=1, lost=BURST - got, received=got)
    assert got == BURST


def test_the_same_burst_into_a_default_broker_loses_messages(tmp_path: Path, figures: Figures) -> None:
    n = 5_000  # enough to pass the default queue of 1,000; the 100k run above is the one that counts
    got = burst_into(tmp_path / "default", DEFAULT_SETTINGS, n)
    figures.record(FAMILY, "5k QoS 1 burst, Mosquitto defaults", runs=1, lost=n - got, received=got)
    assert got < n
