"""Ingest on cached key, tenant and quota records decides exactly as on fresh ones (every store kind)."""

from __future__ import annotations

from collector.ingest import Rejected, Stored, ingest
from collector.ingest_cache import LookupCache
from collector.store import Quota, Store
from tests.collector.collector_testkit import Agent, Clock


class Ticks:
    """A monotonic clock the test moves (the cache's TTL never runs out on its own)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _warm(store: Store, cache: LookupCache, agent: Agent, clock: Clock) -> None:
    assert isinstance(await ingest(store, agent.next(), now=clock(), cache=cache), Stored)


async def test_lowered_quota_acts_at_once_on_a_cached_copy(store: Store, acme: Agent, clock: Clock) -> None:
    cache = LookupCache(store, ttl=3600, clock=Ticks())
    await _warm(store, cache, acme, clock)  # 1 row used
    await store.set_quota(Quota("acme", rows_per_day=3), now=clock())
    assert isinstance(await ingest(store, acme.next(rows=2), now=clock(), cache=cache), Stored)
    refused = await ingest(store, acme.next(rows=1), now=clock(), cache=cache)
    assert isinstance(refused, Rejected)
    assert refused.reason == "quota_rows_day"
    assert sum(d.rows for d in await store.usage("acme")) == 3


async def test_lowered_size_limit_acts_at_once_on_a_cached_copy(
    store: Store, acme: Agent, clock: Clock
) -> None:
    cache = LookupCache(store, ttl=3600, clock=Ticks())
    await _warm(store, cache, acme, clock)
    await store.set_quota(Quota("acme", max_batch_bytes=64), now=clock())
    refused = await ingest(store, acme.next(rows=3), now=clock(), cache=cache)
    assert isinstance(refused, Rejected)
    assert refused.reason == "too_large"


async def test_raised_size_limit_acts_at_once_on_a_cached_copy(
    store: Store, acme: Agent, clock: Clock
) -> None:
    await store.set_quota(Quota("acme", max_batch_bytes=64), now=clock())
    cache = LookupCache(store, ttl=3600, clock=Ticks())
    refused = await ingest(store, acme.next(rows=3), now=clock(), cache=cache)
    assert isinstance(refused, Rejected)
    assert refused.reason == "too_large"
    await store.set_quota(Quota("acme"), now=clock())
    acme.seq -= 1  # the same seq again, now within the limit
    assert isinstance(await ingest(store, acme.next(rows=3), now=clock(), cache=cache), Stored)


async def test_revoked_and_retired_keys_act_at_once_on_a_cached_copy(
    store: Store, acme: Agent, clock: Clock
) -> None:
    cache = LookupCache(store, ttl=3600, clock=Ticks())
    await _warm(store, cache, acme, clock)
    clock.now += 10
    await store.set_key_state(acme.key_id, "retired", now=clock())
    acme.created = clock.now + 1  # created after the retirement
    refused = await ingest(store, acme.next(), now=clock.now + 1, cache=cache)
    assert isinstance(refused, Rejected)
    assert refused.reason == "retired_key"
    await store.set_key_state(acme.key_id, "revoked", now=clock())
    refused = await ingest(store, acme.next(), now=clock.now + 1, cache=cache)
    assert isinstance(refused, Rejected)
    assert refused.reason == "revoked_key"


async def test_suspension_acts_at_once_and_resumption_is_not_cached_away(
    store: Store, acme: Agent, clock: Clock
) -> None:
    cache = LookupCache(store, ttl=3600, clock=Ticks())
    await _warm(store, cache, acme, clock)
    await store.set_tenant_state("acme", "suspended", now=clock())
    refused = await ingest(store, acme.next(), now=clock(), cache=cache)
    assert isinstance(refused, Rejected)
    assert refused.reason == "tenant_suspended"
    await store.set_tenant_state("acme", "active", now=clock())
    acme.seq -= 1
    assert isinstance(await ingest(store, acme.next(), now=clock(), cache=cache), Stored)


async def test_records_expire_and_stay_bounded(store: Store, acme: Agent, clock: Clock) -> None:
    ticks = Ticks()
    cache = LookupCache(store, ttl=5, max_entries=1, clock=ticks)
    first = await cache.get_quota("acme")
    await store.set_quota(Quota("acme", rows_per_day=7), now=clock())
    assert await cache.get_quota("acme") == first  # still kept
    ticks.now += 6
    assert (await cache.get_quota("acme")).rows_per_day == 7
    await store.create_tenant("other", now=clock())
    await cache.get_quota("other")
    await store.set_quota(Quota("acme", rows_per_day=8), now=clock())
    assert (await cache.get_quota("acme")).rows_per_day == 8  # dropped for "other": one entry at most
    assert await cache.get_key("0" * 64) is None
