"""What the collector persists, as a small async interface (`Store`) plus the records it trades in.

Implementations: :mod:`collector.store.sqlite.store` (embedded, WAL) now; a PostgreSQL store later. Every
write that must be atomic is one method here, so no caller ever holds a transaction open: the ingest
commit (dedupe, rate limit, quotas, rows, metering, chain check) is :meth:`Store.commit_batch`, and
admin mutations append their audit entry in the same transaction. Quota consumption is an atomic
conditional update in the database, never a read followed by a write, so several collector
processes sharing one database cannot exceed a quota together.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal, Protocol

import msgspec

from collector.audit import AuditEntry, Detail
from collector.store.records import BatchPrivacy, StoredRow, UsageDay
from hushmetric.batch import Row
from hushmetric.timefmt import format_rfc3339, parse_rfc3339

__all__ = [
    "BATCH_COLUMNS",
    "KEY_COLUMNS",
    "QUOTA_FIELDS",
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
    "Store",
    "Tenant",
    "TenantState",
    "agent_has_key",
    "batch_values",
    "day_of",
    "month_of",
    "refusal_action",
    "seconds_to_next_day",
    "seconds_to_next_month",
    "token_details",
]

TenantState = Literal["active", "suspended", "deleted"]
KeyState = Literal["active", "retired", "revoked"]
UNATTRIBUTED = "-"  # tenant name under which refusals of batches with no known tenant are counted


class Tenant(msgspec.Struct, frozen=True):
    name: str
    state: TenantState
    created: float  # epoch seconds
    updated: float


class KeyRecord(msgspec.Struct, frozen=True):
    key_id: str
    tenant: str
    agent: str
    public_key: bytes
    state: KeyState
    added: float
    retired_at: float | None = None
    revoked_at: float | None = None


class Quota(msgspec.Struct, frozen=True):
    """Limits of one tenant; ``None`` means unlimited. Calendar periods are UTC days and months."""

    tenant: str
    batches_per_second: float | None = None
    burst: int | None = None
    rows_per_day: int | None = None
    rows_per_month: int | None = None
    bytes_per_day: int | None = None
    max_batch_bytes: int | None = None
    max_age_seconds: int | None = None


class BatchCommit(msgspec.Struct, frozen=True):
    """A verified, admitted batch, ready for the one ingest transaction."""

    tenant: str
    agent: str
    seq: int
    key_id: str
    digest: str  # hex SHA-256 of the payload bytes
    prev: str
    created: str
    window_start: str
    window_end: str
    policy: str
    unit: str
    epsilon: float | None
    delta: float | None
    rho: float | None
    nbytes: int  # payload size, what bytes quotas count
    rows: list[Row]


class Accepted(msgspec.Struct, frozen=True, tag="accepted"):
    gap: bool = False  # the previous seq has not arrived (yet)
    fork: bool = False  # ``prev`` does not match the stored previous batch


class Duplicate(msgspec.Struct, frozen=True, tag="duplicate"):
    pass


class Conflicting(msgspec.Struct, frozen=True, tag="conflict"):
    """Same (tenant, agent, seq) already stored with different bytes."""


class CommitRefused(msgspec.Struct, frozen=True, tag="refused"):
    """Refused inside the transaction (rate, quota, or state changed since the checks); nothing stored."""

    reason: str
    retry_after: float | None = None


CommitOutcome = Accepted | Duplicate | Conflicting | CommitRefused

# Column vocabulary both store implementations share (the schema is one, in collector.store.schema).
QUOTA_FIELDS: tuple[str, ...] = Quota.__struct_fields__[1:]  # every limit, without the tenant
KEY_COLUMNS = "key_id, tenant, agent, public_key, state, added, retired_at, revoked_at"
BATCH_COLUMNS = (
    "tenant, agent, seq, key_id, digest, prev, created, received, window_start, "
    "window_end, window_start_epoch, policy, unit, epsilon, delta, rho, nbytes, nrows"
)


def batch_values(b: BatchCommit, received: float) -> tuple[object, ...]:
    """The values of :data:`BATCH_COLUMNS` for one batch, in order."""
    return (
        b.tenant, b.agent, b.seq, b.key_id, b.digest, b.prev, b.created, received,
        b.window_start, b.window_end, parse_rfc3339(b.window_start), b.policy, b.unit,
        b.epsilon, b.delta, b.rho, b.nbytes, len(b.rows),
    )  # fmt: skip


class Refusal(msgspec.Struct, frozen=True):
    """A refused submission (or enrollment: reasons ``enroll_*``), counted by tenant/day/reason and
    audited once per reason per minute."""

    tenant: str  # UNATTRIBUTED when unknown
    reason: str
    agent: str | None = None
    seq: int | None = None
    key_id: str | None = None


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


def token_details(token_id: str, expires: float, agent: str | None, rotate: bool) -> dict[str, Detail]:
    """The audit details of a new enrollment token (both stores write the same entry)."""
    details: dict[str, Detail] = {"token_id": token_id, "expires": format_rfc3339(expires)}
    if agent is not None:
        details |= {"agent": agent, "rotate": rotate}
    return details


def agent_has_key(agent: str) -> str:
    return (
        f"agent {agent!r} already has a key; a token from `enroll-token --agent {agent} --rotate` can add one"
    )


def refusal_action(reason: str) -> str:
    """The audit action of a refusal: failed enrollments are not batches."""
    return "enroll.refused" if reason.startswith("enroll_") else "batch.refused"


def day_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def seconds_to_next_day(now: float) -> float:
    return 86400.0 - (now % 86400.0)


def seconds_to_next_month(now: float) -> float:
    t = datetime.fromtimestamp(now, UTC)
    nxt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
    return nxt.timestamp() - now
