"""The embedded :class:`~collector.store.Store`: SQLite in WAL mode through aiosqlite.

One connection per process; an asyncio lock serialises transactions on it, and ``BEGIN IMMEDIATE``
with a busy timeout serialises them against other processes (the admin CLI next to a running
server). Quota and rate-limit consumption are conditional ``UPDATE``s whose row count decides.
Concurrent ingest commits are grouped (:mod:`collector.store.group`): one ``BEGIN IMMEDIATE``, one
``SAVEPOINT`` per batch, one ``COMMIT`` and so one fsync for the group, still ``synchronous = FULL``.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiosqlite
import msgspec
import nacl.signing

from collector import audit, certs
from collector.errors import NotFound, Unavailable
from collector.store import rules
from collector.store.group import GroupCommit
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
from collector.store.schema import KEY_COLUMNS, MIGRATIONS, QUOTA_FIELDS, statements
from collector.store.sqlite import certs as sqlite_certs
from collector.store.sqlite import cursors as sqlite_cursors
from collector.store.sqlite import governance as gov
from collector.store.sqlite import reads as sqlite_reads
from collector.store.sqlite import tokens as api
from collector.store.sqlite.ingest import commit_group
from collector.store.tokens import token_creation, token_revocation
from collector.store.vocab import KeyState, TenantState
from hushmetric.keys import key_id as compute_key_id

__all__ = ["SqliteStore"]

_BUSY_TIMEOUT_MS = 15_000
_json = msgspec.json.Encoder()
_details = msgspec.json.Decoder(dict[str, audit.Detail])


_QUOTA_UPDATE = ", ".join(f"{f} = excluded.{f}" for f in QUOTA_FIELDS)


P = ParamSpec("P")
R = TypeVar("R")


def _whole(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run a write to completion even if the caller is cancelled (a client gone mid-call): a
    transaction interrupted between statements would leave the shared connection inside it."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.shield(fn(*args, **kwargs))

    return wrapper


class SqliteStore:
    """Open with :meth:`open`; ``signing_key`` signs audit entries (read-only use may pass None)."""

    def __init__(self, db: aiosqlite.Connection, signing_key: nacl.signing.SigningKey | None) -> None:
        self._db = db
        self._key = signing_key
        self._lock = asyncio.Lock()
        self._group: GroupCommit[tuple[BatchCommit, Quota, float], CommitOutcome] = GroupCommit(
            self._commit_group
        )

    @classmethod
    async def open(
        cls, path: Path, *, signing_key: nacl.signing.SigningKey | None = None, create: bool = False
    ) -> SqliteStore:
        if not create and not await asyncio.to_thread(path.exists):
            raise Unavailable(f"database {path} does not exist; run `hush-collector init` first")
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open database {path}: {exc}") from exc
        store = cls(db, signing_key)
        try:
            await db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            # FULL: in WAL mode NORMAL may lose the last transactions on power loss, and an
            # acknowledged batch (and its metering) must survive it, as the threat model says.
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
            await store._migrate()
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise Unavailable(f"cannot use database {path}: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._group.close()
        await self._db.close()

    async def ping(self) -> None:
        try:
            await self._db.execute_fetchall("SELECT 1")
        except (sqlite3.Error, ValueError) as exc:  # ValueError: the connection is closed
            raise Unavailable(f"database unusable: {exc}") from exc

    async def _migrate(self) -> None:
        async with self._tx() as db:
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = list(await db.execute_fetchall("SELECT MAX(version) FROM schema_version"))
            current = rows[0][0] or 0
            for version, script in MIGRATIONS:
                if version > current:
                    for stmt in statements(script):
                        await db.execute(stmt)
                    await db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"database is busy: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                await asyncio.shield(self._db.execute("ROLLBACK"))
                raise
            await self._db.execute("COMMIT")

    async def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, tuple(params)))

    # -- audit ---------------------------------------------------------------------------------
    async def _audit(
        self,
        db: aiosqlite.Connection,
        action: str,
        tenant: str | None,
        details: Mapping[str, audit.Detail],
        now: float,
    ) -> audit.AuditEntry:
        if self._key is None:
            raise Unavailable("the collector signing key is not loaded; cannot write the audit log")
        rows = list(await db.execute_fetchall("SELECT i, hash FROM audit ORDER BY i DESC LIMIT 1"))
        head = (rows[0][0], rows[0][1]) if rows else None
        entry = audit.next_entry(head, now=now, action=action, tenant=tenant, details=details, key=self._key)
        await db.execute(
            "INSERT INTO audit (i, ts, action, tenant, details, prev, hash, sig) VALUES (?,?,?,?,?,?,?,?)",
            (
                entry.i,
                entry.ts,
                entry.action,
                entry.tenant,
                _json.encode(entry.details),
                entry.prev,
                entry.hash,
                entry.sig,
            ),
        )
        return entry

    @_whole
    async def append_audit(
        self, action: str, tenant: str | None, details: Mapping[str, audit.Detail], *, now: float
    ) -> audit.AuditEntry:
        async with self._tx() as db:
            return await self._audit(db, action, tenant, details, now)

    async def audit_entries(self) -> list[audit.AuditEntry]:
        rows = await self._read(
            "SELECT i, ts, action, tenant, details, prev, hash, sig FROM audit ORDER BY i"
        )
        return [
            audit.AuditEntry(r[0], r[1], r[2], r[3], _details.decode(r[4]), r[5], r[6], r[7]) for r in rows
        ]

    # -- tenants -------------------------------------------------------------------------------
    @staticmethod
    async def _tenant(db: aiosqlite.Connection, name: str) -> Tenant | None:
        rows = list(
            await db.execute_fetchall(
                "SELECT name, state, created, updated FROM tenants WHERE name = ?", (name,)
            )
        )
        return Tenant(rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None

    async def _active_tenant(self, db: aiosqlite.Connection, name: str) -> Tenant:
        return rules.must_be_active(await self._tenant(db, name), name)

    @_whole
    async def create_tenant(self, name: str, *, now: float) -> Tenant:
        async with self._tx() as db:
            rules.must_be_new_tenant(await self._tenant(db, name), name)
            await db.execute(
                "INSERT INTO tenants (name, state, created, updated) VALUES (?, 'active', ?, ?)",
                (name, now, now),
            )
            await self._audit(db, "tenant.create", name, {}, now)
            return Tenant(name, "active", now, now)

    @_whole
    async def set_tenant_state(self, name: str, state: TenantState, *, now: float) -> Tenant:
        async with self._tx() as db:
            change = rules.tenant_change(await self._tenant(db, name), name, state, now)
            await db.execute("UPDATE tenants SET state = ?, updated = ? WHERE name = ?", (state, now, name))
            await self._audit(db, change.action, name, change.details, now)
            return change.tenant

    async def get_tenant(self, name: str) -> Tenant | None:
        async with self._lock:
            return await self._tenant(self._db, name)

    async def list_tenants(self) -> list[Tenant]:
        rows = await self._read("SELECT name, state, created, updated FROM tenants ORDER BY name")
        return [Tenant(r[0], r[1], r[2], r[3]) for r in rows]

    # -- keys ----------------------------------------------------------------------------------

    @staticmethod
    def _key_record(r: sqlite3.Row) -> KeyRecord:
        return KeyRecord(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6], r[7])

    async def _insert_key(
        self, db: aiosqlite.Connection, tenant: str, agent: str, public_key: bytes, now: float, via: str
    ) -> KeyRecord:
        key, details = rules.added_key(tenant, agent, public_key, now, via)
        existing = list(await db.execute_fetchall("SELECT 1 FROM keys WHERE key_id = ?", (key.key_id,)))
        rules.must_be_new_key(bool(existing), key.key_id)
        await db.execute(
            f"INSERT INTO keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, 'active', ?, NULL, NULL)",
            (key.key_id, tenant, agent, public_key, now),
        )
        await self._audit(db, "key.add", tenant, details, now)
        return key

    @_whole
    async def add_key(self, tenant: str, agent: str, public_key: bytes, *, now: float) -> KeyRecord:
        async with self._tx() as db:
            await self._active_tenant(db, tenant)
            return await self._insert_key(db, tenant, agent, public_key, now, "admin")

    @_whole
    async def set_key_state(self, key_id: str, state: KeyState, *, now: float) -> KeyRecord:
        async with self._tx() as db:
            rows = list(
                await db.execute_fetchall(f"SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,))
            )
            key = self._key_record(rows[0]) if rows else None
            change = rules.key_change(key, key_id, state, now)
            if change is None:
                assert key is not None  # key_change raised NotFound otherwise
                return key
            new = change.key
            await db.execute(
                "UPDATE keys SET state = ?, retired_at = ?, revoked_at = ? WHERE key_id = ?",
                (new.state, new.retired_at, new.revoked_at, key_id),
            )
            await self._audit(db, change.action, new.tenant, change.details, now)
            return new

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._read(f"SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,))
        return self._key_record(rows[0]) if rows else None

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        if tenant is None:
            rows = await self._read(f"SELECT {KEY_COLUMNS} FROM keys ORDER BY tenant, agent, added")
        else:
            rows = await self._read(
                f"SELECT {KEY_COLUMNS} FROM keys WHERE tenant = ? ORDER BY agent, added", (tenant,)
            )
        return [self._key_record(r) for r in rows]

    # -- enrollment ----------------------------------------------------------------------------
    @_whole
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
        async with self._tx() as db:
            await self._active_tenant(db, tenant)
            await db.execute(
                "INSERT INTO enroll_tokens (token_id, tenant, secret_hash, expires, created, agent, rotate) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, tenant, secret_hash, expires, now, agent, int(rotate)),
            )
            await self._audit(
                db, "enroll.token", tenant, rules.token_details(token_id, expires, agent, rotate), now
            )

    @_whole
    async def redeem_enroll_token(
        self, token_id: str, secret_hash: bytes, agent: str, public_key: bytes, *, now: float
    ) -> KeyRecord:
        async with self._tx() as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {rules.TOKEN_COLUMNS} FROM enroll_tokens WHERE token_id = ?", (token_id,)
                )
            )
            token = rules.token_row(tuple(rows[0]) if rows else None)
            token = rules.redeemable(token, token_id, secret_hash, agent, now)
            tenant = token.tenant
            await self._active_tenant(db, tenant)
            has_key = await db.execute_fetchall(
                "SELECT 1 FROM keys WHERE tenant = ? AND agent = ? LIMIT 1", (tenant, agent)
            )
            rules.rotation_allowed(token, agent, bool(list(has_key)))
            cur = await db.execute(
                "UPDATE enroll_tokens SET used_at = ?, key_id = ? WHERE token_id = ? AND used_at IS NULL",
                (now, compute_key_id(public_key), token_id),
            )
            if cur.rowcount != 1:
                raise NotFound("enroll token", token_id)
            return await self._insert_key(db, tenant, agent, public_key, now, f"enroll:{token_id}")

    # -- quotas --------------------------------------------------------------------------------
    @_whole
    async def set_quota(self, quota: Quota, *, now: float) -> Quota:
        async with self._tx() as db:
            if await self._tenant(db, quota.tenant) is None:
                raise NotFound("tenant", quota.tenant)
            values = rules.quota_values(quota)
            await db.execute(
                f"INSERT INTO quotas (tenant, {', '.join(QUOTA_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT (tenant) DO UPDATE SET {_QUOTA_UPDATE}",
                (quota.tenant, *values),
            )
            await db.execute("DELETE FROM buckets WHERE name = ?", (rules.bucket_name(quota.tenant),))
            await self._audit(db, "quota.set", quota.tenant, rules.quota_details(quota), now)
            return quota

    async def get_quota(self, tenant: str) -> Quota:
        async with self._lock:
            if await self._tenant(self._db, tenant) is None:
                raise NotFound("tenant", tenant)
            rows = list(
                await self._db.execute_fetchall(
                    f"SELECT {', '.join(QUOTA_FIELDS)} FROM quotas WHERE tenant = ?", (tenant,)
                )
            )
        return Quota(tenant, *rows[0]) if rows else Quota(tenant)

    async def largest_batch_limit(self) -> int | None:
        rows = await self._read("SELECT MAX(max_batch_bytes) FROM quotas")
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
        """One transaction for the group, all of it in one trip to aiosqlite's thread
        (:func:`~collector.store.sqlite.ingest.commit_group`); returns after COMMIT. The lock keeps
        every other use of the connection out until then (aiosqlite runs calls in order, so even a
        caller cancelled meanwhile cannot get between the group's statements)."""
        async with self._lock:
            try:
                # aiosqlite has no public "run this callable on the connection's thread" (0.22)
                return await self._db._execute(commit_group, self._db._conn, group)  # type: ignore[no-untyped-call,no-any-return]
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"database is busy: {exc}") from exc

    @_whole
    async def record_refusal(self, refusal: Refusal, *, now: float, count: int = 1) -> None:
        day, minute = rules.day_of(now), rules.minute_of(now)
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO refusals (tenant, day, reason, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, day, reason) DO UPDATE SET count = refusals.count + excluded.count",
                (refusal.tenant, day, refusal.reason, count),
            )
            cur = await db.execute(
                "INSERT INTO refusal_minutes (tenant, minute, reason) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (refusal.tenant, minute, refusal.reason),
            )
            if cur.rowcount == 1:  # first of this minute: forget minutes older than a day
                await db.execute(
                    "DELETE FROM refusal_minutes WHERE minute < ?", (minute - rules.MINUTES_KEPT,)
                )
            if cur.rowcount == 1 and self._key is not None:
                details = rules.refusal_details(refusal)
                await self._audit(db, rules.refusal_action(refusal.reason), refusal.tenant, details, now)

    # -- governance ----------------------------------------------------------------------------
    @_whole
    async def approve_policy(self, tenant: str, digest: str, *, note: str, now: float) -> PolicyRecord:
        async with self._tx() as db:
            existing = await gov.get_policy(db, tenant, digest)
            record, details = rules.policy_approval(
                await self._tenant(db, tenant), tenant, existing, digest, note, now
            )
            await gov.put_policy(db, record)
            await self._audit(db, "policy.approve", tenant, details, now)
            return record

    @_whole
    async def revoke_policy(self, tenant: str, digest: str, *, now: float) -> PolicyRecord:
        async with self._tx() as db:
            existing = await gov.get_policy(db, tenant, digest)
            record, details = rules.policy_revocation(
                await self._tenant(db, tenant), tenant, existing, digest, now
            )
            await gov.put_policy(db, record)
            await self._audit(db, "policy.revoke", tenant, details, now)
            return record

    async def list_policies(self, tenant: str | None = None) -> list[PolicyRecord]:
        async with self._lock:
            return await gov.list_policies(self._db, tenant)

    @_whole
    async def set_privacy_cap(self, tenant: str, cap: PrivacyCap | None, *, now: float) -> PrivacyCap | None:
        async with self._tx() as db:
            details = rules.cap_details(await self._tenant(db, tenant), tenant, cap)
            if cap is None:
                await db.execute("DELETE FROM privacy_caps WHERE tenant = ?", (tenant,))
            else:
                await gov.put_cap(db, cap)
            await self._audit(db, "policy.cap", tenant, details, now)
            return cap

    async def get_privacy_cap(self, tenant: str) -> PrivacyCap | None:
        async with self._lock:
            return await gov.get_cap(self._db, tenant)

    async def privacy_spend(self, tenant: str, since: str | None, until: str | None) -> list[SpendDay]:
        async with self._lock:
            return await gov.spend(self._db, tenant, since, until)

    async def policy_batches(self, tenant: str, since: str | None, until: str | None) -> dict[str, int]:
        async with self._lock:
            return await gov.policy_batches(self._db, tenant, since, until)

    # -- certified agents (issue 14 part 3) ----------------------------------------------------
    @_whole
    async def record_certificate(self, cert: CertificateRecord, *, now: float) -> bool:
        async with self._tx() as db:
            fresh = await sqlite_certs.insert(db, cert)
            if fresh:
                await self._audit(db, "certificate.record", cert.tenant, certs.audit_details(cert), now)
            return fresh

    async def agent_certificates(
        self, tenant: str | None, *, now: float | None = None
    ) -> list[AgentCertificate]:
        found = await sqlite_certs.records(self._read, tenant)
        days = await sqlite_certs.agent_days(self._read, tenant, certs.LOOKBACK_SECONDS) if found else {}
        revoked = {k.key_id for k in await self.list_keys(tenant) if k.state == "revoked"} if found else set()
        return certs.statuses(found, days, time.time() if now is None else now, revoked)

    # -- reads ---------------------------------------------------------------------------------
    async def usage(
        self, tenant: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[UsageDay]:
        return await sqlite_reads.usage(self._read, tenant, since, until)

    async def released_rows(self, tenant: str, since: str | None, until: str | None) -> list[StoredRow]:
        return await sqlite_reads.released_rows(self._read, tenant, since, until)

    async def batch_privacy(self, tenant: str, since: str | None, until: str | None) -> list[BatchPrivacy]:
        return await sqlite_reads.batch_privacy(self._read, tenant, since, until)

    # -- outputs -------------------------------------------------------------------------------
    async def output_cursor(self, name: str) -> int:
        return await sqlite_cursors.cursor(self._read, name)

    async def advance_output_cursor(self, name: str, expected: int, to: int, *, now: float) -> bool:
        async with self._tx() as db:
            return await sqlite_cursors.advance(db, name, expected, to, now)

    async def output_rows_after(self, after: int, max_batches: int) -> OutputPage:
        return await sqlite_cursors.rows_after(self._read, after, max_batches)

    # -- HTTP API (issue 14) -------------------------------------------------------------------
    @_whole
    async def create_api_token(self, token: ApiToken, *, now: float) -> ApiToken:
        async with self._tx() as db:
            tenant = await self._tenant(db, token.tenant) if token.tenant is not None else None
            details = token_creation(tenant, token)
            await api.insert_token(db, token)
            await self._audit(db, "api_token.create", token.tenant, details, now)
            return msgspec.structs.replace(token, secret_hash=b"")

    @_whole
    async def revoke_api_token(self, token_id: str, *, now: float) -> ApiToken:
        async with self._tx() as db:
            revoked, details = token_revocation(await api.api_token(db, token_id), token_id, now)
            await api.revoke(db, token_id, now)
            await self._audit(db, "api_token.revoke", revoked.tenant, details, now)
            return revoked

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        async with self._lock:
            return await api.api_token(self._db, token_id)

    async def list_api_tokens(self) -> list[ApiToken]:
        return await api.list_tokens(self._read)

    async def agent_activity(self, tenant: str) -> list[AgentActivity]:
        return await api.activity(self._read, tenant)

    async def audit_tail(self, limit: int, tenant: str | None = None) -> list[audit.AuditEntry]:
        sql, params = api.audit_tail_sql(tenant, limit)
        rows = await self._read(sql, params)
        return [
            audit.AuditEntry(r[0], r[1], r[2], r[3], _details.decode(r[4]), r[5], r[6], r[7]) for r in rows
        ]
