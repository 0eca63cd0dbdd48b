"""Proof family 2 — crash consistency of the collector: ``kill -9`` mid-ingest, again and again.

A real ``hush-collector serve`` on one SQLite file is killed with SIGKILL at random moments (also
right after start-up) while three agents keep sending signed batches of 1–80 rows; each agent
retries the identical bytes until it gets an answer, following the collector to its new address
after every restart on the same database. At the end, with the database read directly:

- batches metered twice: ``meter_day`` batches/rows/bytes minus what ``batches`` holds (must be 0);
- batches acknowledged but not stored, or stored with other bytes (must be 0);
- batches stored but never acknowledged (0 once every sender drained its last batch);
- chain gaps left open, and ``PRAGMA integrity_check`` (must be ``ok``).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from hushmetric.batch import payload_digest
from hushmetric.v1 import ingest_pb2_grpc
from tests.proof.proofkit import Collector, Figures, Signer, pick, submit

pytestmark = pytest.mark.timeout(pick(300, 1500))

FAMILY = "2 collector crash"
KILLS = pick(20, 150)
BUDGET_SECONDS = pick(40.0, 900.0)
AGENTS = 3


@dataclass
class Target:
    """Where the collector listens now; the generation changes at every restart."""

    address: str = ""
    generation: int = 0
    inflight: int = 0  # calls sent and not yet answered
    up: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class SenderStats:
    acked: dict[int, str] = field(default_factory=dict)  # seq -> digest
    sent: int = 0
    attempts: int = 0
    transport_errors: int = 0
    acked_as_duplicate: int = 0
    refused: list[str] = field(default_factory=list)


async def _sender(
    signer: Signer, target: Target, stop: asyncio.Event, stats: SenderStats, rng: random.Random
) -> None:
    channel: grpc.aio.Channel | None = None
    generation = -1
    try:
        while not stop.is_set():
            seq, payload, env = signer.next(rows=rng.randint(1, 80), label=f"{signer.agent}-")
            stats.sent += 1
            while True:  # retry the identical bytes until the collector answers
                await target.up.wait()
                if channel is None or generation != target.generation:
                    if channel is not None:
                        await channel.close()
                    generation = target.generation
                    channel = grpc.aio.insecure_channel(target.address)
                stats.attempts += 1
                target.inflight += 1
                try:
                    reply = await submit(ingest_pb2_grpc.IngestStub(channel), env, timeout=10)
                finally:
                    target.inflight -= 1
                if reply.code == "OK":
                    stats.acked[seq] = payload_digest(payload)
                    stats.acked_as_duplicate += reply.duplicate
                    break
                if reply.reason:  # a decision of the collector, not a transport failure
                    stats.refused.append(f"{seq}: {reply}")
                    break
                stats.transport_errors += 1
                await asyncio.sleep(0.02)
    finally:
        if channel is not None:
            await channel.close()


async def test_kill9_mid_ingest_never_loses_or_double_meters(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(2)
    c = Collector(tmp_path / "collector")
    c.init()
    c.ok("tenant", "create", "acme")
    signers = [Signer("acme", f"agent{i}") for i in range(AGENTS)]
    for s in signers:
        c.add_agent(s)
    target = Target()
    stop = asyncio.Event()
    stats = [SenderStats() for _ in signers]
    kills = 0
    try:
        target.address = await c.start()
        target.generation += 1
        target.up.set()
        async with asyncio.TaskGroup() as tg:
            for s, st in zip(signers, stats, strict=True):
                tg.create_task(
                    _sender(s, target, stop, st, random.Random(rng.random())), name=f"sender-{s.agent}"
                )
            while kills < KILLS and time.monotonic() - started < BUDGET_SECONDS:
                # right after start-up (migrations, first transactions), at random, or while a call
                # is in flight (inside the ingest transaction or between commit and reply)
                mode = rng.random()
                if mode < 0.15:
                    await asyncio.sleep(rng.choice([0.0, 0.02]))
                elif mode < 0.5:
                    await asyncio.sleep(rng.uniform(0.05, 0.6))
                else:
                    await asyncio.sleep(rng.uniform(0.05, 0.3))
                    deadline = time.monotonic() + 2
                    while target.inflight == 0 and time.monotonic() < deadline:
                        await asyncio.sleep(0.001)
                    await asyncio.sleep(rng.uniform(0.0, 0.012))
                target.up.clear()
                c.kill9()
                kills += 1
                target.address = await c.start()
                target.generation += 1
                target.up.set()
            await asyncio.sleep(0.3)
            stop.set()  # each sender finishes (and gets an answer for) the batch it is sending
        assert c.alive()
    finally:
        stop.set()
        target.up.set()
        await c.stop()

    refused = [r for st in stats for r in st.refused]
    assert not refused, refused[:5]
    acked = {(s.agent, seq, d) for s, st in zip(signers, stats, strict=True) for seq, d in st.acked.items()}
    stored = set(c.query("SELECT agent, seq, digest FROM batches WHERE tenant = 'acme'"))
    acked_not_stored = acked - stored
    stored_not_acked = stored - acked
    (n_batches, n_rows, n_bytes) = c.query(
        "SELECT COUNT(*), COALESCE(SUM(nrows), 0), COALESCE(SUM(nbytes), 0) FROM batches"
    )[0]
    (m_batches, m_rows, m_bytes, m_dups) = c.query(
        "SELECT COALESCE(SUM(batches), 0), COALESCE(SUM(rows), 0), COALESCE(SUM(bytes), 0), "
        "COALESCE(SUM(duplicates), 0) FROM meter_day"
    )[0]
    stored_rows = c.query("SELECT COUNT(*) FROM batch_rows")[0][0]
    open_gaps = c.query("SELECT COUNT(*) FROM chain_events WHERE resolved = 0")[0][0]
    integrity = c.query("PRAGMA integrity_check")[0][0]
    metered_twice = m_batches - n_batches
    assert not acked_not_stored, sorted(acked_not_stored)[:5]
    assert not stored_not_acked, sorted(stored_not_acked)[:5]
    assert (m_batches, m_rows, m_bytes) == (n_batches, n_rows, n_bytes)
    assert stored_rows == n_rows
    for s, st in zip(signers, stats, strict=True):  # every agent's chain is complete: 1..N
        assert sorted(st.acked) == list(range(1, s.seq + 1))
    assert open_gaps == 0
    assert integrity == "ok"
    assert c.tracebacks() == []
    sent = sum(st.sent for st in stats)
    assert kills >= min(KILLS, 10)
    figures.record(
        FAMILY,
        f"kill -9 x{kills}, {AGENTS} agents",
        runs=sent,
        faults=kills,
        lost=len(acked_not_stored),
        duplicated=metered_twice,
        seconds=time.monotonic() - started,
        acked=len(acked),
        stored=n_batches,
        rows=n_rows,
        retries=sum(st.transport_errors for st in stats),
        committed_then_acked_as_dup=sum(st.acked_as_duplicate for st in stats),
        metered_dups=m_dups,
        integrity=integrity,
    )
