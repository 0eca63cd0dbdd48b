"""collector.ingest_refusals: junk counted in memory, bounded, written per (day, reason); failed
enrollments limited per address."""

from __future__ import annotations

import pytest

from collector.errors import Unavailable
from collector.ingest_refusals import FailureLimiter, RefusalBuffer, peer_host
from collector.store import Refusal, Store
from tests.collector.collector_testkit import T0, Clock


async def test_a_flood_of_junk_is_one_write_per_day_and_reason(store: Store, clock: Clock) -> None:
    buffer = RefusalBuffer()
    for i in range(1000):
        buffer.add(Refusal("-", "unknown_key" if i % 2 else "bad_signature"), T0 + i)
    buffer.add(Refusal("-", "malformed"), T0 + 86400)  # the next day
    assert buffer.pending() == 1001
    before = len(await store.audit_entries())
    assert await buffer.flush(store) == 1001
    days = {u.day: u.refused for u in await store.usage("-")}
    assert days == {"2026-03-10": {"bad_signature": 500, "unknown_key": 500}, "2026-03-11": {"malformed": 1}}
    assert len(await store.audit_entries()) - before == 3  # one coalesced entry per (reason, minute)
    assert buffer.pending() == 0
    assert await buffer.flush(store) == 0


def test_the_map_is_bounded_and_only_unattributed_refusals_are_buffered() -> None:
    buffer = RefusalBuffer(max_entries=2)
    for reason in ("a", "b", "c", "c", "a"):
        buffer.add(Refusal("-", reason), T0)
    assert (buffer.pending(), buffer.dropped) == (3, 2)
    with pytest.raises(ValueError, match="verified"):
        buffer.add(Refusal("acme", "too_old"), T0)


async def test_what_a_failed_flush_did_not_write_is_kept(store: Store) -> None:
    buffer = RefusalBuffer()
    buffer.add(Refusal("-", "unknown_key"), T0)
    await store.close()
    with pytest.raises((Unavailable, ValueError)):  # ValueError: aiosqlite's closed connection
        await buffer.flush(store)
    assert buffer.pending() == 1


def test_failures_are_limited_per_address() -> None:
    limiter = FailureLimiter(burst=3, per_minute=6.0, max_keys=2)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1", T0) is None
        limiter.failed("10.0.0.1", T0)
    assert limiter.retry_after("10.0.0.1", T0) == pytest.approx(10.0)
    assert limiter.retry_after("10.0.0.2", T0) is None  # another address is not affected
    assert limiter.retry_after("10.0.0.1", T0 + 10) is None  # one failure refilled
    limiter.failed("10.0.0.2", T0)
    limiter.failed("10.0.0.3", T0)  # evicts the least recently used bucket (10.0.0.1)
    assert limiter.retry_after("10.0.0.1", T0) is None


def test_peer_host() -> None:
    assert peer_host("ipv4:127.0.0.1:5678") == "ipv4:127.0.0.1"
    assert peer_host("ipv6:[::1]:5678") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/s") == "unix:/tmp/s"
