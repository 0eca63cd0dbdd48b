"""The MQTT source's in-flight window, on a private Mosquitto with its default settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from agent.sources.mqtt import MqttSource, _refused_protocol
from tests.proof.brokerkit import DEFAULT_SETTINGS, have_mosquitto, mosquitto, publish_lines

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="needs mosquitto and mosquitto_pub on PATH")


async def unacknowledged(port: int, protocol: str, n: int) -> int:
    """How many messages of an ``n``-message backlog the broker lets out before any PUBACK."""
    src = MqttSource(
        host="127.0.0.1", port=port, topics=["t/#"], client_id=f"win-{protocol}", protocol=protocol
    )
    it = src.chunks()
    first = asyncio.ensure_future(anext(it))
    for _ in range(500):
        if src.state == "connected":
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the SUBACK is in; the subscription is live
    await asyncio.to_thread(publish_lines, port, "t/x", b"".join(b"m%d\n" % i for i in range(n)))
    got = [await asyncio.wait_for(first, 10)]
    try:
        while len(got) < n:
            got.append(await asyncio.wait_for(anext(it), 1.0))  # never acked: the window must stall it
    except TimeoutError:
        pass
    await it.aclose()
    return len(got)


async def test_mqtt5_receive_maximum_opens_the_window_past_the_brokers_default(tmp_path: Path) -> None:
    """Issue 12, point 4: with 3.1.1 Mosquitto sends 20 unacknowledged messages (its default
    max_inflight_messages) and waits; the source's MQTT 5 Receive Maximum (1,000) lets 200 through."""
    with mosquitto(tmp_path / "broker", DEFAULT_SETTINGS) as port:
        assert await unacknowledged(port, "3.1.1", 200) == 20
        assert await unacknowledged(port, "5", 200) == 200


def test_only_an_unsupported_protocol_refusal_falls_back() -> None:
    assert _refused_protocol(aiomqtt.MqttCodeError(1))  # 3.1.1 CONNACK: unacceptable protocol version
    assert _refused_protocol(aiomqtt.MqttCodeError(0x84))  # MQTT 5: unsupported protocol version
    assert not _refused_protocol(aiomqtt.MqttCodeError(5))  # not authorised: no fallback
    assert not _refused_protocol(aiomqtt.MqttError("connection lost"))
