"""collector.store.pg.store: the Store on PostgreSQL — same semantics as SQLite, exact under concurrency.

The behaviour tests run one scripted sequence of store calls (tenants, keys, tokens, quotas,
commit outcomes, refusals, audit, usage, released rows) against the SQLite store and the
PostgreSQL store and require identical results, audit entries included; then PostgreSQL-only
tests cover what SQLite cannot show: several pools ("replicas") racing for one quota, one bucket,
one batch and one audit chain; schema migrations; and the database failing at start and while
serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nacl.signing
import pytest

from collector import audit
from collector.errors import Conflict, NotFound, Unavailable
from collector.store import (
    Accepted,
    BatchCommit,
    CommitRefused,
    Quota,
    Refusal,
    Store,
)
from collector.store.pg.schema import current_version, pg_migrations
from collector.store.pg.store import PgStore, open_pg_store, pg_initialised
from collector.store.schema import MIGRATIONS
from collector.store.sqlite.store import SqliteStore
from hushmetric.batch import Noise, Row
from hushmetric.errors import HushError
from hushmetric.keys import key_id
from hushmetric.timefmt import format_rfc3339
from tests.pg import temp_database

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

KEY = nacl.signing.SigningKey(b"\x07" * 32)
T0 = 1_795_694_400.0  # 2026-11-26T12:00:00Z, mid-month so day and month quotas differ
PK = [bytes(nacl.signing.SigningKey(bytes([i]) * 32).verify_key) for i in range(1, 9)]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temp_database() as url:
        yield url


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PgStore]:
    store = await open_pg_store(pg_url, signing_key=KEY, create=True, max_size=4)
    yield store
    await store.close()


def digest(tenant: str, agent: str, seq: int, variant: str = "") -> str:
    return hashlib.sha256(f"{tenant}/{agent}/{seq}{variant}".encode()).hexdigest()


def batch(
    seq: int,
    *,
    tenant: str = "acme",
    agent: str = "edge-1",
    kid: str | None = None,
    rows: int = 2,
    nbytes: int = 100,
    prev: str | None = None,
    variant: str = "",
    window: float = T0 - 3600,
) -> BatchCommit:
    return BatchCommit(
        tenant=tenant,
        agent=agent,
        seq=seq,
        key_id=kid or key_id(PK[0]),
        digest=digest(tenant, agent, seq, variant),
        prev=(digest(tenant, agent, seq - 1) if seq > 1 else "") if prev is None else prev,
        created=format_rfc3339(window + 60),
        window_start=format_rfc3339(window),
        window_end=format_rfc3339(window + 60),
        policy="ab" * 32,
        unit="user",
        epsilon=None,
        delta=1e-6 if seq % 2 else None,
        rho=0.01,
        nbytes=nbytes,
        rows=[
            Row(f"m{i % 3}", "count", {"i": str(i), "s": str(seq)}, float(i), Noise("gaussian", 1.5))
            for i in range(rows)
        ],
    )


async def outcome(call: Awaitable[object]) -> object:
    """A call's result, or its error as comparable data."""
    try:
        return await call
    except HushError as exc:
        return ("error", type(exc).__name__, exc.code, exc.message)


