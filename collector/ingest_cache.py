"""The key, tenant and quota records the ingest checks read, kept in memory for a few seconds.

Before its transaction a submission needs its signing key, its tenant and the tenant's limits:
three reads, each a database round trip (a pool connection on PostgreSQL, a trip to aiosqlite's
thread on SQLite), for records that change a few times a year. :class:`LookupCache` answers them
from memory for ``ttl`` seconds. That never changes a decision, because what could have changed
is decided again where it counts:

- an acceptance: the ingest transaction re-reads the key's and tenant's state (a revocation or
  suspension acts at once, as without the cache), the key's retirement and the tenant's limits;
  limits that differ from the cached ones make the store answer :class:`~collector.store.Stale`,
  and :mod:`collector.ingest` forgets the tenant's records and checks the batch again;
- a refusal: only active tenants and existing keys are kept, and the refusals that rest on a
  cached record that can change (``too_large``, ``too_old``, ``retired_key``) are checked again on
  fresh records before they are given (:data:`~collector.ingest.RECHECKED`).

Bounded: at most ``max_entries`` records of each kind; the oldest is dropped first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from collector.store.records import KeyRecord, Quota, Tenant

__all__ = ["LookupCache", "Lookups"]

V = TypeVar("V")


class Lookups(Protocol):
    """The reads the ingest checks make before the transaction (a :class:`~collector.store.Store`)."""

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def get_tenant(self, name: str) -> Tenant | None: ...

    async def get_quota(self, tenant: str) -> Quota: ...


class _Kept(dict[str, tuple[float, V]]):
    """Records by name with the monotonic time they expire at, oldest first."""

    def fresh(self, name: str, now: float) -> V | None:
        hit = self.get(name)
        return hit[1] if hit is not None and hit[0] > now else None

    def keep(self, name: str, value: V, until: float, max_entries: int) -> None:
        self.pop(name, None)
        self[name] = (until, value)
        while len(self) > max_entries:
            del self[next(iter(self))]


class LookupCache:
    """:class:`Lookups` from ``store``, kept ``ttl`` seconds (``clock``: monotonic seconds)."""

    def __init__(
        self,
        store: Lookups,
        *,
        ttl: float = 5.0,
        max_entries: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._keys: _Kept[KeyRecord] = _Kept()
        self._tenants: _Kept[Tenant] = _Kept()
        self._quotas: _Kept[Quota] = _Kept()

    async def get_key(self, key_id: str) -> KeyRecord | None:
        now = self._clock()
        key = self._keys.fresh(key_id, now)
        if key is None:
            key = await self._store.get_key(key_id)
            if key is not None:  # an unknown key is asked again: it may be enrolled any moment
                self._keys.keep(key_id, key, now + self._ttl, self._max)
        return key

    async def get_tenant(self, name: str) -> Tenant | None:
        now = self._clock()
        tenant = self._tenants.fresh(name, now)
        if tenant is None:
            tenant = await self._store.get_tenant(name)
            if tenant is not None and tenant.state == "active":  # a refusal is never served from here
                self._tenants.keep(name, tenant, now + self._ttl, self._max)
        return tenant

    async def get_quota(self, tenant: str) -> Quota:
        now = self._clock()
        quota = self._quotas.fresh(tenant, now)
        if quota is None:
            quota = await self._store.get_quota(tenant)
            self._quotas.keep(tenant, quota, now + self._ttl, self._max)
        return quota

    def forget(self, tenant: str) -> None:
        """Drop a tenant's records (its keys expire on their own; their state is re-read anyway)."""
        self._tenants.pop(tenant, None)
        self._quotas.pop(tenant, None)
