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
    AgentActivity,
    AgentCertificate,
    ApiToken,
    BatchCommit,
    BatchPrivacy,
    CertBatch,
    CertDay,
    CertificateRecord,
    CertStatus,
    CommitOutcome,
    CommitRefused,
    Conflicting,
    Duplicate,
    KeyRecord,
    OutputPage,
    OutputRow,
    PolicyRecord,
    PrivacyCap,
    Quota,
    Refusal,
    SpendDay,
    StoredRow,
    Tenant,
    UsageDay,
)
from collector.store.rules import day_of
from collector.store.vocab import KeyState, RefusalReason, TenantState

__all__ = [
    "UNATTRIBUTED",
    "Accepted",
    "AgentActivity",
    "AgentCertificate",
    "ApiToken",
    "BatchCommit",
    "CertBatch",
    "CertDay",
    "CertStatus",
    "CertificateRecord",
    "CommitOutcome",
    "CommitRefused",
    "Conflicting",
    "Duplicate",
    "KeyRecord",
    "KeyState",
    "OutputPage",
    "OutputRow",
    "PolicyRecord",
    "PrivacyCap",
    "Quota",
    "Refusal",
    "RefusalReason",
    "SpendDay",
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

    # -- governance (issue 14) -----------------------------------------------------------------
    async def approve_policy(self, tenant: str, digest: str, *, note: str, now: float) -> PolicyRecord:
        """Approve a policy digest for the tenant (again, after a revocation); audited as
        ``policy.approve``. Raises NotFound (tenant), Conflict (deleted tenant, already approved)."""
        ...

    async def revoke_policy(self, tenant: str, digest: str, *, now: float) -> PolicyRecord:
        """Revoke an approved digest (``policy.revoke``): new batches under it are refused at once.
        Raises NotFound (tenant or approval), Conflict (deleted tenant, already revoked)."""
        ...

    async def list_policies(self, tenant: str | None = None) -> list[PolicyRecord]:
        """Approved and revoked digests, by tenant then approval time."""
        ...

    async def set_privacy_cap(self, tenant: str, cap: PrivacyCap | None, *, now: float) -> PrivacyCap | None:
        """Set (None: lift) the tenant's ρ cap per day, audited as ``policy.cap``. Raises NotFound,
        Conflict (deleted tenant, a cap that is not a positive finite ρ)."""
        ...

    async def get_privacy_cap(self, tenant: str) -> PrivacyCap | None: ...

    async def privacy_spend(self, tenant: str, since: str | None, until: str | None) -> list[SpendDay]:
        """ρ admitted per agent (and for the tenant: ``agent`` None) and UTC day of the batches'
        windows, ``YYYY-MM-DD`` bounds inclusive, ordered by day then agent."""
        ...

    async def policy_batches(self, tenant: str, since: str | None, until: str | None) -> dict[str, int]:
        """Stored batches per declared policy digest, windows starting in [since, until) (RFC 3339)."""
        ...

    # -- certified agents (issue 14 part 3) ----------------------------------------------------
    async def record_certificate(self, cert: CertificateRecord, *, now: float) -> bool:
        """Store a verified certificate (:mod:`collector.certs` checked it), audited as
        ``certificate.record`` in the same transaction; False (nothing written) when the same
        statement is stored already."""
        ...

    async def agent_certificates(
        self, tenant: str | None, *, now: float | None = None
    ) -> list[AgentCertificate]:
        """Every recorded certificate (of ``tenant``, or all), by tenant, agent and newest first, with
        its status at ``now`` (default: the clock) computed from the stored batches."""
        ...

    # -- ingest --------------------------------------------------------------------------------
    async def commit_batch(self, batch: BatchCommit, quota: Quota, *, now: float) -> CommitOutcome:
        """The one ingest transaction: dedupe on (tenant, agent, seq); re-check key and tenant state;
        check the policy digest is approved and charge the declared ρ against the privacy cap;
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

    # -- outputs (collector.outputs) -----------------------------------------------------------
    async def output_cursor(self, name: str) -> int:
        """The id of the last batch the output ``name`` delivered (0 when it never did)."""
        ...

    async def advance_output_cursor(self, name: str, expected: int, to: int, *, now: float) -> bool:
        """Move the cursor from ``expected`` to ``to`` atomically; False when it was not at ``expected``."""
        ...

    async def output_rows_after(self, after: int, max_batches: int) -> OutputPage:
        """The rows of at most ``max_batches`` stored batches with ids above ``after``, in id order."""
        ...

    # -- HTTP API (issue 14: read-only query API and dashboard) ---------------------------------
    async def create_api_token(self, token: ApiToken, *, now: float) -> ApiToken:
        """Store a bearer token (only the SHA-256 of its secret), audited as ``api_token.create``;
        returned without the hash. Raises NotFound (a viewer's tenant), Conflict (deleted tenant, a
        viewer without or an operator with a tenant, the id taken)."""
        ...

    async def revoke_api_token(self, token_id: str, *, now: float) -> ApiToken:
        """Revoke at once (``api_token.revoke``). Raises NotFound, or Conflict when already revoked."""
        ...

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        """The token with its secret hash, for checking a presented token."""
        ...

    async def list_api_tokens(self) -> list[ApiToken]:
        """Every token, revoked and expired ones too, without hashes, oldest first."""
        ...

    async def agent_activity(self, tenant: str) -> list[AgentActivity]:
        """Per agent with stored batches: its newest batch (by seq), by agent id."""
        ...

    async def audit_tail(self, limit: int, tenant: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` audit entries (of ``tenant`` when given), newest first."""
        ...