async def scenario(s: Store) -> list[object]:
    """Every store behaviour, in an order that exercises the interesting transitions."""
    log: list[object] = []

    async def do(call: Awaitable[object]) -> object:
        result = await outcome(call)
        log.append(result)
        return result

    k1, k2, k3, k4 = (key_id(pk) for pk in PK[:4])
    # tenants
    for name in ("acme", "beta", "rate", "bytes", "month", "gone"):
        await do(s.create_tenant(name, now=T0))
    await do(s.create_tenant("acme", now=T0 + 1))
    await do(s.get_tenant("acme"))
    await do(s.get_tenant("nobody"))
    await do(s.set_tenant_state("nobody", "suspended", now=T0))
    await do(s.set_tenant_state("gone", "deleted", now=T0 + 2))
    await do(s.set_tenant_state("gone", "active", now=T0 + 3))
    await do(s.create_tenant("gone", now=T0 + 4))
    # keys
    await do(s.add_key("acme", "edge-1", PK[0], now=T0 + 5))
    await do(s.add_key("acme", "edge-2", PK[0], now=T0 + 5))
    await do(s.add_key("nobody", "edge-1", PK[1], now=T0 + 5))
    await do(s.add_key("gone", "edge-1", PK[1], now=T0 + 5))
    for tenant, pk in (("rate", PK[1]), ("bytes", PK[2]), ("month", PK[3])):
        await do(s.add_key(tenant, "edge-1", pk, now=T0 + 6))
    await do(s.add_key("beta", "edge-9", PK[4], now=T0 + 6))
    await do(s.get_key(k1))
    await do(s.get_key("f" * 64))
    await do(s.list_keys())
    await do(s.list_keys("acme"))
    # enrollment tokens
    secret = hashlib.sha256(b"secret").digest()
    await do(s.create_enroll_token("beta", "tok1", secret, expires=T0 + 100, now=T0 + 7))
    await do(s.create_enroll_token("beta", "tok2", secret, expires=T0 + 8, now=T0 + 7))
    await do(s.create_enroll_token("gone", "tok3", secret, expires=T0 + 100, now=T0 + 7))
    await do(s.create_enroll_token("nobody", "tok4", secret, expires=T0 + 100, now=T0 + 7))
    await do(s.redeem_enroll_token("tok1", b"wrong" * 6, "edge-5", PK[5], now=T0 + 9))
    await do(s.redeem_enroll_token("tok1", secret, "edge-5", PK[5], now=T0 + 9))
    await do(s.redeem_enroll_token("tok1", secret, "edge-6", PK[6], now=T0 + 9))
    await do(s.redeem_enroll_token("tok2", secret, "edge-6", PK[6], now=T0 + 9))
    await do(s.redeem_enroll_token("nope", secret, "edge-6", PK[6], now=T0 + 9))
    # quotas
    await do(s.get_quota("acme"))
    await do(s.get_quota("nobody"))
    await do(s.largest_batch_limit())
    await do(s.set_quota(Quota("acme", rows_per_day=9, max_batch_bytes=5000), now=T0 + 10))
    await do(s.set_quota(Quota("rate", batches_per_second=0.5, burst=2), now=T0 + 10))
    await do(s.set_quota(Quota("bytes", bytes_per_day=250, max_batch_bytes=9000), now=T0 + 10))
    await do(s.set_quota(Quota("month", rows_per_month=3), now=T0 + 10))
    await do(s.set_quota(Quota("nobody"), now=T0 + 10))
    await do(s.get_quota("acme"))
    await do(s.largest_batch_limit())
    qa, qr, qb, qm = [await s.get_quota(t) for t in ("acme", "rate", "bytes", "month")]
    # commits: accepted, duplicate, conflict, gap, resolution, fork, quota
    now = T0 + 20
    await do(s.commit_batch(batch(1), qa, now=now))
    await do(s.commit_batch(batch(1), qa, now=now))
    await do(s.commit_batch(batch(1, variant="x"), qa, now=now))
    await do(s.commit_batch(batch(3), qa, now=now))
    await do(s.commit_batch(batch(2), qa, now=now))
    await do(s.commit_batch(batch(1, agent="edge-2", rows=0, prev="ab" * 32), qa, now=now))  # fork
    await do(s.commit_batch(batch(5, prev="cd" * 32), qa, now=now))
    await do(s.commit_batch(batch(4, rows=3), qa, now=now))  # 9 rows would be 11 > 9: refused
    await do(s.commit_batch(batch(4, rows=1), qa, now=now))  # 9 rows exactly
    await do(s.commit_batch(batch(7, rows=1), qa, now=now))
    await do(s.commit_batch(batch(7, rows=0), qa, now=now))
    await do(s.commit_batch(batch(8, rows=1), qa, now=now + 86400))  # the next day has room again
    # rate: burst 2, then refused with a retry delay, then refilled
    for i, t in enumerate((now, now, now, now + 1, now + 2, now + 2.5)):
        await do(s.commit_batch(batch(i + 1, tenant="rate", kid=k2), qr, now=t))
    # bytes per day
    for i in range(4):
        await do(s.commit_batch(batch(i + 1, tenant="bytes", kid=k3, nbytes=100), qb, now=now))
    # rows per month (the first of two days consumes it)
    for i, t in enumerate((now, now, now + 86400)):
        await do(s.commit_batch(batch(i + 1, tenant="month", kid=k4, rows=1 + i), qm, now=t))
    # state changes take effect inside the transaction
    await do(s.set_tenant_state("acme", "suspended", now=now + 30))
    await do(s.commit_batch(batch(10), qa, now=now + 31))
    await do(s.set_tenant_state("acme", "active", now=now + 32))
    await do(s.set_key_state(k1, "retired", now=now + 33))
    await do(s.set_key_state(k1, "retired", now=now + 34))
    await do(s.commit_batch(batch(10, rows=0), qa, now=now + 35))
    await do(s.set_key_state(k1, "revoked", now=now + 36))
    await do(s.set_key_state(k1, "revoked", now=now + 37))
    await do(s.set_key_state(k1, "active", now=now + 37))
    await do(s.set_key_state(k2, "active", now=now + 37))
    await do(s.set_key_state("f" * 64, "revoked", now=now + 37))
    await do(s.commit_batch(batch(11, rows=0), qa, now=now + 38))
    await do(s.commit_batch(batch(1, kid="e" * 64), qa, now=now + 38))
    # refusals: counted every time, audited once per tenant, reason and minute
    for i, (tenant, reason) in enumerate(
        [("acme", "bad_signature")] * 3
        + [("acme", "too_old"), ("-", "unknown_key"), ("beta", "bad_signature")]
    ):
        await do(s.record_refusal(Refusal(tenant, reason, "edge-1", i, k1), now=now + 40 + i))
    await do(s.record_refusal(Refusal("acme", "bad_signature"), now=now + 120))
    await do(s.record_refusal(Refusal("acme", "bad_signature"), now=now + 2 * 86400))  # prunes old minutes
    await do(s.record_refusal(Refusal("acme", "bad_signature"), now=now + 40))  # so audited again
    await do(s.append_audit("custom.note", None, {"n": 1, "f": 0.5, "b": True, "x": None}, now=now + 130))
    # reads
    await do(s.list_tenants())
    await do(s.usage())
    await do(s.usage(tenant="acme"))
    await do(s.usage(since="2026-11-27"))
    await do(s.usage(until="2026-11-26"))
    await do(s.usage(tenant="acme", since="2026-11-26", until="2026-11-26"))
    await do(s.released_rows("acme", None, None))
    await do(s.released_rows("acme", format_rfc3339(T0 - 3600), format_rfc3339(T0)))
    await do(s.released_rows("acme", format_rfc3339(T0), None))
    await do(s.batch_privacy("acme", None, None))
    await do(s.batch_privacy("rate", None, format_rfc3339(T0 - 3600)))
    await do(s.audit_entries())
    return log


