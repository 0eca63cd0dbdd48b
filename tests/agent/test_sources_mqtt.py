"""MQTT source against the real Mosquitto at 127.0.0.1:1883 (anonymous)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aiomqtt
import pytest

from agent.config import Limits
from agent.decode import Decoder
from agent.sources import Chunk, MqttSource

pytestmark = pytest.mark.mqtt

HOST, PORT = "127.0.0.1", 1883


def make(client_id: str, topic: str, port: int = PORT) -> MqttSource:
    return MqttSource(
        host=HOST, port=port, topics=[f"{topic}/#"], client_id=client_id, backoff_base=0.05, backoff_cap=0.3
    )


async def publish(topic: str, *payloads: bytes) -> None:
    async with aiomqtt.Client(HOST, PORT, identifier=f"pub-{uuid.uuid4().hex[:8]}") as pub:
        for payload in payloads:
            await pub.publish(topic, payload, qos=1)


async def forget_session(client_id: str) -> None:
    async with aiomqtt.Client(HOST, PORT, identifier=client_id, clean_session=True):
        pass


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (polling), failing with ``what`` after ``timeout`` seconds: a
    loaded CI machine changes how long things take, never whether they happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def connected(src: MqttSource, it: AsyncIterator[Chunk]) -> asyncio.Future[Chunk]:
    """Start pulling the first chunk and wait until the subscription is in place."""
    first = asyncio.ensure_future(anext(it))
    await eventually(lambda: src.state == "connected", "no connection to the broker")
    await asyncio.sleep(0.05)  # SUBACK received before state flips; give the broker a moment anyway
    return first


async def take(it: AsyncIterator[Chunk], first: asyncio.Future[Chunk] | None, n: int) -> list[Chunk]:
    got = [await asyncio.wait_for(first, 5)] if first is not None else []
    while len(got) < n:
        got.append(await asyncio.wait_for(anext(it), 5))
    return got


async def stop(it: AsyncIterator[Chunk], pending: asyncio.Future[Chunk] | None = None) -> None:
    if pending is not None:
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
    await it.aclose()


async def nothing_within(it: AsyncIterator[Chunk], seconds: float) -> bool:
    task = asyncio.ensure_future(anext(it))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if done:
        return False
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return True


@pytest.fixture
def ids() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"hush-test-{tag}", f"hushtest/{tag}"


async def test_single_array_and_json_lines_payloads(ids: tuple[str, str]) -> None:
    client_id, topic = ids
    src = make(client_id, topic)
    it = src.chunks()
    try:
        first = await connected(src, it)
        single = b'{"name":"a","ts":1,"unit":"u"}'
        array = b'[{"name":"b","ts":2,"unit":"u"},{"name":"c","ts":3,"unit":"u"}]'
        lines = b'{"name":"d","ts":4,"unit":"u"}\n{"name":"e","ts":"2026-01-05T00:00:00Z","unit":"u"}\n'
        oversize = b" " * 2048
        await publish(f"{topic}/x", single, array, lines, oversize)
        chunks = await take(it, first, 4)
        assert [c.data for c in chunks] == [single, array, lines, oversize]
        assert all(
            c.source == f"mqtt:{topic}/#" and c.ack is not None for c in chunks
        )  # the filter, not the topic
        decoder = Decoder(Limits(max_payload_bytes=1024))
        names = []
        for c in chunks:
            good, bad = decoder.decode(c.data, c.source, now=0)
            names += [e.name for e in good] + [d.reason for d in bad]
        assert names == ["a", "b", "c", "d", "e", "too_large"]
        for c in chunks:
            assert c.ack is not None
            c.ack()
            c.ack()  # idempotent
        await asyncio.sleep(0.2)
    finally:
        await it.aclose()
        await forget_session(client_id)


async def test_only_acknowledged_messages_are_forgotten_by_the_broker(ids: tuple[str, str]) -> None:
    client_id, topic = ids
    try:
        # Run 1: receive three, make only the first "durable" (ack), then stop.
        src = make(client_id, topic)
        it = src.chunks()
        first = await connected(src, it)
        await publish(f"{topic}/t", b"m1", b"m2", b"m3")
        got = await take(it, first, 3)
        assert [c.data for c in got] == [b"m1", b"m2", b"m3"]
        assert got[0].ack is not None
        got[0].ack()
        await asyncio.sleep(0.2)
        await it.aclose()
        stale = got[1].ack
        assert stale is not None
        stale()  # after the connection is gone: must be a no-op, not an error

        # Offline: the persistent session queues new messages.
        await publish(f"{topic}/t", b"m4")

        # Run 2, same client id: the unacknowledged ones come back, then the queued one.
        src = make(client_id, topic)
        it = src.chunks()
        first = asyncio.ensure_future(anext(it))
        got = await take(it, first, 3)
        assert sorted(c.data for c in got) == [b"m2", b"m3", b"m4"]
        for c in got:
            assert c.ack is not None
            c.ack()
        await asyncio.sleep(0.2)
        await it.aclose()

        # Run 3: everything was acknowledged, nothing comes back.
        src = make(client_id, topic)
        it = src.chunks()
        assert await nothing_within(it, 0.8)
        await it.aclose()
    finally:
        await forget_session(client_id)


CONSUMER = r"""
import asyncio, sys
from agent.sources import MqttSource

