"""The pusher (collector/outputs/push.py) against a real HTTP remote-write receiver on loopback: an outage
loses nothing, a refusal for good does not stop later batches, the cursor survives a restart."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cramjam
import nacl.signing
import pytest

from collector.ingest import ingest
from collector.outputs.push import Pusher, backoff
from collector.outputs.remote_write import RetryableError, decode_write_request, post
from collector.outputs.series import Sample
from collector.store import Store
from collector.store.sqlite.store import SqliteStore
from tests.collector.collector_testkit import Agent, Clock


@pytest.fixture
async def store(tmp_path: Path, audit_key: nacl.signing.SigningKey) -> AsyncIterator[Store]:
    """SQLite only: the cursor contract on both stores is tests/collector/outputs/test_cursors.py."""
    s = await SqliteStore.open(tmp_path / "collector.db", signing_key=audit_key, create=True)
    try:
        yield s
    finally:
        await s.close()


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answers to give before 204, in order
    series: list[tuple[dict[str, str], list[tuple[float, int]]]] = field(default_factory=list)
    requests: int = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests += 1
            assert self.headers["Content-Encoding"] == "snappy"
            assert self.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
            status = state.statuses.pop(0) if state.statuses else 204
            if status == 204:
                state.series.extend(decode_write_request(bytes(cramjam.snappy.decompress_raw(body))))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/write"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _pusher(store: Store, url: str, clock: Clock) -> Pusher:
    async def deliver(samples: list[Sample]) -> None:
        await post(url, samples)

    return Pusher(
        store, "remote-write", deliver, backoff_base=0.001, backoff_cap=0.01, clock=clock, rand=lambda: 0.0
    )


def _values(receiver: Receiver) -> list[float]:
    return sorted(
        v for labels, pts in receiver.series if labels["__name__"] == "hush_released" for v, _ in pts
    )


async def test_an_outage_loses_nothing_and_resends_from_the_cursor(
    store: Store, clock: Clock, acme: Agent, receiver: Receiver
) -> None:
    await ingest(store, acme.next(rows=2), now=clock())
    receiver.statuses = [503, 500, 429]
    pusher = _pusher(store, receiver.url, clock)
    for _ in range(3):
        with pytest.raises(RetryableError):
            await pusher.push_once()
        assert await store.output_cursor("remote-write") == 0  # nothing moves until delivered
    assert await pusher.push_once()
    assert _values(receiver) == [10.0, 11.0]
    cursor = await store.output_cursor("remote-write")
    assert cursor > 0
    # a restarted collector (a new pusher on the same store) starts after the cursor: nothing twice
    await ingest(store, acme.next(rows=1), now=clock())
    again = _pusher(store, receiver.url, clock)
    assert await again.push_once()
    assert not await again.push_once()
    assert _values(receiver) == [10.0, 10.0, 11.0]
    assert receiver.requests == 5


async def test_run_retries_through_an_outage_until_delivered(
    store: Store, clock: Clock, acme: Agent, receiver: Receiver
) -> None:
    for _ in range(3):
        await ingest(store, acme.next(rows=1), now=clock())
    receiver.statuses = [503] * 4
    pusher = _pusher(store, receiver.url, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(pusher.run(stop))
    while pusher.delivered < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert pusher.failures == 4
    assert len(_values(receiver)) == 3


async def test_a_refusal_for_good_is_counted_and_later_batches_still_flow(
    store: Store, clock: Clock, acme: Agent, receiver: Receiver
) -> None:
    for rows in (1, 2, 3):
        await ingest(store, acme.next(rows=rows), now=clock())
    # the page of three is refused whole (as Prometheus does for one out-of-order sample); sent batch
    # by batch, only the second is refused: the first and third arrive
    receiver.statuses = [400, 204, 400, 204]
    pusher = _pusher(store, receiver.url, clock)
    assert await pusher.push_once()
    assert (pusher.refused, pusher.delivered) == (1, 2)
    assert _values(receiver) == [10.0, 10.0, 11.0, 12.0]
    assert receiver.requests == 4
    await ingest(store, acme.next(rows=1), now=clock())
    assert await pusher.push_once()
    assert pusher.delivered == 3


async def test_an_unreachable_receiver_is_retryable(store: Store, clock: Clock, acme: Agent) -> None:
    await ingest(store, acme.next(rows=1), now=clock())
    pusher = _pusher(store, "http://127.0.0.1:9/api/v1/write", clock)
    with pytest.raises(RetryableError):
        await pusher.push_once()
    assert await store.output_cursor("remote-write") == 0


def test_backoff_is_capped_and_jittered() -> None:
    assert backoff(1, base=0.5, cap=60, rand=lambda: 1.0) == 0.5
    assert backoff(4, base=0.5, cap=60, rand=lambda: 1.0) == 4.0
    assert backoff(30, base=0.5, cap=60, rand=lambda: 1.0) == 60.0
    assert backoff(30, base=0.5, cap=60, rand=lambda: 0.0) == 30.0


async def test_an_unexpected_error_does_not_end_the_pusher(store: Store, clock: Clock, acme: Agent) -> None:
    await ingest(store, acme.next(rows=1), now=clock())
    await ingest(store, acme.next(rows=0), now=clock())  # an empty window counts as a delivered batch too
    calls: list[int] = []

    async def flaky(samples: list[Sample]) -> None:
        calls.append(len(samples))
        if len(calls) == 1:
            raise RuntimeError("a defect in a receiver adapter")

    pusher = Pusher(store, "remote-write", flaky, backoff_base=0.001, backoff_cap=0.01, rand=lambda: 0.0)
    stop = asyncio.Event()
    task = asyncio.create_task(pusher.run(stop))
    while pusher.delivered < 2:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert pusher.failures == 1
    assert calls[0] == calls[1]  # the same page again