async def test_postgres_matches_sqlite_call_for_call(pg: PgStore, tmp_path: Path) -> None:
    lite = await SqliteStore.open(tmp_path / "c.db", signing_key=KEY, create=True)
    try:
        expected = await scenario(lite)
    finally:
        await lite.close()
    got = await scenario(pg)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"call {i} differs"
    # and the script did exercise what it claims to
    kinds = {type(x).__name__ for x in got}
    assert {"Accepted", "Duplicate", "Conflicting", "CommitRefused", "tuple"} <= kinds
    assert Accepted(gap=True) in got
    assert Accepted(fork=True) in got
    reasons = {x.reason for x in got if isinstance(x, CommitRefused)}
    assert reasons >= {"quota_rows_day", "quota_bytes_day", "quota_rows_month", "rate_limited"}
    assert reasons >= {"tenant_suspended", "revoked_key", "unknown_key"}


async def test_audit_log_exports_and_verifies(pg: PgStore) -> None:
    await scenario(pg)
    entries = await pg.audit_entries()
    assert len(entries) > 20
    lines = list(audit.export_lines(entries, KEY, ts=format_rfc3339(T0)))
    result = audit.verify(lines, bytes(KEY.verify_key))
    assert (result.count, result.head) == (len(entries), entries[-1].hash)
    assert sum(e.action == "batch.refused" for e in entries) == 7  # 9 refusals, coalesced per minute


async def test_conflicts_and_not_found_use_the_collector_errors(pg: PgStore) -> None:
    await pg.create_tenant("acme", now=T0)
    with pytest.raises(Conflict):
        await pg.create_tenant("acme", now=T0)
    with pytest.raises(NotFound):
        await pg.add_key("nobody", "a", PK[0], now=T0)
    with pytest.raises(NotFound):
        await pg.get_quota("nobody")


