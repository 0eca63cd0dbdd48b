"""A central privacy cap across two ``hush-collector serve`` replicas sharing one PostgreSQL database
(issue 14): concurrent senders offer more ρ than the cap, every batch goes to both replicas at once,
and exactly the cap is admitted (each admitted batch stored once, its twin a duplicate); a batch under
an unapproved digest is refused by both. The replica helpers are tests/collector/test_replicas.py's."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest

from hushmetric import dsse
from hushmetric.keys import public_key_b64
from hushmetric.v1 import ingest_pb2_grpc
from tests import batchkit
from tests.collector.test_replicas import Cli, Sender, pg_url, replica, send_both

__all__ = ["pg_url"]  # the fixture, used here by name

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

AGENTS = 8
BATCHES = 6  # per agent: 48 offered at 0.01 ρ (the batchkit default) against a cap of 0.2
CAP = 0.2


async def test_two_replicas_admit_exactly_the_privacy_cap(pg_url: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path, pg_url)
    await cli.ok("init")
    await cli.ok("tenant", "create", "acme")
    await cli.ok("policy", "approve", "acme", "--digest", batchkit.POLICY)
    await cli.ok("policy", "cap", "acme", "--rho-per-day", str(CAP), "--per", "tenant")
    senders = [Sender("acme", f"edge-{i}") for i in range(AGENTS)]
    for s in senders:
        await cli.ok(
            "key", "add", "acme", "--agent", s.agent, "--public-key", public_key_b64(bytes(s.key.verify_key))
        )
    with replica(cli) as first, replica(cli) as second:
        channels = [grpc.aio.insecure_channel(a) for a in (first, second)]
        try:
            stubs = [ingest_pb2_grpc.IngestStub(ch) for ch in channels]  # type: ignore[no-untyped-call]  # generated
            now = time.time() - 5

            async def spray(sender: Sender) -> list[list[str]]:
                return [await send_both(stubs, sender.next(now)) for _ in range(BATCHES)]

            results = await asyncio.wait_for(asyncio.gather(*(spray(s) for s in senders)), 90)
            rogue = senders[0]
            rogue.seq += 1
            payload = batchkit.payload(
                tenant="acme",
                agent=rogue.agent,
                seq=rogue.seq,
                prev=rogue.prev,
                created=now,
                released=batchkit.rows(1),
                over={"policy": "ee" * 32},
            )
            unapproved = await send_both(stubs, dsse.sign(payload, dsse.BATCH_PAYLOAD_TYPE, rogue.key))
        finally:
            for ch in channels:
                await ch.close()
    pairs = [pair for per_sender in results for pair in per_sender]
    for pair in pairs:
        assert pair in (["duplicate", "stored"], ["FAILED_PRECONDITION", "FAILED_PRECONDITION"]), pair
    admitted = sum(pair == ["duplicate", "stored"] for pair in pairs)
    assert admitted == round(CAP / 0.01) == 20
    assert unapproved == ["FAILED_PRECONDITION", "FAILED_PRECONDITION"]
    usage = json.loads(await cli.ok("usage", "--tenant", "acme", "--format", "json"))
    assert sum(u["batches"] for u in usage) == admitted
    refused = {k: v for u in usage for k, v in u["refused"].items()}
    assert refused == {"privacy_cap": 2 * (AGENTS * BATCHES - admitted), "policy_unapproved": 2}
    day = time.strftime("%Y-%m-%d", time.gmtime(now - 60))
    spend = json.loads(await cli.ok("policy", "spend", "acme", "--day", day, "--json"))
    [tenant] = [s for s in spend["spend"] if s["agent"] is None]
    assert tenant["rho"] == CAP  # exactly: summed in integer units
