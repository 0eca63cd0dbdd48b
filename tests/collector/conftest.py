"""Fixtures for the collector: a parametrised ``store`` (SQLite now; add PostgreSQL to STORE_KINDS and
the fixture), a driven clock, an enrolled tenant, and a real gRPC server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import nacl.signing
import pytest

from collector.ingest import IngestSettings
from collector.ingest_refusals import RefusalBuffer
from collector.server import serve
from collector.store import Store
from collector.store.sqlite.store import SqliteStore
from hushmetric.v1 import ingest_pb2_grpc
from tests.collector.collector_testkit import STORE_KINDS, Agent, Clock, Server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey.generate()


@pytest.fixture(params=STORE_KINDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, audit_key: nacl.signing.SigningKey
) -> AsyncIterator[Store]:
    if request.param == "postgres":
        from collector.store.pg.store import open_pg_store
        from tests.pg import temp_database

        async with temp_database() as url:
            s = await open_pg_store(url, signing_key=audit_key, create=True)
            try:
                yield s
            finally:
                await s.close()
        return
    s = await SqliteStore.open(tmp_path / "collector.db", signing_key=audit_key, create=True)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def acme(store: Store, clock: Clock) -> Agent:
    """Tenant ``acme`` with one enrolled agent ``a1``."""
    await store.create_tenant("acme", now=clock())
    agent = Agent("acme", "a1")
    await store.add_key("acme", "a1", agent.public_key, now=clock())
    return agent


@pytest.fixture
async def server(store: Store, clock: Clock) -> AsyncIterator[Server]:
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    refusals = RefusalBuffer()  # flushed by the test (``Server.flush``), or when the server stops
    task = asyncio.create_task(
        serve(
            store,
            "127.0.0.1:0",
            stop=stop,
            on_bound=bound.set_result,
            clock=clock,
            settings=IngestSettings(max_clock_skew_seconds=300),
            grace_seconds=1.0,
            refusals=refusals,
            flush_seconds=3600.0,
        ),
        name="collector-server",
    )
    address = await asyncio.wait_for(bound, 10)
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Server(address, channel, ingest_pb2_grpc.IngestStub(channel), refusals, store)
    finally:
        await channel.close()
        stop.set()
        await asyncio.wait_for(task, 10)