# -- exactness under concurrency -------------------------------------------------------------------


async def _replicas(url: str, n: int = 2, pool: int = 5) -> list[PgStore]:
    return [await open_pg_store(url, signing_key=KEY, max_size=pool) for _ in range(n)]


async def _close(stores: list[PgStore]) -> None:
    for s in stores:
        await s.close()


async def _setup(s: PgStore, tenant: str, quota: Quota, pk: bytes = PK[0]) -> Quota:
    await s.create_tenant(tenant, now=T0)
    await s.add_key(tenant, "edge-1", pk, now=T0)
    return await s.set_quota(quota, now=T0)


async def _count(url: str, sql: str, *args: object) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_200_concurrent_commits_over_two_pools_admit_exactly_the_quota(
    pg: PgStore, pg_url: str
) -> None:
    quota = await _setup(pg, "acme", Quota("acme", rows_per_day=50))
    stores = await _replicas(pg_url)
    try:
        results = await asyncio.gather(
            *(stores[i % 2].commit_batch(batch(i + 1, rows=1), quota, now=T0 + 10) for i in range(200))
        )
    finally:
        await _close(stores)
    assert sum(isinstance(r, Accepted) for r in results) == 50
    assert {r.reason for r in results if isinstance(r, CommitRefused)} == {"quota_rows_day"}
    [day] = await pg.usage("acme")
    assert (day.batches, day.rows, day.bytes) == (50, 50, 5000)
    assert await _count(pg_url, "SELECT COUNT(*) FROM batches") == 50
    assert await _count(pg_url, "SELECT COUNT(*) FROM batch_rows") == 50
    assert await _count(pg_url, "SELECT rows FROM meter_month") == 50


async def test_a_batch_the_database_refuses_fails_alone_in_its_group(pg: PgStore, pg_url: str) -> None:
    """Group commit: a batch whose rows PostgreSQL cannot store (a NUL in a metric name) raises for
    its caller only; the batches grouped with it commit, metered once each, and it leaves no trace."""
    quota = await _setup(pg, "acme", Quota("acme"))
    bad = msgspec.structs.replace(batch(15), rows=[Row("m\x00", "count", {}, 1.0, Noise("gaussian", 1.5))])
    batches = [bad if i == 14 else batch(i + 1) for i in range(30)]
    before = pg.commit_groups
    results = await asyncio.gather(
        *(pg.commit_batch(b, quota, now=T0 + 10) for b in batches), return_exceptions=True
    )
    assert pg.commit_groups - before == 1  # all submitted before the first writer ran: one group
    assert isinstance(results[14], asyncpg.PostgresError)
    assert all(isinstance(r, Accepted) for i, r in enumerate(results) if i != 14)
    [day] = await pg.usage("acme")
    assert (day.batches, day.rows) == (29, 58)
    assert await _count(pg_url, "SELECT COUNT(*) FROM batches WHERE seq = 15") == 0
    assert await _count(pg_url, "SELECT COUNT(*) FROM batch_rows") == 58


async def test_each_batch_sent_to_both_replicas_is_stored_and_metered_once(pg: PgStore, pg_url: str) -> None:
    quota = await _setup(pg, "acme", Quota("acme", rows_per_day=60))
    stores = await _replicas(pg_url)
    try:
        pairs = await asyncio.gather(
            *(
                asyncio.gather(*(s.commit_batch(batch(i + 1, rows=2), quota, now=T0 + 10) for s in stores))
                for i in range(60)
            )
        )
    finally:
        await _close(stores)
    admitted = 0
    for a, b in pairs:
        outcomes = sorted(type(x).__name__ for x in (a, b))
        assert outcomes in (["Accepted", "Duplicate"], ["CommitRefused", "CommitRefused"]), outcomes
        admitted += outcomes[0] == "Accepted"
    assert admitted == 30
    [day] = await pg.usage("acme")
    assert (day.batches, day.rows, day.duplicates) == (30, 60, 30)
    assert day.gaps == await _count(pg_url, "SELECT COUNT(*) FROM chain_events WHERE resolved = 0")


