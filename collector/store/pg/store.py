"""The server :class:`~collector.store.Store`: PostgreSQL through an asyncpg pool, for several replicas.

Open with :func:`open_pg_store` (or :meth:`PgStore.open`). Every write is one READ COMMITTED
transaction on a pooled connection; what keeps it exact while replicas race is described in
:mod:`collector.store.pg.ingest`. The audit log stays one hash chain because every append first takes a
transaction-scoped advisory lock, then reads the head: appends from all replicas are serialised
and each sees the head the previous one committed. Admin mutations take that lock before their
checks, so they are serialised too (check-then-insert cannot race).

Failures: an unreachable or uninitialised database at start raises
:class:`~collector.errors.Unavailable` naming the URL (password removed). While serving, the
messages never name it (they reach the server's log for every failed call), and a dropped
connection, a server restart, a full server or a statement timeout surfaces as ``Unavailable`` (a
retriable error) instead of a crash; work that certainly did not commit (the failure came before
``COMMIT``), deadlocks and serialisation failures are retried a few times with jittered back-off
first. The pool replaces broken connections by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg
import msgspec
import nacl.signing

from collector import audit, certs
from collector.errors import NotFound, Unavailable
from collector.store import rules
from collector.store.group import GroupCommit, group_order
from collector.store.pg import certs as pg_certs
from collector.store.pg import cursors as pg_cursors
from collector.store.pg import governance as gov
from collector.store.pg import reads as pg_reads
from collector.store.pg import tokens as api
from collector.store.pg.ingest import Rollback, affected, commit, read_states
from collector.store.pg.schema import current_version, pg_migrations
from collector.store.pg.url import (
    PgOptions,
    check,
    database_of,
    is_pg_url,
    redact_url,
    split_options,
    with_database,
)
from collector.store.records import (
    AgentActivity,
    AgentCertificate,
    ApiToken,
    BatchCommit,
    BatchPrivacy,
    CertificateRecord,
    CommitOutcome,
    KeyRecord,
    OutputPage,
    PolicyRecord,
    PrivacyCap,
    Quota,
    Refusal,
    SpendDay,
    StoredRow,
    Tenant,
    UsageDay,
)
from collector.store.schema import KEY_COLUMNS, QUOTA_FIELDS
from collector.store.tokens import token_creation, token_revocation
from collector.store.vocab import KeyState, TenantState
from hushmetric.errors import ConfigError
from hushmetric.keys import key_id as compute_key_id

__all__ = ["PgOptions", "PgStore", "is_pg_url", "open_pg_store", "pg_initialised"]

T = TypeVar("T")
Connection = Any  # asyncpg ships no type information
Record = Any

_AUDIT_LOCK = 0x6875_7368_6175_6469  # "hushaudi": the advisory lock that serialises audit appends
_MIGRATE_LOCK = 0x6875_7368_6D69_6772  # "hushmigr": one migrator at a time
_ATTEMPTS = 4
_json = msgspec.json.Encoder()
_details = msgspec.json.Decoder(dict[str, audit.Detail])
_TENANT_COLS = "name, state, created, updated"

#: Failures that mean "the database cannot be used right now", as opposed to a bug or bad input.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.InterfaceError,  # "connection is closed", pool closing
    asyncpg.exceptions.InternalClientError,  # protocol state after the server killed an idle connection
)
_RETRY_TX = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
#: Groups run with a savepoint per batch after one that needed them (see ``_commit_group``).
_CAREFUL_GROUPS = 8


class _Redo(Exception):  # a group without savepoints had a refusal or a failure: run it with them
    pass


class _Alone(Exception):  # a group of one batch was refused: its transaction is rolled back
    def __init__(self, outcome: CommitOutcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def _tenant_lane(item: tuple[BatchCommit, Quota, float]) -> int:
    return zlib.crc32(item[0].tenant.encode())  # stable, unlike hash(): the same lane on every run


async def _keep_session(conn: Connection) -> None:
    """What the pool runs when a connection comes back: nothing beyond asyncpg's own clean-up (an
    open transaction rolled back, listeners dropped). The default also sends ``RESET ALL``,
    ``CLOSE ALL``, ``UNLISTEN *`` and ``pg_advisory_unlock_all()``: one more round trip per
    acquire, for session state this store never creates (its settings come with the connection,
    its advisory locks are transaction-scoped, it declares no cursors and listens to nothing)."""


def _unavailable(what: str, exc: BaseException) -> Unavailable:
    detail = str(exc).strip() or type(exc).__name__
    return Unavailable(f"{what}: {detail}")


def _quota(tenant: str, row: Record | None) -> Quota:
    return Quota(tenant, *row) if row is not None else Quota(tenant)


def _tenant(r: Record) -> Tenant:
    return Tenant(r[0], r[1], r[2], r[3])


def _key_record(r: Record) -> KeyRecord:
    return KeyRecord(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6], r[7])


async def open_pg_store(
    url: str,
    *,
    signing_key: nacl.signing.SigningKey | None = None,
    create: bool = False,
    migrate: bool = True,
    min_size: int | None = None,
    max_size: int | None = None,
    statement_timeout: float | None = None,
    connect_timeout: float | None = None,
) -> PgStore:
    """Open a PostgreSQL store; what the collector calls for a ``postgresql://`` ``--db``.

    ``create`` (``hush-collector init``): also create the database if it is missing and initialise
    the schema. ``migrate`` (default): bring an older schema up to date, as the SQLite store does
    at open; ``migrate=False`` leaves that to :meth:`PgStore.migrate` (a ``migrate`` command that
    reports what it did). ``min_size``/``max_size`` size the connection pool, ``statement_timeout``
    (seconds) is set on every connection, ``connect_timeout`` bounds each connection attempt; each
    defaults to the URL's ``pool_min``, ``pool_max``, ``statement_timeout``, ``connect_timeout``
    query parameters (:mod:`collector.store.pg.url`), else 1, 10, 30 s, 10 s.

    Raises :class:`~collector.errors.Unavailable` when the server cannot be reached or refuses the
    login, the database does not exist (without ``create``) or was never initialised;
    :class:`~hushmetric.errors.ConfigError` for a malformed URL or option.
    """
    if not is_pg_url(url):
        raise ConfigError(f"{redact_url(url)} is not a postgresql:// URL")
    clean, options = split_options(url)
    given = {
        "min_size": min_size,
        "max_size": max_size,
        "statement_timeout": statement_timeout,
        "connect_timeout": connect_timeout,
    }
    options = check(
        msgspec.structs.replace(options, **{k: v for k, v in given.items() if v is not None}), url
    )
    return await PgStore.open(clean, options, signing_key=signing_key, create=create, migrate=migrate)


async def pg_initialised(url: str) -> bool:
    """Whether the database exists and holds a collector schema (``init`` uses it to refuse making
    a new audit key for a database whose log another key already signs). Unavailable if unreachable."""
    clean, options = split_options(url)
    try:
        conn = await asyncpg.connect(clean, timeout=options.connect_timeout)
    except asyncpg.InvalidCatalogNameError:
        return False
    except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
        raise _unavailable(f"cannot reach database {redact_url(url)}", exc) from exc
    try:
        return bool(await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"))
    finally:
        await conn.close()


class PgStore:
    """A :class:`~collector.store.Store` on an asyncpg pool; ``signing_key`` signs audit entries."""

    def __init__(
        self,
        pool: Any,
        signing_key: nacl.signing.SigningKey | None,
        *,
        url: str = "postgresql",
        pool_max: int = 2,
    ) -> None:
        self._pool = pool
        self._key = signing_key
        self._where = redact_url(url)
        # Lanes by tenant: PostgreSQL is bound by round trips, not by the flush, so tenants are
        # written side by side on up to three quarters of the pool (the rest serves the reads before
        # each commit), while one tenant's batches meet in one group instead of queueing on its
        # meter rows across parallel transactions of this replica.
        self._group: GroupCommit[tuple[BatchCommit, Quota, float], CommitOutcome] = GroupCommit(
            self._commit_group, lanes=max(1, pool_max * 3 // 4), lane=_tenant_lane
        )
        self._careful = 0  # groups still to run with a savepoint per batch from the start

    # -- lifetime ------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        url: str,
        options: PgOptions,
        *,
        signing_key: nacl.signing.SigningKey | None = None,
        create: bool = False,
        migrate: bool = True,
    ) -> PgStore:
        """Use :func:`open_pg_store`; this takes a URL already stripped of the store's options."""
        where = redact_url(url)
        settings = {
            "statement_timeout": str(max(1, round(options.statement_timeout * 1000))),
            "application_name": "hush-collector",
        }
        connect_timeout = options.connect_timeout

        async def connect() -> Any:
            pool = await asyncpg.create_pool(
                url,
                min_size=options.min_size,
                max_size=options.max_size,
                timeout=connect_timeout,
                server_settings=settings,
                reset=_keep_session,
            )
            try:  # also with min_size 0: an unreachable server fails here, with a clear message
                await pool.execute("SELECT 1", timeout=connect_timeout)
            except BaseException:
                await pool.close()
                raise
            return pool

        try:
            try:
                pool = await connect()
            except asyncpg.InvalidCatalogNameError:
                if not create:
                    raise
                await _create_database(url, connect_timeout)
                pool = await connect()
        except asyncpg.InvalidCatalogNameError as exc:
            raise Unavailable(
                f"database {where} does not exist; run `hush-collector init --db URL` first"
            ) from exc
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise _unavailable(f"cannot log in to {where}", exc) from exc
        except _UNAVAILABLE as exc:
            raise _unavailable(f"cannot reach database {where}", exc) from exc
        except ValueError as exc:  # asyncpg's own URL parsing
            raise ConfigError(f"bad database URL {where}: {exc}") from exc
        store = cls(pool, signing_key, url=url, pool_max=options.max_size)
        try:
            if migrate or create:
                await store.migrate(create=create)
            elif await store.schema_version() == 0:
                raise Unavailable(f"database {where} is not initialised; run `hush-collector init`")
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._group.close()
        await self._pool.close()

    async def ping(self) -> None:
        """Readiness: one round trip to the database; raises Unavailable when it cannot be used."""
        await self._fetch("SELECT 1")

    async def schema_version(self) -> int:
        """The schema version the database is at (0 when never initialised)."""

        async def read(db: Connection) -> int:
            exists = await db.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
            if not exists:
                return 0
            return int(await db.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

        return await self._run(read)

    async def migrate(self, *, create: bool = True, target: int | None = None) -> tuple[int, int]:
        """Apply every migration above the database's version (up to ``target``), one transaction
        each; returns (from, to). Without ``create``, a database that was never initialised is an
        error rather than silently initialised. Replicas starting together apply each step once."""
        newest = current_version()
        target = newest if target is None else target

        async def step(db: Connection) -> tuple[int, int]:
            await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            exists = await db.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
            if not exists and not create:
                raise Unavailable(f"database {self._where} is not initialised; run `hush-collector init`")
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            found = int(await db.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            if found > newest:
                raise Unavailable(
                    f"database {self._where} is at schema v{found}, newer than this collector (v{newest})"
                )
            version = found
            for version_, stmts in pg_migrations():
                if found < version_ <= target:
                    for stmt in stmts:
                        await db.execute(stmt)
                    await db.execute("INSERT INTO schema_version (version) VALUES ($1)", version_)
                    version = version_
            return found, version

        return await self._run(step)

    # -- transactions --------------------------------------------------------------------------
    async def _run(self, work: Callable[[Connection], Awaitable[T]], *, tx: bool = True) -> T:
        """Run ``work`` in one transaction (``tx``; else as single autocommit statements: reads);
        retry what certainly did not commit; wrap outages."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                db = await self._pool.acquire()
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:  # no connection: nothing was done
                if attempt == _ATTEMPTS:
                    raise _unavailable("cannot connect to the database", exc) from exc
                await self._backoff(attempt)
                continue
            try:
                return await self._once(db, work) if tx else await work(db)
            except _RETRY_TX as exc:
                if attempt == _ATTEMPTS:
                    raise _unavailable("the database is contended", exc) from exc
            except asyncpg.exceptions.QueryCanceledError as exc:
                raise _unavailable("a database statement timed out", exc) from exc
            except _UNAVAILABLE as exc:
                with contextlib.suppress(Exception):  # asyncpg may have dropped it already
                    db.terminate()  # never hand this connection out again; the pool opens a new one
                if attempt == _ATTEMPTS:
                    raise _unavailable("the database is unavailable", exc) from exc
            finally:
                # a broken connection is dropped by the pool; a release error never changes the outcome
                with contextlib.suppress(Exception):
                    await self._pool.release(db)
            await self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, db: Connection, work: Callable[[Connection], Awaitable[T]]) -> T:
        """One attempt. Errors before COMMIT leave nothing behind (safe to retry); a failure during
        COMMIT leaves the outcome unknown, so it becomes Unavailable at once and is never retried."""
        tx = db.transaction()
        await tx.start()
        try:
            result = await work(db)
        except BaseException:
            await asyncio.shield(self._rollback(tx))
            raise
        try:
            await tx.commit()
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise _unavailable("the database failed during commit", exc) from exc
        return result

    @staticmethod
    async def _backoff(attempt: int) -> None:
        await asyncio.sleep(random.uniform(0.5, 1.0) * 0.05 * 2**attempt)

    @staticmethod
    async def _rollback(tx: Any) -> None:
        with contextlib.suppress(*_UNAVAILABLE):  # the connection is gone, and the transaction with it
            await tx.rollback()

    async def _write(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """A write runs to completion even if the caller is cancelled (a client gone mid-call), like
        the SQLite store's: the outcome is then decided, and a retry of the batch is a duplicate."""
        return await asyncio.shield(self._run(work))

    async def _fetch(self, sql: str, *args: object) -> list[Record]:
        """One read statement, outside any explicit transaction (one round trip)."""

        async def read(db: Connection) -> list[Record]:
            return list(await db.fetch(sql, *args))

        return await self._run(read, tx=False)

    # -- audit ---------------------------------------------------------------------------------
    async def _audit(
        self,
        db: Connection,
        action: str,
        tenant: str | None,
        details: Mapping[str, audit.Detail],
        now: float,
    ) -> audit.AuditEntry:
        if self._key is None:
            raise Unavailable("the collector signing key is not loaded; cannot write the audit log")
        await db.execute("SELECT pg_advisory_xact_lock($1)", _AUDIT_LOCK)
        row = await db.fetchrow("SELECT i, hash FROM audit ORDER BY i DESC LIMIT 1")
        head = (row[0], row[1]) if row is not None else None
        entry = audit.next_entry(head, now=now, action=action, tenant=tenant, details=details, key=self._key)
        await db.execute(
            "INSERT INTO audit (i, ts, action, tenant, details, prev, hash, sig) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            entry.i,
            entry.ts,
            entry.action,
            entry.tenant,
            _json.encode(entry.details).decode(),
            entry.prev,
            entry.hash,
            entry.sig,
        )
        return entry

    async def _admin(self, db: Connection) -> None:
        """Serialise admin mutations (they all append to the audit log) before their checks."""
        if self._key is None:
            raise Unavailable("the collector signing key is not loaded; cannot write the audit log")
        await db.execute("SELECT pg_advisory_xact_lock($1)", _AUDIT_LOCK)

    async def append_audit(
        self, action: str, tenant: str | None, details: Mapping[str, audit.Detail], *, now: float
    ) -> audit.AuditEntry:
        return await self._write(lambda db: self._audit(db, action, tenant, details, now))

    async def audit_entries(self) -> list[audit.AuditEntry]:
        rows = await self._fetch(
            "SELECT i, ts, action, tenant, details, prev, hash, sig FROM audit ORDER BY i"
        )
        return [
            audit.AuditEntry(int(r[0]), r[1], r[2], r[3], _details.decode(r[4]), r[5], r[6], r[7])
            for r in rows
        ]

    # -- tenants -------------------------------------------------------------------------------
    @staticmethod
    async def _get_tenant(db: Connection, name: str) -> Tenant | None:
        row = await db.fetchrow(f"SELECT {_TENANT_COLS} FROM tenants WHERE name = $1", name)
        return _tenant(row) if row is not None else None

    async def _active_tenant(self, db: Connection, name: str) -> Tenant:
        return rules.must_be_active(await self._get_tenant(db, name), name)

    async def create_tenant(self, name: str, *, now: float) -> Tenant:
        async def work(db: Connection) -> Tenant:
            await self._admin(db)
            rules.must_be_new_tenant(await self._get_tenant(db, name), name)
            await db.execute(
                "INSERT INTO tenants (name, state, created, updated) VALUES ($1, 'active', $2, $2)",
                name,
                now,
            )
            await self._audit(db, "tenant.create", name, {}, now)
            return Tenant(name, "active", now, now)

        return await self._write(work)

    async def set_tenant_state(self, name: str, state: TenantState, *, now: float) -> Tenant:
        async def work(db: Connection) -> Tenant:
            await self._admin(db)
            change = rules.tenant_change(await self._get_tenant(db, name), name, state, now)
            await db.execute("UPDATE tenants SET state = $1, updated = $2 WHERE name = $3", state, now, name)
            await self._audit(db, change.action, name, change.details, now)
            return change.tenant

        return await self._write(work)

    async def get_tenant(self, name: str) -> Tenant | None:
        rows = await self._fetch(f"SELECT {_TENANT_COLS} FROM tenants WHERE name = $1", name)
        return _tenant(rows[0]) if rows else None

    async def list_tenants(self) -> list[Tenant]:
        return [_tenant(r) for r in await self._fetch(f"SELECT {_TENANT_COLS} FROM tenants ORDER BY name")]

    # -- keys ----------------------------------------------------------------------------------
    async def _insert_key(
        self, db: Connection, tenant: str, agent: str, public_key: bytes, now: float, via: str
    ) -> KeyRecord:
        key, details = rules.added_key(tenant, agent, public_key, now, via)
        registered = await db.fetchval("SELECT 1 FROM keys WHERE key_id = $1", key.key_id) is not None
        rules.must_be_new_key(registered, key.key_id)
        await db.execute(
            f"INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, 'active', $5, NULL, NULL)",
            key.key_id,
            tenant,
            agent,
            public_key,
            now,
        )
        await self._audit(db, "key.add", tenant, details, now)
        return key

    async def add_key(self, tenant: str, agent: str, public_key: bytes, *, now: float) -> KeyRecord:
        async def work(db: Connection) -> KeyRecord:
            await self._admin(db)
            await self._active_tenant(db, tenant)
            return await self._insert_key(db, tenant, agent, public_key, now, "admin")

        return await self._write(work)

    async def set_key_state(self, key_id: str, state: KeyState, *, now: float) -> KeyRecord:
        async def work(db: Connection) -> KeyRecord:
            await self._admin(db)
            row = await db.fetchrow(f"SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1", key_id)
            key = _key_record(row) if row is not None else None
            change = rules.key_change(key, key_id, state, now)
            if change is None:
                assert key is not None  # key_change raised NotFound otherwise
                return key
            new = change.key
            await db.execute(
                "UPDATE keys SET state = $1, retired_at = $2, revoked_at = $3 WHERE key_id = $4",
                new.state,
                new.retired_at,
                new.revoked_at,
                key_id,
            )
            await self._audit(db, change.action, new.tenant, change.details, now)
            return new

        return await self._write(work)

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._fetch(f"SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1", key_id)
        return _key_record(rows[0]) if rows else None

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        if tenant is None:
            rows = await self._fetch(f"SELECT {KEY_COLUMNS} FROM keys ORDER BY tenant, agent, added")
        else:
            rows = await self._fetch(
                f"SELECT {KEY_COLUMNS} FROM keys WHERE tenant = $1 ORDER BY agent, added", tenant
            )
        return [_key_record(r) for r in rows]

    # -- enrollment ----------------------------------------------------------------------------
    async def create_enroll_token(
        self,
        tenant: str,
        token_id: str,
        secret_hash: bytes,
        *,
        expires: float,
        now: float,
        agent: str | None = None,
        rotate: bool = False,
    ) -> None:
        async def work(db: Connection) -> None:
            await self._admin(db)
            await self._active_tenant(db, tenant)
            await db.execute(
                "INSERT INTO enroll_tokens (token_id, tenant, secret_hash, expires, created, agent, rotate) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                token_id,
                tenant,
                secret_hash,
                expires,
                now,
                agent,
                int(rotate),
            )
            await self._audit(
                db, "enroll.token", tenant, rules.token_details(token_id, expires, agent, rotate), now
            )

        await self._write(work)

    async def redeem_enroll_token(
        self, token_id: str, secret_hash: bytes, agent: str, public_key: bytes, *, now: float
    ) -> KeyRecord:
        async def work(db: Connection) -> KeyRecord:
            await self._admin(db)
            row = await db.fetchrow(
                f"SELECT {rules.TOKEN_COLUMNS} FROM enroll_tokens WHERE token_id = $1", token_id
            )
            token = rules.token_row(tuple(row) if row is not None else None)
            token = rules.redeemable(token, token_id, secret_hash, agent, now)
            tenant = token.tenant
            await self._active_tenant(db, tenant)
            has_key = await db.fetchval(
                "SELECT 1 FROM keys WHERE tenant = $1 AND agent = $2 LIMIT 1", tenant, agent
            )
            rules.rotation_allowed(token, agent, has_key is not None)
            status = await db.execute(
                "UPDATE enroll_tokens SET used_at = $1, key_id = $2 WHERE token_id = $3 AND used_at IS NULL",
                now,
                compute_key_id(public_key),
                token_id,
            )
            if affected(status) != 1:
                raise NotFound("enroll token", token_id)
            return await self._insert_key(db, tenant, agent, public_key, now, f"enroll:{token_id}")

        return await self._write(work)

    # -- quotas --------------------------------------------------------------------------------
    async def set_quota(self, quota: Quota, *, now: float) -> Quota:
        async def work(db: Connection) -> Quota:
            await self._admin(db)
            if await self._get_tenant(db, quota.tenant) is None:
                raise NotFound("tenant", quota.tenant)
            values = rules.quota_values(quota)
            update = ", ".join(f"{f} = excluded.{f}" for f in QUOTA_FIELDS)
            await db.execute(
                f"INSERT INTO quotas (tenant, {', '.join(QUOTA_FIELDS)}) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant) DO UPDATE SET {update}",
                quota.tenant,
                *values,
            )
            await db.execute("DELETE FROM buckets WHERE name = $1", rules.bucket_name(quota.tenant))
            await self._audit(db, "quota.set", quota.tenant, rules.quota_details(quota), now)
            return quota

        return await self._write(work)

    async def get_quota(self, tenant: str) -> Quota:
        rows = await self._fetch(
            f"SELECT {', '.join('q.' + f for f in QUOTA_FIELDS)}, q.tenant IS NOT NULL "
            "FROM tenants t LEFT JOIN quotas q ON q.tenant = t.name WHERE t.name = $1",
            tenant,
        )
        if not rows:
            raise NotFound("tenant", tenant)
        return _quota(tenant, rows[0][: len(QUOTA_FIELDS)] if rows[0][-1] else None)

    async def largest_batch_limit(self) -> int | None:
        rows = await self._fetch("SELECT MAX(max_batch_bytes) FROM quotas")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- ingest --------------------------------------------------------------------------------
    async def commit_batch(self, batch: BatchCommit, quota: Quota, *, now: float) -> CommitOutcome:
        return await self._group.submit((batch, quota, now))

    @property
    def commit_groups(self) -> int:
        """Ingest transactions run so far (batches committed ÷ this is the mean group size)."""
        return self._group.groups

    async def _commit_group(
        self, group: list[tuple[BatchCommit, Quota, float]]
    ) -> list[CommitOutcome | BaseException]:
        """One transaction (retried whole on a deadlock) that returns after COMMIT, the group's one
        WAL flush. Decided in (tenant, agent, seq) order, so replicas take tenants' rows in one order.

        A refusal or an error must roll back its batch only, which takes a savepoint per batch: one
        round trip each, a fifth of a batch's. So a group first runs without them; if any batch in
        it is refused or fails, that transaction is rolled back whole (nothing of it was stored or
        acknowledged) and the group runs again with a savepoint per batch, deciding every batch
        afresh in the same order — the same decisions a run with savepoints would have made from
        the start. After such a group the next few run with savepoints at once (a tenant over its
        quota refuses batch after batch)."""
        order = group_order([(b.tenant, b.agent, b.seq) for b, _, _ in group])
        if len(group) == 1 or self._careful == 0:
            try:
                return await self._write(lambda db: self._decide(db, group, order, savepoints=False))
            except _Alone as alone:  # alone, the transaction is the batch's savepoint
                return [alone.outcome]
            except _Redo:
                self._careful = _CAREFUL_GROUPS
        self._careful = max(0, self._careful - 1)
        return await self._write(lambda db: self._decide(db, group, order, savepoints=True))

    @staticmethod
    async def _decide(
        db: Connection, group: list[tuple[BatchCommit, Quota, float]], order: list[int], *, savepoints: bool
    ) -> list[CommitOutcome | BaseException]:
        """Every batch of ``group`` in one transaction. Without ``savepoints`` a refusal or a
        failure raises :class:`_Redo` (the caller rolls back and runs the group with them); alone
        (one batch, no savepoints), a refusal is its result and the transaction is rolled back."""
        results: list[CommitOutcome | BaseException] = [RuntimeError("not decided")] * len(group)
        states = await read_states(db, (b.key_id for b, _, _ in group))
        locked: set[tuple[str, str]] = set()  # (tenant, day) meter rows this transaction holds
        if savepoints:
            await db.execute("SAVEPOINT batch")
        for n, i in enumerate(order):
            batch, quota, now = group[i]
            try:
                results[i] = await commit(db, batch, quota, now, states, locked)
            except Rollback as stop:
                if not savepoints:
                    if len(group) == 1:
                        raise _Alone(stop.outcome) from None
                    raise _Redo from None
                results[i] = stop.outcome
                await db.execute("ROLLBACK TO SAVEPOINT batch")  # the savepoint stays for the next
                continue
            except (*_RETRY_TX, asyncpg.exceptions.QueryCanceledError, *_UNAVAILABLE):
                raise  # the whole group: retried, or Unavailable for every batch in it
            except asyncpg.PostgresError as exc:  # this batch only
                if not savepoints:
                    if len(group) == 1:
                        raise
                    raise _Redo from exc
                results[i] = exc
                await db.execute("ROLLBACK TO SAVEPOINT batch")
                continue
            if (
                savepoints and n < len(order) - 1
            ):  # keep this batch, mark the next one's start: one round trip
                await db.execute("RELEASE SAVEPOINT batch; SAVEPOINT batch")
        return results

    async def record_refusal(self, refusal: Refusal, *, now: float, count: int = 1) -> None:
        day, minute = rules.day_of(now), rules.minute_of(now)

        async def work(db: Connection) -> None:
            await db.execute(
                "INSERT INTO refusals (tenant, day, reason, count) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (tenant, day, reason) DO UPDATE SET count = refusals.count + excluded.count",
                refusal.tenant,
                day,
                refusal.reason,
                count,
            )
            status = await db.execute(
                "INSERT INTO refusal_minutes (tenant, minute, reason) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                refusal.tenant,
                minute,
                refusal.reason,
            )
            first = affected(status) == 1
            if first:  # first of this minute: forget minutes older than a day
                await db.execute("DELETE FROM refusal_minutes WHERE minute < $1", minute - rules.MINUTES_KEPT)
            if first and self._key is not None:
                details = rules.refusal_details(refusal)
                await self._audit(db, rules.refusal_action(refusal.reason), refusal.tenant, details, now)

        await self._write(work)

    # -- governance ----------------------------------------------------------------------------
    async def approve_policy(self, tenant: str, digest: str, *, note: str, now: float) -> PolicyRecord:
        async def work(db: Connection) -> PolicyRecord:
            await self._admin(db)
            existing = await gov.get_policy(db, tenant, digest)
            record, details = rules.policy_approval(
                await self._get_tenant(db, tenant), tenant, existing, digest, note, now
            )
            await gov.put_policy(db, record)
            await self._audit(db, "policy.approve", tenant, details, now)
            return record

        return await self._write(work)

    async def revoke_policy(self, tenant: str, digest: str, *, now: float) -> PolicyRecord:
        async def work(db: Connection) -> PolicyRecord:
            await self._admin(db)
            existing = await gov.get_policy(db, tenant, digest)
            record, details = rules.policy_revocation(
                await self._get_tenant(db, tenant), tenant, existing, digest, now
            )
            await gov.put_policy(db, record)
            await self._audit(db, "policy.revoke", tenant, details, now)
            return record

        return await self._write(work)

    async def list_policies(self, tenant: str | None = None) -> list[PolicyRecord]:
        return await self._run(lambda db: gov.list_policies(db, tenant), tx=False)

    async def set_privacy_cap(self, tenant: str, cap: PrivacyCap | None, *, now: float) -> PrivacyCap | None:
        async def work(db: Connection) -> PrivacyCap | None:
            await self._admin(db)
            details = rules.cap_details(await self._get_tenant(db, tenant), tenant, cap)
            if cap is None:
                await db.execute("DELETE FROM privacy_caps WHERE tenant = $1", tenant)
            else:
                await gov.put_cap(db, cap)
            await self._audit(db, "policy.cap", tenant, details, now)
            return cap

        return await self._write(work)

    async def get_privacy_cap(self, tenant: str) -> PrivacyCap | None:
        return await self._run(lambda db: gov.get_cap(db, tenant), tx=False)

    async def privacy_spend(self, tenant: str, since: str | None, until: str | None) -> list[SpendDay]:
        return await self._run(lambda db: gov.spend(db, tenant, since, until), tx=False)

    async def policy_batches(self, tenant: str, since: str | None, until: str | None) -> dict[str, int]:
        return await self._run(lambda db: gov.policy_batches(db, tenant, since, until), tx=False)

    # -- certified agents (issue 14 part 3) ----------------------------------------------------
    async def record_certificate(self, cert: CertificateRecord, *, now: float) -> bool:
        async def work(db: Connection) -> bool:
            await self._admin(db)
            fresh = await pg_certs.insert(db, cert)
            if fresh:
                await self._audit(db, "certificate.record", cert.tenant, certs.audit_details(cert), now)
            return fresh

        return await self._write(work)

    async def agent_certificates(
        self, tenant: str | None, *, now: float | None = None
    ) -> list[AgentCertificate]:
        found = await pg_certs.records(self._fetch, tenant)
        days = await pg_certs.agent_days(self._fetch, tenant, certs.LOOKBACK_SECONDS) if found else {}
        revoked = {k.key_id for k in await self.list_keys(tenant) if k.state == "revoked"} if found else set()
        return certs.statuses(found, days, time.time() if now is None else now, revoked)

    # -- reads ---------------------------------------------------------------------------------
    async def usage(
        self, tenant: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[UsageDay]:
        return await pg_reads.usage(self._fetch, tenant, since, until)

    async def released_rows(self, tenant: str, since: str | None, until: str | None) -> list[StoredRow]:
        return await pg_reads.released_rows(self._fetch, tenant, since, until)

    async def batch_privacy(self, tenant: str, since: str | None, until: str | None) -> list[BatchPrivacy]:
        return await pg_reads.batch_privacy(self._fetch, tenant, since, until)

    # -- outputs -------------------------------------------------------------------------------
    async def output_cursor(self, name: str) -> int:
        return await pg_cursors.cursor(self._fetch, name)

    async def advance_output_cursor(self, name: str, expected: int, to: int, *, now: float) -> bool:
        async def work(db: Connection) -> bool:
            return await pg_cursors.advance(db, name, expected, to, now)

        return await self._run(work)

    async def output_rows_after(self, after: int, max_batches: int) -> OutputPage:
        return await pg_cursors.rows_after(self._fetch, after, max_batches)

    # -- HTTP API (issue 14) -------------------------------------------------------------------
    async def create_api_token(self, token: ApiToken, *, now: float) -> ApiToken:
        async def work(db: Connection) -> ApiToken:
            await self._admin(db)
            tenant = await self._get_tenant(db, token.tenant) if token.tenant is not None else None
            details = token_creation(tenant, token)
            await api.insert_token(db, token)
            await self._audit(db, "api_token.create", token.tenant, details, now)
            return msgspec.structs.replace(token, secret_hash=b"")

        return await self._write(work)

    async def revoke_api_token(self, token_id: str, *, now: float) -> ApiToken:
        async def work(db: Connection) -> ApiToken:
            await self._admin(db)
            revoked, details = token_revocation(await api.api_token(db, token_id), token_id, now)
            await api.revoke(db, token_id, now)
            await self._audit(db, "api_token.revoke", revoked.tenant, details, now)
            return revoked

        return await self._write(work)

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        return await self._run(lambda db: api.api_token(db, token_id), tx=False)

    async def list_api_tokens(self) -> list[ApiToken]:
        return await api.list_tokens(self._fetch)

    async def agent_activity(self, tenant: str) -> list[AgentActivity]:
        return await api.activity(self._fetch, tenant)

    async def audit_tail(self, limit: int, tenant: str | None = None) -> list[audit.AuditEntry]:
        sql, params = api.audit_tail_sql(tenant, limit)
        rows = await self._fetch(sql, *params)
        return [
            audit.AuditEntry(int(r[0]), r[1], r[2], r[3], _details.decode(r[4]), r[5], r[6], r[7])
            for r in rows
        ]


async def _create_database(url: str, connect_timeout: float) -> None:
    """``CREATE DATABASE`` for ``init`` against a fresh server, through its ``postgres`` database."""
    name = database_of(url)
    if not name:
        raise Unavailable(f"{redact_url(url)} names no database")
    conn = await asyncpg.connect(with_database(url, "postgres"), timeout=connect_timeout)
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted}")
    except asyncpg.DuplicateDatabaseError:
        pass  # another process created it first
    finally:
        await conn.close()
