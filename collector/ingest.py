"""The ingest decision: from a DSSE envelope to a typed outcome with a reason code.

Order: payloadType → key registry → every signature by a registered key verified → tenant state →
size → revocation → decode → tenant/agent binding → key retirement → clock skew / max age → the
store's one transaction (dedupe, chain, rate, quotas). Tenant state, limits, metering and the
attribution of a refusal all come from the key whose signature verified (all verifying keys must
belong to one tenant and agent); before a signature verifies, a refusal is unattributed.

Every refusal is counted by reason through :meth:`Store.record_refusal`. No gRPC in here:
:mod:`collector.server` maps :data:`REASONS` to status codes, the importer maps them to counts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from collector.errors import Unavailable
from collector.ingest_cache import LookupCache, Lookups
from collector.store import (
    UNATTRIBUTED,
    Accepted,
    BatchCommit,
    CommitOutcome,
    CommitRefused,
    Conflicting,
    Duplicate,
    KeyRecord,
    Refusal,
    Store,
)
from collector.store.records import Stale
from collector.store.vocab import BatchReason
from hushmetric import dsse
from hushmetric.batch import Batch, decode_batch
from hushmetric.errors import ContractError, SignatureError
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "REASONS",
    "RECHECKED",
    "IngestSettings",
    "Kind",
    "Observer",
    "Outcome",
    "Rejected",
    "Stored",
    "ingest",
    "signers",
    "speaker",
]

Kind = Literal[
    "invalid_argument",
    "unauthenticated",
    "permission_denied",
    "already_exists",
    "failed_precondition",
    "resource_exhausted",
]

#: Every reason a batch is refused for, and the kind of refusal (the gRPC status it maps to).
REASONS: dict[BatchReason, Kind] = {
    "malformed": "invalid_argument",
    "payload_type": "invalid_argument",
    "too_large": "invalid_argument",
    "bad_signature": "unauthenticated",
    "unknown_key": "unauthenticated",
    "revoked_key": "unauthenticated",
    "retired_key": "unauthenticated",
    "tenant_suspended": "permission_denied",
    "tenant_deleted": "permission_denied",
    "tenant_mismatch": "permission_denied",
    "agent_mismatch": "permission_denied",
    "signer_mismatch": "permission_denied",
    "conflict": "already_exists",
    "future_dated": "failed_precondition",
    "too_old": "failed_precondition",
    "rate_limited": "resource_exhausted",
    "quota_rows_day": "resource_exhausted",
    "quota_rows_month": "resource_exhausted",
    "quota_bytes_day": "resource_exhausted",
    # Governance (issue 14): the tenant has not approved the batch's policy digest, or the batch's
    # declared privacy loss does not fit the tenant's central cap for its window's day. Neither is
    # fixed by waiting: an operator approves the policy or raises the cap.
    "policy_unapproved": "failed_precondition",
    "privacy_cap": "failed_precondition",
}

DEFAULT_MAX_BATCH_BYTES = 4 << 20
# Called once per submission with its outcome ("accepted", "duplicate" or a refusal reason), the tenant
# (from the key registry, never from the unverified payload: "-" when unknown) and the seconds spent.
Observer = Callable[[str, str, float], None]


class IngestSettings(msgspec.Struct, frozen=True):
    max_clock_skew_seconds: int = 300
    default_max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES


class Stored(msgspec.Struct, frozen=True):
    tenant: str
    agent: str
    seq: int
    duplicate: bool = False
    gap: bool = False
    fork: bool = False


class Rejected(msgspec.Struct, frozen=True):
    reason: BatchReason
    message: str
    retry_after: float | None = None

    @property
    def kind(self) -> Kind:
        return REASONS[self.reason]


Outcome = Stored | Rejected


class _Refuse(Exception):  # internal control flow, turned into Rejected below
    def __init__(self, reason: BatchReason, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.rejected = Rejected(reason, message, retry_after)
        self.final = False  # decided inside the store's transaction: never checked again


class _Stale(Exception):  # the store saw other limits than the cached ones: check again
    pass


#: Refusals that may rest on a cached record that changed (a quota raised, a retired key revoked):
#: with a :class:`~collector.ingest_cache.LookupCache`, they are checked again on fresh records.
RECHECKED: frozenset[BatchReason] = frozenset({"too_large", "too_old", "retired_key"})
#: How many times a batch is checked again when the tenant's limits change under it.
_STALE_ATTEMPTS = 3


def _commit_record(batch: Batch, key: KeyRecord, payload: bytes) -> BatchCommit:
    return BatchCommit(
        tenant=batch.tenant,
        agent=batch.agent,
        seq=batch.seq,
        key_id=key.key_id,
        digest=hashlib.sha256(payload).hexdigest(),
        prev=batch.prev,
        created=batch.created,
        window_start=batch.window.start,
        window_end=batch.window.end,
        policy=batch.policy,
        unit=batch.privacy.unit,
        epsilon=batch.privacy.epsilon,
        delta=batch.privacy.delta,
        rho=batch.privacy.rho,
        nbytes=len(payload),
        rows=batch.rows,
    )


def _epoch(text: str, what: str) -> float:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise _Refuse("malformed", f"{what} is not an RFC 3339 timestamp with offset") from exc


class _Context(msgspec.Struct):
    tenant: str = UNATTRIBUTED
    agent: str | None = None
    seq: int | None = None
    key_id: str | None = None


def _verifies(envelope: dsse.Envelope, sig: dsse.Signature, key: KeyRecord) -> bool:
    """Whether ``sig`` alone is a valid signature of ``envelope`` by ``key``."""
    one = dsse.Envelope(envelope.payload, envelope.payload_type, (sig,))
    try:
        dsse.verify(one, envelope.payload_type, lambda kid: key.public_key if kid == key.key_id else None)
    except (SignatureError, ContractError):
        return False
    return True


async def signers(store: Lookups, envelope: dsse.Envelope) -> tuple[bool, list[KeyRecord]]:
    """(whether any signature names a registered key, the registered keys whose signature verifies).

    Every signature is checked, not only the first that verifies: a signature under a key id that is
    registered but does not verify (a decoy: key ids are public) must decide nothing, and several
    verifying keys must agree on who sent the batch. At most :data:`dsse.MAX_SIGNATURES` are looked at.
    """
    records: dict[str, KeyRecord | None] = {}
    verified: dict[str, KeyRecord] = {}
    for sig in envelope.signatures[: dsse.MAX_SIGNATURES]:
        if len(sig.keyid) != 64 or sig.keyid in verified:
            continue
        if sig.keyid not in records:
            records[sig.keyid] = await store.get_key(sig.keyid)
        record = records[sig.keyid]
        if record is not None and _verifies(envelope, sig, record):
            verified[sig.keyid] = record
    return any(r is not None for r in records.values()), list(verified.values())


_PREFERENCE = {"active": 0, "retired": 1, "revoked": 2}


def speaker(verified: list[KeyRecord]) -> KeyRecord | None:
    """The key that speaks for an envelope: the verifying keys must all be one agent's (the active
    one is preferred, as around a rotation); None when they belong to different tenants or agents."""
    if len({(k.tenant, k.agent) for k in verified}) != 1:
        return None
    return min(verified, key=lambda k: _PREFERENCE[k.state])


async def _decide(  # the ingest checks in the order DESIGN.md gives them
    store: Store, lookups: Lookups, envelope: dsse.Envelope, now: float, s: IngestSettings, ctx: _Context
) -> Stored:
    if envelope.payload_type != dsse.BATCH_PAYLOAD_TYPE:
        raise _Refuse("payload_type", f"payloadType must be {dsse.BATCH_PAYLOAD_TYPE}")
    if not envelope.signatures or len(envelope.signatures) > dsse.MAX_SIGNATURES:
        raise _Refuse("malformed", f"envelope must carry 1..{dsse.MAX_SIGNATURES} signatures")
    # Who sent it is decided by verified signatures only; until then nothing is attributed to a
    # tenant (a refusal is counted under UNATTRIBUTED), and no tenant's limits apply. The payload's
    # size is bounded before this by the server's receive limit (the largest any tenant has).
    known, verified = await signers(lookups, envelope)
    if not known:
        raise _Refuse("unknown_key", "signed by an unknown key")
    if not verified:
        raise _Refuse("bad_signature", "signature does not verify")
    key = speaker(verified)
    if key is None:
        raise _Refuse("signer_mismatch", "signatures by keys of different tenants or agents")
    ctx.tenant, ctx.agent, ctx.key_id = key.tenant, key.agent, key.key_id
    tenant = await lookups.get_tenant(key.tenant)
    if tenant is None or tenant.state != "active":
        state = tenant.state if tenant is not None else "deleted"
        reason: BatchReason = "tenant_suspended" if state == "suspended" else "tenant_deleted"
        raise _Refuse(reason, f"tenant {key.tenant!r} is {state}")
    quota = await lookups.get_quota(key.tenant)  # limits of the verified key's tenant, never another's
    limit = quota.max_batch_bytes or s.default_max_batch_bytes
    if len(envelope.payload) > limit:
        raise _Refuse("too_large", f"payload of {len(envelope.payload)} bytes exceeds the limit of {limit}")
    if key.state == "revoked":
        raise _Refuse("revoked_key", f"key {key.key_id} is revoked")
    batch = _decoded(envelope.payload)  # verified above
    ctx.seq = batch.seq
    if batch.tenant != key.tenant:
        raise _Refuse("tenant_mismatch", "batch claims a tenant its key does not belong to")
    if batch.agent != key.agent:
        raise _Refuse("agent_mismatch", "batch claims an agent its key does not belong to")
    created = _epoch(batch.created, "created")
    _epoch(batch.window.start, "window.start")
    _epoch(batch.window.end, "window.end")
    if key.state == "retired" and key.retired_at is not None and created > key.retired_at:
        raise _Refuse("retired_key", f"key {key.key_id} was retired before this batch was created")
    if created > now + s.max_clock_skew_seconds:
        raise _Refuse("future_dated", "batch is dated in the future beyond the allowed clock skew")
    if quota.max_age_seconds is not None and created < now - quota.max_age_seconds:
        raise _Refuse("too_old", f"batch is older than the tenant's max age of {quota.max_age_seconds}s")
    record = _commit_record(batch, key, envelope.payload)
    return _stored(batch, await store.commit_batch(record, quota, now=now))


def _decoded(payload: bytes) -> Batch:
    """The batch, or ``malformed``: a contract defect, or a field stored as text holding U+0000.
    PostgreSQL's text cannot hold it, and its error (not a refusal) reached the client as UNKNOWN
    with the database's message, for a batch SQLite stored: refused alike on every store (``dims``
    is stored as JSON, which escapes it)."""
    try:
        batch = decode_batch(payload)
    except ContractError as exc:
        raise _Refuse("malformed", exc.message) from exc
    rows = batch.rows
    texts = [batch.privacy.unit, *(t for r in rows for t in (r.metric, r.stat, r.noise.mechanism, r.level))]
    if any("\0" in t for t in texts):
        raise _Refuse("malformed", "a text field holds a NUL character")
    return batch


def _stored(batch: Batch, outcome: CommitOutcome) -> Stored:
    refused: _Refuse
    match outcome:
        case Accepted(gap=gap, fork=fork):
            return Stored(batch.tenant, batch.agent, batch.seq, gap=gap, fork=fork)
        case Duplicate():
            return Stored(batch.tenant, batch.agent, batch.seq, duplicate=True)
        case Stale():
            raise _Stale
        case Conflicting():
            refused = _Refuse("conflict", f"seq {batch.seq} was already stored with different bytes")
        case CommitRefused(reason=reason, retry_after=retry):
            refused = _Refuse(reason, reason.replace("_", " "), retry)
    refused.final = True
    raise refused


async def _decide_exactly(
    store: Store,
    cache: LookupCache | None,
    envelope: dsse.Envelope,
    now: float,
    s: IngestSettings,
    ctx: _Context,
) -> Stored:
    """:func:`_decide` on cached records when there is a cache; what may rest on a stale record is
    decided again on fresh ones (see :mod:`collector.ingest_cache`)."""
    if cache is not None:
        try:
            return await _decide(store, cache, envelope, now, s, ctx)
        except _Refuse as refusal:
            if refusal.final or refusal.rejected.reason not in RECHECKED:
                raise
        except _Stale:
            cache.forget(ctx.tenant)
    for _ in range(_STALE_ATTEMPTS):
        ctx.tenant, ctx.agent, ctx.seq, ctx.key_id = UNATTRIBUTED, None, None, None
        try:
            return await _decide(store, store, envelope, now, s, ctx)
        except _Stale:
            continue  # the limits changed again between the reads and the transaction
    raise Unavailable("the tenant's limits changed during the check; retry")


async def ingest(
    store: Store,
    envelope: dsse.Envelope,
    *,
    now: float,
    settings: IngestSettings | None = None,
    observer: Observer | None = None,
    unattributed: Callable[[Refusal, float], None] | None = None,
    cache: LookupCache | None = None,
) -> Outcome:
    """Decide on one envelope; store it or count and audit the refusal. Never raises for bad input.

    ``unattributed`` (the server's :class:`~collector.ingest_refusals.RefusalBuffer`), when given,
    takes the refusals no verified key is behind instead of the store: junk costs no write each.
    ``cache`` (the server's), when given, answers the reads before the transaction; decisions stay
    exactly those without it (:mod:`collector.ingest_cache`)."""
    ctx = _Context()
    started = time.perf_counter()
    try:
        s = settings or IngestSettings()
        outcome: Outcome = await _decide_exactly(store, cache, envelope, now, s, ctx)
    except _Refuse as refusal:
        outcome = refusal.rejected
        record = Refusal(ctx.tenant, outcome.reason, ctx.agent, ctx.seq, ctx.key_id)
        if unattributed is not None and record.tenant == UNATTRIBUTED:
            unattributed(record, now)
        else:
            await store.record_refusal(record, now=now)
    if observer is not None:
        elapsed = time.perf_counter() - started
        if isinstance(outcome, Stored):
            observer("duplicate" if outcome.duplicate else "accepted", outcome.tenant, elapsed)
        else:
            observer(outcome.reason, ctx.tenant, elapsed)
    return outcome