async def test_one_token_bucket_is_shared_by_all_replicas(pg: PgStore, pg_url: str) -> None:
    quota = await _setup(pg, "acme", Quota("acme", batches_per_second=0.001, burst=20))
    stores = await _replicas(pg_url)
    try:
        results = await asyncio.gather(
            *(stores[i % 2].commit_batch(batch(i + 1), quota, now=T0 + 10) for i in range(100))
        )
    finally:
        await _close(stores)
    assert sum(isinstance(r, Accepted) for r in results) == 20
    refused = [r for r in results if isinstance(r, CommitRefused)]
    assert {r.reason for r in refused} == {"rate_limited"}
    assert len(refused) == 80
    assert all(r.retry_after is not None and r.retry_after > 0 for r in refused)


async def test_concurrent_audit_appends_from_replicas_form_one_chain(pg: PgStore, pg_url: str) -> None:
    stores = await _replicas(pg_url, n=3, pool=4)
    try:
        calls: list[Awaitable[object]] = []
        for i in range(90):
            s = stores[i % 3]
            if i % 3 == 0:
                calls.append(s.append_audit("note", None, {"i": i}, now=T0 + i))
            elif i % 3 == 1:
                calls.append(s.record_refusal(Refusal("acme", f"r{i}"), now=T0))
            else:
                calls.append(s.create_tenant(f"t{i}", now=T0))
        await asyncio.gather(*calls)
    finally:
        await _close(stores)
    entries = await pg.audit_entries()
    assert len(entries) == 90
    assert [e.i for e in entries] == list(range(1, 91))
    audit.verify(audit.export_lines(entries, KEY, ts=format_rfc3339(T0)), bytes(KEY.verify_key))


async def test_concurrent_admin_races_give_one_winner(pg: PgStore, pg_url: str) -> None:
    stores = await _replicas(pg_url, n=2, pool=4)
    try:
        created = await asyncio.gather(
            *(outcome(stores[i % 2].create_tenant("same", now=T0)) for i in range(10)),
            return_exceptions=False,
        )
        await stores[0].create_enroll_token("same", "tok", b"h" * 32, expires=T0 + 60, now=T0)
        redeemed = await asyncio.gather(
            *(
                outcome(stores[i % 2].redeem_enroll_token("tok", b"h" * 32, f"a{i}", PK[i], now=T0))
                for i in range(6)
            )
        )
    finally:
        await _close(stores)
    assert sum(not isinstance(c, tuple) for c in created) == 1
    assert sum(not isinstance(r, tuple) for r in redeemed) == 1
    assert len(await pg.list_keys("same")) == 1


# -- schema migrations ---------------------------------------------------------------------------------


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r[0] for r in rows}


def test_every_shared_migration_has_a_postgresql_form() -> None:
    migrations = pg_migrations()
    assert [v for v, _ in migrations] == [v for v, _ in MIGRATIONS] == list(range(1, current_version() + 1))
    assert all(stmts for _, stmts in migrations)
    with pytest.raises(ValueError, match="exactly once"):
        pg_migrations([(1, "CREATE TABLE x (a TEXT)")])


@pytest.mark.parametrize("previous", range(current_version()))
async def test_upgrade_from_every_previous_version(pg_url: str, previous: int) -> None:
    """A database left at an older version (0 = created but never initialised) is upgraded on open
    and keeps its data. Only schema v1 exists so far, so this is 0 → 1 today; v2 adds 1 → 2 by itself."""
    old = PgStore(await asyncpg.create_pool(pg_url, min_size=1, max_size=2), KEY, url=pg_url)
    try:
        assert await old.migrate(target=previous) == (0, previous)
        if previous:
            await old.create_tenant("kept", now=T0)
    finally:
        await old.close()
    if previous:  # what a `migrate` command does: open without migrating, then migrate and report
        store = await open_pg_store(pg_url, signing_key=KEY, max_size=2, migrate=False)
        assert await store.schema_version() == previous
        assert await store.migrate() == (previous, current_version())
    else:  # what `serve` does: open, which migrates
        store = await open_pg_store(pg_url, signing_key=KEY, max_size=2)
    try:
        assert await store.schema_version() == current_version()
        assert [t.name for t in await store.list_tenants()] == (["kept"] if previous else [])
        quota = await _setup(store, "acme", Quota("acme", rows_per_day=5))
        assert isinstance(await store.commit_batch(batch(1), quota, now=T0), Accepted)
    finally:
        await store.close()


