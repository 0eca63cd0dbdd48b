"""MQTT source throughput: the agent draining a QoS 1 backlog vs a bare aiomqtt subscriber, same broker.

A private Mosquitto runs with the settings of docs/operations.md ("MQTT brokers"). For each payload
kind — one event per message, and payloads of 50 events (a JSON array: ``mosquitto_pub -l`` sends
one line per message, so newline-separated payloads cannot be published with it) — a backlog is
published while the subscriber is away (persistent session), then drained:

- baseline: a bare aiomqtt subscriber (QoS 1, broker-side auto-acknowledged by paho, nothing done
  with the payload): the fastest this broker and client library hand messages over;
- agent: the real pipeline in process (`Agent.run_once` with the MQTT source: decode, redact,
  journal commit, PUBACK after commit, aggregation), timed from its start to the commit of the last
  message (the idle wait that ends `run --once` on a live source is not counted).

Environment: HUSH_BENCH_MQTT_MESSAGES (default 20,000 single-event messages; JSON-lines: a tenth as
many messages of 50 events each).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiomqtt

from agent.config import load_config
from agent.runtime import Agent
from agent.sources.base import Chunk
from bench.bench_memory import init_site
from bench.report import Report
from tests.proof.brokerkit import BURST_SETTINGS, have_mosquitto, mosquitto, publish_lines

T0 = 1_767_571_200  # 2026-01-05T00:00:00Z
PER_LINE = 50


def event(i: int) -> bytes:
    return (
        b'{"name":"api_request","ts":%d,"unit":"usr_%05d","attrs":{"endpoint":"/v1/items","status":"200",'
        b'"region":"eu-west","method":"GET"}}' % (T0 + i % 3000, i % 5000)
    )


def payloads(messages: int, per: int) -> bytes:
    """``messages`` lines for mosquitto_pub -l; with ``per`` > 1 each holds a JSON array of events
    (one MQTT message, many events: the batched shape the decoder takes in one call)."""
    if per == 1:
        return b"".join(event(i) + b"\n" for i in range(messages))
    return b"".join(
        b"[" + b",".join(event(m * per + k) for k in range(per)) + b"]\n" for m in range(messages)
    )


async def bare(port: int, n: int, topic: str) -> float:
    kw = {"identifier": f"bare-{topic}", "clean_session": False}
    async with aiomqtt.Client("127.0.0.1", port, **kw) as c:  # type: ignore[arg-type]
        await c.subscribe(f"{topic}/#", qos=1)
    await asyncio.to_thread(publish_lines, port, f"{topic}/x", payloads(n, 1))
    got = 0
    started = time.perf_counter()
    async with aiomqtt.Client("127.0.0.1", port, **kw) as c:  # type: ignore[arg-type]
        async for _ in c.messages:
            got += 1
            if got == n:
                break
    return n / (time.perf_counter() - started)


class _Timed(Agent):
    """Records when the last message's events were committed."""

    done_at = 0.0
    messages = 0

    async def process(self, chunks: Sequence[Chunk]) -> None:
        await super().process(chunks)
        self.messages += len(chunks)
        self.done_at = time.perf_counter()


def agent_drain(port: int, site: Path, topic: str, n: int, per: int) -> tuple[float, int]:
    """(messages/s, events) of the agent draining ``n`` queued messages."""
    config = init_site(site, f'[[sources]]\ntype = "mqtt"\nport = {port}\ntopics = ["{topic}/#"]\n')

    def once(hours: int) -> tuple[_Timed, float, int]:
        agent = _Timed(load_config(config), clock=lambda: T0 + 10 * 3600)

        async def go() -> tuple[float, int]:
            try:
                started = time.perf_counter()
                events = (await agent.run_once(start=T0, stop=T0 + hours * 3600)).events
                return started, events
            finally:
                await agent.aclose()

        started, events = asyncio.run(go())
        return agent, started, events

    once(0)  # the persistent session
    publish_lines(port, f"{topic}/x", payloads(n, per))
    agent, started, events = once(1)
    if agent.messages != n:
        raise RuntimeError(f"agent drained {agent.messages} of {n} messages")
    return n / (agent.done_at - started), events


def main(report: Report | None = None) -> None:
    report = report or Report()
    if not have_mosquitto():
        print("skipped: no mosquitto on PATH")
        return
    n = int(os.environ.get("HUSH_BENCH_MQTT_MESSAGES", "20000"))
    with (
        tempfile.TemporaryDirectory(prefix="hush-bench-mqtt-") as name,
        mosquitto(Path(name) / "broker", BURST_SETTINGS) as port,
    ):
        base = asyncio.run(bare(port, n, "bare"))
        mine, _ = agent_drain(port, Path(name) / "site-single", "single", n, 1)
        print(
            f"single events: bare aiomqtt {base:,.0f} msg/s, agent {mine:,.0f} msg/s, ratio {mine / base:.3f}"
        )
        report.add(
            "agent",
            "MQTT source, single-event messages",
            mine,
            "msg/s",
            baseline=base,
            baseline_name="bare aiomqtt",
            goal=">= 0.8",
            met=mine / base >= 0.8,
        )
        lines_n = max(1, n // 10)
        rate, events = agent_drain(port, Path(name) / "site-lines", "lines", lines_n, PER_LINE)
        eps = rate * PER_LINE
        print(
            f"JSON payloads of {PER_LINE} events: agent {rate:,.0f} msg/s = "
            f"{eps:,.0f} events/s ({events:,} events)"
        )
        report.add(
            "agent",
            f"MQTT source, {PER_LINE}-event payloads",
            eps,
            "events/s",
            goal=">= 50,000 events/s",
            met=eps >= 50_000,
        )


if __name__ == "__main__":
    main()
