"""Prometheus endpoints of both daemons, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc

from hushmetric.v1 import ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto
from tests.collector.collector_testkit import Agent, Hush, serving
from tests.integration.agentkit import init_agent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, *, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                return str(reply.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_collector_metrics_count_outcomes_per_tenant_and_latency(tmp_path: Path) -> None:
    hush = Hush(tmp_path)
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    sender = Agent("acme", "a1")
    hush.ok(
        "key", "add", "acme", "--agent", "a1", "--public-key", base64.b64encode(sender.public_key).decode()
    )
    port = free_port()
    with serving(hush, "--metrics-listen", f"127.0.0.1:{port}") as served:

        async def submit() -> None:
            async with grpc.aio.insecure_channel(served.address) as channel:
                stub = ingest_pb2_grpc.IngestStub(channel)
                first = sender.next()
                await stub.Submit(envelope_to_proto(first), timeout=10)
                await stub.Submit(envelope_to_proto(first), timeout=10)  # a duplicate

        asyncio.run(submit())
        text = scrape(port)
    assert 'hush_collector_batches_total{outcome="accepted",tenant="acme"} 1.0' in text
    assert 'hush_collector_batches_total{outcome="duplicate",tenant="acme"} 1.0' in text
    assert "hush_collector_ingest_seconds_count 2.0" in text


def test_agent_daemon_exposes_metrics(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    port = free_port()
    agent.edit_config('# metrics_listen = "127.0.0.1:9464"', f'metrics_listen = "127.0.0.1:{port}"')
    agent.ok("validate")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(agent.config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            text = scrape(port)
            spent = [line for line in text.splitlines() if line.startswith("hush_agent_budget_spent ")]
            if spent and float(spent[0].split()[1]) > 0:  # a window was released and charged
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.5)
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "Traceback" not in err, err
    assert 'hush_agent_redactions_total{detector="dropped_key"}' in text
    assert "hush_agent_outbox_batches" in text
    assert "hush_agent_events_total 0.0" not in text