async def test_fresh_to_current_and_current_is_a_no_op(pg_url: str) -> None:
    store = await open_pg_store(pg_url, signing_key=KEY, create=True, max_size=2)
    try:
        assert await store.schema_version() == current_version()
        await store.create_tenant("acme", now=T0)
        before = await _tables(pg_url)
        assert await store.migrate() == (current_version(), current_version())
        assert await _tables(pg_url) == before
        assert await _count(pg_url, "SELECT COUNT(*) FROM schema_version") == current_version()
        assert [t.name for t in await store.list_tenants()] == ["acme"]
    finally:
        await store.close()
    again = await open_pg_store(pg_url, signing_key=KEY)  # reopening never re-applies anything
    try:
        assert await again.schema_version() == current_version()
        assert [t.name for t in await again.list_tenants()] == ["acme"]
    finally:
        await again.close()


async def test_open_without_migrating(pg_url: str) -> None:
    with pytest.raises(Unavailable, match="not initialised"):
        await open_pg_store(pg_url, migrate=False)
    await (await open_pg_store(pg_url, signing_key=KEY, create=True)).close()
    store = await open_pg_store(pg_url, signing_key=KEY, migrate=False)
    try:
        assert await store.migrate() == (current_version(), current_version())
    finally:
        await store.close()


async def test_migration_steps_one_version_at_a_time_and_keeps_data(pg_url: str) -> None:
    """Stop at each version, write data, upgrade to the next: data survives every step."""
    store = PgStore(await asyncpg.create_pool(pg_url, min_size=1, max_size=2), KEY, url=pg_url)
    try:
        assert await store.schema_version() == 0
        for version in range(1, current_version() + 1):
            found, reached = await store.migrate(target=version)
            assert (found, reached) == (version - 1, version)
            assert await store.schema_version() == version
            await store.create_tenant(f"t{version}", now=T0)
        assert [t.name for t in await store.list_tenants()] == [
            f"t{v}" for v in range(1, current_version() + 1)
        ]
    finally:
        await store.close()


async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(
        *(open_pg_store(pg_url, signing_key=KEY, create=True, max_size=1) for _ in range(4))
    )
    await _close(list(stores))
    assert await _count(pg_url, "SELECT COUNT(*) FROM schema_version") == current_version()


async def test_sqlite_and_postgresql_report_the_same_schema_version(pg: PgStore, tmp_path: Path) -> None:
    lite = await SqliteStore.open(tmp_path / "c.db", signing_key=KEY, create=True)
    await lite.close()
    with sqlite3.connect(tmp_path / "c.db") as db:
        (lite_version,) = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    assert lite_version == await pg.schema_version() == current_version()


# -- failures at start and while serving -----------------------------------------------------------


async def test_unreachable_server_at_start_is_a_clear_unavailable_error() -> None:
    with pytest.raises(Unavailable, match=r"cannot reach database postgresql://u:\*\*\*@127\.0\.0\.1:9/x"):
        await open_pg_store("postgresql://u:secret@127.0.0.1:9/x", connect_timeout=2)


async def test_missing_or_uninitialised_database_without_create(pg_url: str) -> None:
    with pytest.raises(Unavailable, match="does not exist; run `hush-collector init"):
        await open_pg_store(pg_url + "_missing")
    with pytest.raises(Unavailable, match="not initialised"):
        await open_pg_store(pg_url)


async def test_init_creates_a_missing_database(pg_url: str) -> None:
    url = pg_url + "_made"
    store = await open_pg_store(url, signing_key=KEY, create=True)
    try:
        assert await store.schema_version() == current_version()
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_dropped_connections_are_replaced_without_failing_calls(pg: PgStore, pg_url: str) -> None:
    quota = await _setup(pg, "acme", Quota("acme"))
    assert isinstance(await pg.commit_batch(batch(1), quota, now=T0), Accepted)
    name = pg_url.rsplit("/", 1)[1]
    killed = await _count(
        pg_url,
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )
    assert killed >= 1
    assert isinstance(await pg.commit_batch(batch(2), quota, now=T0), Accepted)
    assert (await pg.get_tenant("acme")) is not None