async def main() -> None:
    src = MqttSource(host="127.0.0.1", port=1883, topics=[sys.argv[2] + "/#"], client_id=sys.argv[1])
    async for chunk in src.chunks():
        if chunk.data.startswith(b"durable"):
            chunk.ack()
        print(chunk.data.decode(), flush=True)

asyncio.run(main())
"""


async def test_kill_9_before_ack_means_redelivery(ids: tuple[str, str]) -> None:
    client_id, topic = ids
    try:
        # Create the session first so messages published below are queued for it.
        src = make(client_id, topic)
        it = src.chunks()
        await stop(it, await connected(src, it))
        await publish(f"{topic}/k", b"durable-1", b"pending-2", b"durable-3", b"pending-4")

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CONSUMER, client_id, topic, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        seen = [(await asyncio.wait_for(proc.stdout.readline(), 10)).strip() for _ in range(4)]
        assert seen == [b"durable-1", b"pending-2", b"durable-3", b"pending-4"]
        await asyncio.sleep(0.3)  # let the PUBACKs of the durable ones reach the broker
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

        src = make(client_id, topic)
        it = src.chunks()
        got = await take(it, asyncio.ensure_future(anext(it)), 2)
        assert [c.data for c in got] == [b"pending-2", b"pending-4"]
        for c in got:
            assert c.ack is not None
            c.ack()
        await asyncio.sleep(0.1)
        assert await nothing_within(it, 0.5)
        await it.aclose()
    finally:
        await forget_session(client_id)


async def test_broker_down_is_retried_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        closed_port = s.getsockname()[1]
    src = make("hush-test-down", "hushtest/down", port=closed_port)
    caplog.set_level(logging.DEBUG, logger="agent.sources.mqtt")
    it = src.chunks()
    task = asyncio.ensure_future(anext(it))
    await eventually(lambda: src.attempts >= 3, "the source stopped retrying")
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await it.aclose()
    assert src.state == "down"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()


async def test_reconnects_after_being_kicked_and_drops_stale_acks(ids: tuple[str, str]) -> None:
    client_id, topic = ids
    src = make(client_id, topic)
    it = src.chunks()
    try:
        first = await connected(src, it)
        await publish(f"{topic}/r", b"m1")
        (c1,) = await take(it, first, 1)
        generation_before = src.attempts

        # Another client with the same id takes the session over: the broker drops our connection.
        thief = aiomqtt.Client(HOST, PORT, identifier=client_id, clean_session=False)
        thief._client.manual_ack_set(True)  # it must not acknowledge m1 either
        with contextlib.suppress(aiomqtt.MqttError):
            async with thief:
                await asyncio.sleep(0.1)

        # The source reconnects by itself and gets m1 again (never acknowledged).
        (again,) = await take(it, None, 1)
        assert again.data == b"m1"
        assert src.attempts > generation_before
        assert c1.ack is not None
        assert again.ack is not None
        c1.ack()  # from the old connection: dropped, the packet id belongs to another connection
        await asyncio.sleep(0.2)
        await it.aclose()

        src = make(client_id, topic)
        it = src.chunks()
        (third,) = await take(it, asyncio.ensure_future(anext(it)), 1)
        assert third.data == b"m1"  # the stale ack did not acknowledge it
        assert third.ack is not None
        third.ack()
        await asyncio.sleep(0.2)
        assert await nothing_within(it, 0.5)
    finally:
        await it.aclose()
        await forget_session(client_id)
