"""No head-of-line blocking: the real agent sender against the real collector over gRPC on loopback.

A batch the collector refuses for good (too old, revoked key) goes to the outbox quarantine and the
batches behind it are delivered; a refusal that is not about the batch (suspended tenant) holds the
outbox as before; an operator puts a quarantined batch back after fixing the cause, or drops it with
a note in the egress ledger.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import nacl.signing
import pytest
from prometheus_client import CollectorRegistry

from agent import egress, outbox
from agent.config import CollectorConfig
from agent.metrics import AgentMetrics
from agent.seal import Sealed, seal
from agent.sender import Sender, classify
from agent.state import open_state, transaction
from collector.ingest import REASONS, IngestSettings
from collector.server import serve
from collector.store import Quota
from collector.store.sqlite.store import SqliteStore
from hushmetric.batch import Noise, Privacy, Row
from hushmetric.config import Duration
from tests.collector.collector_testkit import Clock

SCHEMAS = (outbox.SCHEMA, egress.SCHEMA)
DAY = 86_400.0


class Site:
    """An agent's state database with a key; releases real signed batches into its outbox."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self.conn, self.clock = conn, clock
        self.key = nacl.signing.SigningKey.generate()

    def release(self, n: int = 1, *, age: float = 60.0) -> list[Sealed]:
        made = []
        for _ in range(n):
            with transaction(self.conn):
                seq, prev = outbox.next_seq(self.conn)
                created = self.clock.now - age
                sealed = seal(
                    tenant="acme",
                    agent="edge-1",
                    seq=seq,
                    prev=prev,
                    created=created,
                    window=(int(created) - 60, int(created)),
                    policy_digest="ab" * 32,
                    privacy=Privacy("user", rho=0.01),
                    rows=[Row("visits", "count", {}, float(seq), Noise("gaussian", 1.0))],
                    key=self.key,
                )
                outbox.put(self.conn, sealed)
            made.append(sealed)
        return made

    def quarantined(self) -> list[tuple[int, str]]:
        return [(q.seq, q.reason.split(":")[0]) for q in outbox.quarantined(self.conn)]

    def sent(self) -> list[int | None]:
        return [e.seq for e in egress.entries(self.conn) if e.kind == "batch"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(
        tmp_path / "collector.db", signing_key=nacl.signing.SigningKey.generate(), create=True
    )
    await s.create_tenant("acme", now=clock())
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def endpoint(store: SqliteStore, clock: Clock) -> AsyncIterator[str]:
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            store,
            "127.0.0.1:0",
            stop=stop,
            on_bound=bound.set_result,
            clock=clock,
            settings=IngestSettings(),
            grace_seconds=1.0,
        )
    )
    try:
        yield await asyncio.wait_for(bound, 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
def site(tmp_path: Path, clock: Clock) -> Iterator[Site]:
    conn = open_state(tmp_path / "agent", SCHEMAS)
    yield Site(conn, clock)
    conn.close()


async def no_wait(_delay: float) -> None:
    await asyncio.sleep(0)


def sender(tmp_path: Path, endpoint: str, metrics: AgentMetrics | None = None) -> Sender:
    cfg = CollectorConfig(endpoints=[endpoint], timeout=Duration(5))
    return Sender(
        lambda: open_state(tmp_path / "agent", SCHEMAS),
        cfg,
        sleep=no_wait,
        on_result=metrics.sent_or_failed if metrics else None,
    )


async def stored_seqs(store: SqliteStore) -> list[int]:
    return sorted({r.seq for r in await store.released_rows("acme", None, None)})


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_refusal_reason_of_the_collector_has_a_considered_verdict(reason: str) -> None:
    code = getattr(grpc.StatusCode, REASONS[reason].upper())
    verdict = classify(code, reason)
    assert verdict != "transport"  # an answer of the collector never fails over
    if REASONS[reason] == "resource_exhausted":
        assert verdict == "throttled"
    expected_permanent = {
        "malformed", "payload_type", "too_large", "bad_signature", "conflict", "unknown_key",
        "revoked_key", "retired_key", "tenant_mismatch", "agent_mismatch", "signer_mismatch", "too_old",
        "privacy_cap",
    }  # fmt: skip
    assert (verdict == "permanent") == (reason in expected_permanent)


def test_unknown_reasons_fall_back_to_the_code_and_transport_codes_always_fail_over() -> None:
    assert classify(grpc.StatusCode.FAILED_PRECONDITION, "something_new") == "held"
    assert classify(grpc.StatusCode.INVALID_ARGUMENT, None) == "permanent"
    assert classify(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota_bytes_month") == "throttled"
    assert classify(grpc.StatusCode.UNAVAILABLE, "too_old") == "transport"  # a proxy's word is not final
    assert classify(grpc.StatusCode.DATA_LOSS, None) == "transport"


async def test_a_too_old_batch_in_the_middle_is_quarantined_and_the_rest_is_delivered_then_retried(
    tmp_path: Path, store: SqliteStore, endpoint: str, site: Site, clock: Clock
) -> None:
    await store.add_key("acme", "edge-1", bytes(site.key.verify_key), now=clock())
    await store.set_quota(Quota("acme", max_age_seconds=int(DAY)), now=clock())
    site.release(2)
    site.release(1, age=2 * DAY)  # seq 3: held back two days, e.g. a site that was offline
    site.release(2)
    metrics = AgentMetrics(CollectorRegistry())

    async with sender(tmp_path, endpoint, metrics) as s:
        report = await s.drain_once()
    assert (report.delivered, report.quarantined, report.pending, report.last_error) == (4, 1, 0, None)
    assert await stored_seqs(store) == [1, 2, 4, 5]
    assert site.quarantined() == [(3, "too_old")]
    assert site.sent() == [1, 2, 4, 5]
    assert metrics.registry.get_sample_value("hush_agent_batches_quarantined_total") == 1.0
    assert metrics.registry.get_sample_value("hush_agent_batches_sent_total") == 4.0
    (day,) = await store.usage("acme")
    assert day.gaps == 1  # seq 4 names a predecessor the collector has not seen: recorded, not refused

    # The operator fixes the cause (a longer max age for this tenant) and puts the batch back.
    await store.set_quota(Quota("acme", max_age_seconds=int(7 * DAY)), now=clock())
    with transaction(site.conn):
        assert outbox.requeue(site.conn, 3)
    async with sender(tmp_path, endpoint) as s:
        report = await s.drain_once()
    assert (report.delivered, report.quarantined, report.pending) == (1, 0, 0)
    assert await stored_seqs(store) == [1, 2, 3, 4, 5]
    assert site.quarantined() == []
    (day,) = await store.usage("acme")
    assert day.gaps == 0  # the late batch closed the gap
    assert egress.verify(site.conn).ok


async def test_after_a_revocation_old_batches_are_quarantined_and_the_new_key_delivers(
    tmp_path: Path, store: SqliteStore, endpoint: str, site: Site, clock: Clock
) -> None:
    old = await store.add_key("acme", "edge-1", bytes(site.key.verify_key), now=clock())
    site.release(2)  # signed by the key that is about to be revoked
    await store.set_key_state(old.key_id, "revoked", now=clock())
    site.key = nacl.signing.SigningKey.generate()  # the operator re-keys the agent and enrolls it
    await store.add_key("acme", "edge-1", bytes(site.key.verify_key), now=clock())
    site.release(2)

    async with sender(tmp_path, endpoint) as s:
        report = await s.drain_once()
    assert (report.delivered, report.quarantined, report.pending) == (2, 2, 0)
    assert await stored_seqs(store) == [3, 4]
    assert site.quarantined() == [(1, "revoked_key"), (2, "revoked_key")]

    # Revoked means untrusted: the operator drops them, and the egress ledger says so.
    with transaction(site.conn):
        for seq in (1, 2):
            gone = outbox.discard(site.conn, seq)
            assert gone is not None
            egress.record_drop(
                site.conn, seq=seq, digest=gone.digest, nbytes=gone.nbytes, rows=gone.rows,
                note="signed by revoked key", at=clock(),
            )  # fmt: skip
    assert site.quarantined() == []
    drops = [e for e in egress.entries(site.conn) if e.kind == "drop"]
    assert [(e.seq, e.destination, e.reason) for e in drops] == [
        (seq, "", "signed by revoked key") for seq in (1, 2)
    ]
    assert egress.verify(site.conn).ok
    assert not egress.is_stopped(site.conn)


async def test_a_suspended_tenant_holds_the_outbox_and_nothing_is_quarantined(
    tmp_path: Path, store: SqliteStore, endpoint: str, site: Site, clock: Clock
) -> None:
    await store.add_key("acme", "edge-1", bytes(site.key.verify_key), now=clock())
    site.release(3)
    await store.set_tenant_state("acme", "suspended", now=clock())
    async with sender(tmp_path, endpoint) as s:
        report = await s.drain_once()
    assert (report.delivered, report.quarantined, report.pending) == (0, 0, 3)
    assert report.last_error is not None
    assert "tenant_suspended" in report.last_error
    await store.set_tenant_state("acme", "active", now=clock())
    async with sender(tmp_path, endpoint) as s:
        report = await s.drain_once()
    assert (report.delivered, report.pending) == (3, 0)