async def test_database_down_while_serving_is_unavailable_then_recovers(pg: PgStore, pg_url: str) -> None:
    await pg.create_tenant("acme", now=T0)
    name = pg_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_url.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        with pytest.raises(Unavailable):
            await pg.get_tenant("acme")
        with pytest.raises(Unavailable):
            await pg.create_tenant("beta", now=T0)
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()
    assert (await pg.create_tenant("beta", now=T0)).name == "beta"
    assert [t.name for t in await pg.list_tenants()] == ["acme", "beta"]


async def test_statement_timeout_is_unavailable_not_a_hang(pg_url: str) -> None:
    store = await open_pg_store(pg_url, signing_key=KEY, create=True, statement_timeout=0.3, max_size=2)
    blocker = await asyncpg.connect(pg_url)
    try:
        await blocker.execute("BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(Unavailable, match="timed out"):
            await store.list_tenants()
        await blocker.execute("ROLLBACK")
        assert await store.list_tenants() == []
    finally:
        await blocker.close()
        await store.close()


async def test_pool_size_and_statement_timeout_come_from_options_or_the_url(pg_url: str) -> None:
    store = await open_pg_store(
        pg_url + "?pool_min=2&pool_max=3&statement_timeout=250ms", signing_key=KEY, create=True
    )
    name = pg_url.rsplit("/", 1)[1]
    count = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'hush-collector'"
    try:
        assert await _count(pg_url, count, name) == 2
        peak = 0

        async def probe() -> None:
            nonlocal peak
            peak = max(peak, int(await _count(pg_url, count, name)))

        await asyncio.gather(*(store.list_tenants() for _ in range(30)), *(probe() for _ in range(5)))
        assert peak <= 3
        timeouts = await store._fetch("SHOW statement_timeout")
        assert timeouts[0][0] == "250ms"
    finally:
        await store.close()
    explicit = await open_pg_store(pg_url + "?pool_max=3", signing_key=KEY, max_size=1, min_size=1)
    try:
        assert await _count(pg_url, count, name) == 1
        await asyncio.gather(*(explicit.list_tenants() for _ in range(10)))
        assert await _count(pg_url, count, name) == 1
    finally:
        await explicit.close()


async def test_a_database_from_a_newer_collector_is_refused(pg_url: str) -> None:
    await (await open_pg_store(pg_url, signing_key=KEY, create=True)).close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", current_version() + 1)
    finally:
        await conn.close()
    with pytest.raises(Unavailable, match=f"schema v{current_version() + 1}, newer than this collector"):
        await open_pg_store(pg_url, signing_key=KEY)


async def test_pg_initialised_tells_init_whether_a_schema_exists(pg_url: str) -> None:
    assert not await pg_initialised(pg_url + "_missing")
    assert not await pg_initialised(pg_url)
    await (await open_pg_store(pg_url, signing_key=KEY, create=True)).close()
    assert await pg_initialised(pg_url)
    with pytest.raises(Unavailable, match="cannot reach database"):
        await pg_initialised("postgresql://postgres@127.0.0.1:9/x?connect_timeout=2s")


@pytest.mark.parametrize("change", ["revoke key", "suspend tenant"])
async def test_a_kill_switch_committed_during_a_commit_is_honoured(
    pg: PgStore, pg_url: str, change: str
) -> None:
    """The in-transaction re-check locks the key and tenant rows (issue 10): a batch whose commit
    starts while a revoke or suspend is in flight waits for it and is refused, not stored."""
    quota = await _setup(pg, "acme", Quota("acme"))
    admin = await asyncpg.connect(pg_url)
    try:
        tx = admin.transaction()
        await tx.start()
        if change == "revoke key":
            await admin.execute("UPDATE keys SET state = 'revoked', revoked_at = $1", T0)
        else:
            await admin.execute("UPDATE tenants SET state = 'suspended' WHERE name = 'acme'")
        commit = asyncio.create_task(pg.commit_batch(batch(1), quota, now=T0 + 10))
        for _ in range(500):  # until the commit waits for the admin's row lock (or finished: old code)
            waiting = await _count(
                pg_url,
                "SELECT COUNT(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()",
            )
            if waiting or commit.done():
                break
            await asyncio.sleep(0.01)
        await tx.commit()
        result = await commit
    finally:
        await admin.close()
    want = "revoked_key" if change == "revoke key" else "tenant_suspended"
    assert result == CommitRefused(want)
    assert await _count(pg_url, "SELECT COUNT(*) FROM batches") == 0
