"""What the collector persists, as a small async interface (`Store`), and where to find its parts.

Implementations: :mod:`collector.store.sqlite` (embedded, WAL) and :mod:`collector.store.pg`
(PostgreSQL, several replicas). Every write that must be atomic is one method here, so no caller
ever holds a transaction open: the ingest commit (dedupe, rate limit, quotas, rows, metering, chain
check) is :meth:`Store.commit_batch`, and admin mutations append their audit entry in the same
transaction. Quota consumption is an atomic conditional update in the database, never a read
followed by a write, so several collector processes sharing one database cannot exceed a quota
together.

The records live in :mod:`collector.store.records`, the closed vocabularies in
:mod:`collector.store.vocab`, the decisions both dialects share in :mod:`collector.store.rules`, the
schema in :mod:`collector.store.schema`; choosing a store from a ``--db`` URL in
:mod:`collector.store.db`. The records and vocabularies are re-exported here for callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from collector.audit import AuditEntry, Detail
from collector.store.records import (
    UNATTRIBUTED,
    Accepted,
    BatchCommit,
    BatchPrivacy,
    CommitOutcome,
    CommitRefused,
    Conflicting,
    Duplicate,
    KeyRecord,
    Quota,
    Refusal,
    StoredRow,
    Tenant,
    UsageDay,
)
from collector.store.rules import day_of
from collector.store.vocab import KeyState, RefusalReason, TenantState

__all__ = [
    "UNATTRIBUTED",
    "Accepted",
    "BatchCommit",
    "CommitOutcome",
    "CommitRefused",
    "Conflicting",
    "Duplicate",
    "KeyRecord",
    "KeyState",
    "Quota",
    "Refusal",
    "RefusalReason",
    "Store",
    "Tenant",
    "TenantState",
    "day_of",
]


class Store(Protocol):
    """Everything the collector persists. ``now`` is epoch seconds, passed in by the caller."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Readiness: one round trip to the database; raises Unavailable when it cannot be used."""
        ...

    # -- tenants -------------------------------------------------------------------------------
    async def create_tenant(self, name: str, *, now: float) -> Tenant:
        """Raises Conflict if the name exists (also when deleted: names are never reused)."""
        ...

    async def set_tenant_state(self, name: str, state: TenantState, *, now: float) -> Tenant:
        """suspend/resume/delete. Raises NotFound, or Conflict for a deleted tenant."""
        ...

    async def get_tenant(self, name: str) -> Tenant | None: ...

    async def list_tenants(self) -> list[Tenant]: ...

    # -- keys ----------------------------------------------------------------------------------
    async def add_key(self, tenant: str, agent: str, public_key: bytes, *, now: float) -> KeyRecord:
        """Raises NotFound (tenant), Conflict (tenant not active, or key already registered)."""
        ...

    async def set_key_state(self, key_id: str, state: KeyState, *, now: float) -> KeyRecord:
        """retire or revoke. Revoked is final. Raises NotFound or Conflict."""
        ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]: ...

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
        """Store a one-time token (only a SHA-256 of its secret), bound to ``agent`` when given;
        ``rotate`` lets it add a key to an agent that has one. Raises NotFound/Conflict for the tenant."""
        ...

    async def redeem_enroll_token(
        self, token_id: str, secret_hash: bytes, agent: str, public_key: bytes, *, now: float
    ) -> KeyRecord:
        """Atomically use the token and register the key. Raises NotFound for an unknown, used,
        expired or mismatching token, or one bound to another agent (one error for all, so nothing
        is learned by probing); Conflict when the agent already has a key and the token is not a
        rotation token (the token is then not used)."""
        ...

    # -- quotas --------------------------------------------------------------------------------
    async def set_quota(self, quota: Quota, *, now: float) -> Quota:
        """Replace the tenant's limits (callers merge). Raises NotFound."""
        ...

    async def get_quota(self, tenant: str) -> Quota:
        """The tenant's limits (all None when never set). Raises NotFound."""
        ...

    async def largest_batch_limit(self) -> int | None:
        """The largest ``max_batch_bytes`` of any tenant, or None when none is set."""
        ...

    # -- ingest --------------------------------------------------------------------------------
    async def commit_batch(self, batch: BatchCommit, quota: Quota, *, now: float) -> CommitOutcome:
        """The one ingest transaction: dedupe on (tenant, agent, seq); re-check key and tenant state;
        take a rate-limit token; consume day/month quotas by conditional updates; store batch, rows,
        metering and chain events. Anything but Accepted leaves no trace except duplicate counters."""
        ...

    async def record_refusal(self, refusal: Refusal, *, now: float, count: int = 1) -> None:
        """Count ``count`` refusals like ``refusal`` by tenant/day/reason; audit once per (tenant,
        reason, minute) — as ``enroll.refused`` for a failed enrollment, else ``batch.refused``."""
        ...

    # -- audit ---------------------------------------------------------------------------------
    async def append_audit(
        self, action: str, tenant: str | None, details: Mapping[str, Detail], *, now: float
    ) -> AuditEntry: ...

    async def audit_entries(self) -> list[AuditEntry]: ...

    # -- reads for reports ---------------------------------------------------------------------
    async def usage(
        self, tenant: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[UsageDay]:
        """Per tenant and UTC day (``YYYY-MM-DD`` bounds, inclusive), ordered by tenant then day."""
        ...

    async def released_rows(self, tenant: str, since: str | None, until: str | None) -> list[StoredRow]:
        """Rows of batches whose window starts within [since, until) (RFC 3339; None = open)."""
        ...

    async def batch_privacy(
        self, tenant: str, since: str | None, until: str | None
    ) -> list[BatchPrivacy]: ...
