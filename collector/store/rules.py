"""The store's decisions, written once: both dialects run their SQL and ask these pure functions.

Key state transitions, tenant state changes, enrollment-token checks (the agent binding and
rotation included), quota and token-bucket arithmetic, the state re-check inside the ingest
transaction, the chain classification, and the audit details of every admin action and refusal.
Each function takes values read by the caller's SQL and returns values (or raises
:class:`~collector.errors.NotFound`/:class:`~collector.errors.Conflict`, which the store lets
through), so the SQLite and PostgreSQL stores cannot drift apart and the rules test without a
database. What stays per dialect is the SQL and its concurrency: SQLite ``BEGIN IMMEDIATE``,
PostgreSQL conditional updates and advisory locks.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import msgspec

from collector.audit import Detail
from collector.errors import Conflict, NotFound
from collector.store.records import (
    CommitRefused,
    KeyRecord,
    PolicyRecord,
    PrivacyCap,
    Quota,
    Refusal,
    Stale,
    Tenant,
)
from collector.store.vocab import BatchReason, KeyState, PolicyState, RefusalReason, TenantState
from hushmetric.keys import key_id as compute_key_id
from hushmetric.timefmt import format_rfc3339, parse_rfc3339

__all__ = [
    "MAX_BATCH_UNITS",
    "MAX_SPEND_UNITS",
    "MINUTES_KEPT",
    "RHO_UNITS_PER_RHO",
    "TOKEN_COLUMNS",
    "ChainFindings",
    "KeyChange",
    "TenantChange",
    "TokenRow",
    "added_key",
    "agent_has_key",
    "bucket_burst",
    "bucket_name",
    "cap_details",
    "cap_units",
    "chain_findings",
    "day_of",
    "day_quota_reason",
    "fits_day",
    "key_change",
    "minute_of",
    "month_of",
    "must_be_active",
    "must_be_new_key",
    "must_be_new_tenant",
    "policy_approval",
    "policy_refusal",
    "policy_revocation",
    "quota_details",
    "quota_values",
    "rate_retry_after",
    "redeemable",
    "refusal_action",
    "refusal_details",
    "rho_units",
    "rotation_allowed",
    "seconds_to_next_day",
    "seconds_to_next_month",
    "spend_charge",
    "spend_targets",
    "state_refusal",
    "still_valid",
    "tenant_change",
    "token_details",
    "token_row",
    "valid_digest",
    "window_day",
]

# Refusal minutes older than a day are forgotten (the first refusal of a minute is audited).
MINUTES_KEPT = 1440


# -- calendar ------------------------------------------------------------------------------------


def day_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def minute_of(now: float) -> int:
    return int(now // 60)


def seconds_to_next_day(now: float) -> float:
    return 86400.0 - (now % 86400.0)


def seconds_to_next_month(now: float) -> float:
    t = datetime.fromtimestamp(now, UTC)
    nxt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
    return nxt.timestamp() - now


# -- tenants -------------------------------------------------------------------------------------

_TENANT_ACTION: dict[TenantState, str] = {
    "active": "tenant.resume",
    "suspended": "tenant.suspend",
    "deleted": "tenant.delete",
}


class TenantChange(msgspec.Struct, frozen=True):
    """A tenant state change to write: the new record and its audit entry."""

    tenant: Tenant
    action: str
    details: dict[str, Detail]


def must_be_new_tenant(existing: Tenant | None, name: str) -> None:
    """Names are never reused, also after a delete."""
    if existing is not None:
        raise Conflict(f"tenant {name!r} already exists")


def must_be_active(tenant: Tenant | None, name: str) -> Tenant:
    """Keys, tokens and enrollments need an active tenant."""
    if tenant is None:
        raise NotFound("tenant", name)
    if tenant.state != "active":
        raise Conflict(f"tenant {name!r} is {tenant.state}")
    return tenant


def tenant_change(tenant: Tenant | None, name: str, state: TenantState, now: float) -> TenantChange:
    """suspend/resume/delete: any state but deleted may change (deleted is final)."""
    if tenant is None:
        raise NotFound("tenant", name)
    if tenant.state == "deleted":
        raise Conflict(f"tenant {name!r} is deleted")
    return TenantChange(
        Tenant(name, state, tenant.created, now), _TENANT_ACTION[state], {"from": tenant.state}
    )


# -- keys ----------------------------------------------------------------------------------------


class KeyChange(msgspec.Struct, frozen=True):
    """A key state change to write (``at`` goes to ``retired_at`` or ``revoked_at``) and its audit."""

    key: KeyRecord
    action: str
    details: dict[str, Detail]


def key_change(key: KeyRecord | None, key_id: str, state: KeyState, now: float) -> KeyChange | None:
    """The key state machine: active → retired → revoked, active → revoked; revoked is final and
    nothing becomes active again. None when there is nothing to do (retiring a retired key)."""
    if key is None:
        raise NotFound("key", key_id)
    if key.state == "revoked":
        raise Conflict(f"key {key_id} is revoked")
    if state == "retired":
        if key.state == "retired":
            return None
        new = msgspec.structs.replace(key, state="retired", retired_at=now)
    elif state == "revoked":
        new = msgspec.structs.replace(key, state="revoked", revoked_at=now)
    else:
        raise Conflict("a key cannot be re-activated; add a new one")
    action = "key.retire" if state == "retired" else "key.revoke"
    return KeyChange(new, action, {"key_id": key_id, "agent": key.agent})


def must_be_new_key(registered: bool, key_id: str) -> None:
    if registered:
        raise Conflict(f"key {key_id} is already registered")


def added_key(
    tenant: str, agent: str, public_key: bytes, now: float, via: str
) -> tuple[KeyRecord, dict[str, Detail]]:
    """The record of a key being added (by ``admin`` or ``enroll:<token>``) and its audit details."""
    kid = compute_key_id(public_key)
    return KeyRecord(kid, tenant, agent, public_key, "active", now), {
        "key_id": kid,
        "agent": agent,
        "via": via,
    }


# -- enrollment tokens ---------------------------------------------------------------------------


class TokenRow(msgspec.Struct, frozen=True, array_like=True):
    """An ``enroll_tokens`` row as both stores read it (``SELECT`` :data:`TOKEN_COLUMNS`)."""

    tenant: str
    secret_hash: bytes
    expires: float
    used_at: float | None
    agent: str | None  # the agent the token is bound to, if any
    rotate: bool


TOKEN_COLUMNS = "tenant, secret_hash, expires, used_at, agent, rotate"


def token_row(row: tuple[object, ...] | None) -> TokenRow | None:
    """A database row (bytes may come as memoryview, ``rotate`` as 0/1) as a :class:`TokenRow`."""
    if row is None:
        return None
    tenant, secret_hash, expires, used_at, agent, rotate = row
    return TokenRow(
        str(tenant),
        bytes(secret_hash),  # type: ignore[call-overload]  # BYTEA/BLOB column
        float(expires),  # type: ignore[arg-type]  # REAL column
        None if used_at is None else float(used_at),  # type: ignore[arg-type]  # REAL column
        None if agent is None else str(agent),
        bool(rotate),
    )


def redeemable(token: TokenRow | None, token_id: str, secret_hash: bytes, agent: str, now: float) -> TokenRow:
    """The token, if ``agent`` may use it now. One NotFound for an unknown, mismatching, used or
    expired token and for one bound to another agent, so probing learns nothing; the secret is
    compared in constant time."""
    if token is None or not hmac.compare_digest(token.secret_hash, secret_hash):
        raise NotFound("enroll token", token_id)
    if (
        token.used_at is not None
        or token.expires <= now
        or (token.agent is not None and token.agent != agent)
    ):
        raise NotFound("enroll token", token_id)
    return token


def agent_has_key(agent: str) -> str:
    return (
        f"agent {agent!r} already has a key; a token from `enroll-token --agent {agent} --rotate` can add one"
    )


def rotation_allowed(token: TokenRow, agent: str, has_key: bool) -> None:
    """An agent that has a key gets another only with a rotation token (the token then stays unused)."""
    if has_key and not token.rotate:
        raise Conflict(agent_has_key(agent))


def token_details(token_id: str, expires: float, agent: str | None, rotate: bool) -> dict[str, Detail]:
    """The audit details of a new enrollment token (both stores write the same entry)."""
    details: dict[str, Detail] = {"token_id": token_id, "expires": format_rfc3339(expires)}
    if agent is not None:
        details |= {"agent": agent, "rotate": rotate}
    return details


# -- quotas and rate limits ----------------------------------------------------------------------


def quota_values(quota: Quota) -> list[int | float | None]:
    """The limits of ``quota`` in :data:`~collector.store.schema.QUOTA_FIELDS` order."""
    return list(msgspec.structs.astuple(quota)[1:])


def quota_details(quota: Quota) -> dict[str, Detail]:
    """The audit details of ``quota.set``: every limit by name (None = unlimited)."""
    return dict(zip(quota.__struct_fields__[1:], quota_values(quota), strict=True))


def bucket_name(tenant: str) -> str:
    return f"tenant:{tenant}"


def bucket_burst(quota: Quota) -> float:
    """The bucket's size: ``burst``, else one second of the rate (at least one token)."""
    rate = quota.batches_per_second or 0.0
    return float(quota.burst if quota.burst else max(1, math.ceil(rate)))


def rate_retry_after(quota: Quota, tokens: float, updated: float, now: float) -> float:
    """Seconds until the bucket (``tokens`` at ``updated``) holds a whole token again."""
    rate = quota.batches_per_second
    assert rate, "only asked when a rate applies"
    have = min(bucket_burst(quota), tokens + max(0.0, now - updated) * rate)
    return max(0.001, (1.0 - have) / rate)


def fits_day(quota: Quota, rows: int, nbytes: int) -> bool:
    """Whether a batch could fit in an empty day at all (else no conditional update can take it)."""
    return not (
        (quota.rows_per_day is not None and rows > quota.rows_per_day)
        or (quota.bytes_per_day is not None and nbytes > quota.bytes_per_day)
    )


def day_quota_reason(quota: Quota, used_rows: int, rows: int) -> BatchReason:
    """Which day quota a refused batch ran into: rows when they do not fit, else bytes."""
    over_rows = quota.rows_per_day is not None and used_rows + rows > quota.rows_per_day
    return "quota_rows_day" if over_rows else "quota_bytes_day"


# -- ingest re-check and chain -------------------------------------------------------------------


def state_refusal(states: tuple[str, str] | None) -> CommitRefused | None:
    """The refusal, if any, for (key state, tenant state) re-read inside the ingest transaction
    (None: the key is gone). A kill switch committed since the checks takes effect at once."""
    if states is None:
        return CommitRefused("unknown_key")
    key_state, tenant_state = states
    if key_state == "revoked":
        return CommitRefused("revoked_key")
    if tenant_state == "suspended":
        return CommitRefused("tenant_suspended")
    if tenant_state != "active":
        return CommitRefused("tenant_deleted")
    return None


def still_valid(
    states: tuple[str, str] | None, retired_at: float | None, created: str, quota: Quota, current: Quota
) -> CommitRefused | Stale | None:
    """Everything the checks before the transaction decided, re-decided on what the transaction
    read, so they may run on cached key, tenant and quota records and still decide exactly: the
    kill switch (:func:`state_refusal`), the key's retirement (a key retired since it was cached
    refuses batches created after that), and the tenant's limits (any change: :class:`Stale`, the
    caller checks the batch again with fresh records)."""
    refused = state_refusal(states)
    if refused is not None:
        return refused
    if retired_at is not None and parse_rfc3339(created) > retired_at:
        return CommitRefused("retired_key")
    return Stale() if quota != current else None


class ChainFindings(msgspec.Struct, frozen=True):
    """What a stored batch says about its agent's hash chain (recorded, never refused)."""

    gap: bool  # the previous seq has not arrived (yet)
    fork: bool  # ``prev`` does not match the stored previous batch
    resolves_next_gap: bool  # the next seq is stored: its gap is now closed
    next_forks: bool  # the next seq is stored and its ``prev`` is not this batch's digest


def chain_findings(
    seq: int, prev: str, digest: str, before_digest: str | None, after_prev: str | None
) -> ChainFindings:
    """``before_digest``: the stored digest of seq - 1; ``after_prev``: the stored prev of seq + 1."""
    gap = seq > 1 and before_digest is None
    fork = (before_digest is not None and before_digest != prev) if seq > 1 else bool(prev)
    return ChainFindings(
        gap=gap,
        fork=fork,
        resolves_next_gap=after_prev is not None,
        next_forks=after_prev is not None and after_prev != digest,
    )


# -- refusals ------------------------------------------------------------------------------------


def refusal_action(reason: RefusalReason) -> str:
    """The audit action of a refusal: failed enrollments are not batches."""
    return "enroll.refused" if reason.startswith("enroll_") else "batch.refused"


def refusal_details(refusal: Refusal) -> dict[str, Detail]:
    """The audit details of the first refusal of its kind in a minute."""
    return {
        "reason": refusal.reason,
        "agent": refusal.agent,
        "seq": refusal.seq,
        "key_id": refusal.key_id,
        "note": "first refusal for this reason in this minute; later ones are counted in usage",
    }


# -- governance: approved policies and central privacy caps (issue 14) ---------------------------

#: ρ is summed in integers of 1e-12 ρ: float sums of concurrent admissions would depend on their
#: order (0.1 + 0.2 > 0.3), integers make "admitted ρ equals the cap" exact on every replica.
RHO_UNITS_PER_RHO = 10**12
#: The most one batch can be charged (2**53 units, about 9007 ρ): a larger declared ρ (the wire
#: allows up to the largest float) has no usable bound and is refused wherever a cap applies.
MAX_BATCH_UNITS = 2**53
#: Sums saturate here (about 4.6e6 ρ), so adding a batch never overflows a 64-bit integer column.
MAX_SPEND_UNITS = 2**62
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def valid_digest(digest: str) -> bool:
    """A policy digest as ``hush-agent validate`` prints it: 64 lowercase hex digits."""
    return bool(_DIGEST.match(digest))


def window_day(window_start: str) -> str:
    """The UTC day a batch's privacy loss is charged to: its window's (windows divide days, as the
    agent's budget periods do), not its arrival's, so a backlog delivered late cannot reopen a day."""
    return day_of(parse_rfc3339(window_start))


def rho_units(rho: float | None, epsilon: float | None, delta: float | None) -> int | None:
    """The ρ a batch declares, in units, rounded up (never under-counted). Pure ε-DP converts to
    ε²/2-zCDP; (ε, δ) with δ > 0 and no ρ has no ρ bound: None."""
    if rho is not None:
        value = Decimal(repr(rho))
    elif epsilon is not None and not delta:
        value = Decimal(repr(epsilon)) ** 2 / 2
    else:
        return None
    return int((value * RHO_UNITS_PER_RHO).to_integral_value(ROUND_CEILING))


def spend_charge(
    rho: float | None, epsilon: float | None, delta: float | None, *, capped: bool
) -> int | CommitRefused | None:
    """What a batch charges to ``privacy_spend``: units; a refusal when a cap applies and the batch
    has no usable ρ bound (none declared, or over :data:`MAX_BATCH_UNITS`); None when nothing is to
    be counted (no bound, no cap). Uncapped, an absurd ρ counts as the most a batch can."""
    units = rho_units(rho, epsilon, delta)
    if units is not None and units <= MAX_BATCH_UNITS:
        return units
    if capped:
        return CommitRefused("privacy_cap")
    return None if units is None else MAX_BATCH_UNITS


def cap_units(rho_per_day: float) -> int:
    """A cap in units, rounded down (a cap is never exceeded by rounding), at most the saturation."""
    units = int((Decimal(repr(rho_per_day)) * RHO_UNITS_PER_RHO).to_integral_value(ROUND_FLOOR))
    return min(units, MAX_SPEND_UNITS)


def spend_targets(agent: str, cap: PrivacyCap | None) -> list[tuple[str, int | None]]:
    """The ``privacy_spend`` rows a batch charges, in lock order, each with its limit in units (None:
    counted, not capped). Both the agent's and the tenant's ('') rows are always charged, so a cap
    switched between ``--per agent`` and ``--per tenant`` mid-day sees everything already admitted."""
    limit = None if cap is None else cap_units(cap.rho_per_day)
    return [
        (agent, limit if cap is not None and cap.per == "agent" else None),
        ("", limit if cap is not None and cap.per == "tenant" else None),
    ]


def policy_refusal(policies: Mapping[str, PolicyState], digest: str) -> CommitRefused | None:
    """A tenant that never approved a digest takes any policy (attachment is opt-in); once it has
    approval records (``policies``: digest → state), only approved digests are taken — also after
    its last approval was revoked, so a revocation never falls back to "anything goes". Read
    inside the ingest transaction: a revocation acts at once."""
    if policies and policies.get(digest) != "approved":
        return CommitRefused("policy_unapproved")
    return None


def _not_deleted(tenant: Tenant | None, name: str) -> None:
    if tenant is None:
        raise NotFound("tenant", name)
    if tenant.state == "deleted":
        raise Conflict(f"tenant {name!r} is deleted")


def policy_approval(
    tenant: Tenant | None, name: str, existing: PolicyRecord | None, digest: str, note: str, now: float
) -> tuple[PolicyRecord, dict[str, Detail]]:
    """Approve a digest (again, after a revocation); approving an approved one is a Conflict."""
    _not_deleted(tenant, name)
    if existing is not None and existing.state == "approved":
        raise Conflict(f"policy {digest[:16]} is already approved for tenant {name!r}")
    record = PolicyRecord(name, digest, "approved", note, now)
    return record, {"digest": digest, "note": note}


def policy_revocation(
    tenant: Tenant | None, name: str, existing: PolicyRecord | None, digest: str, now: float
) -> tuple[PolicyRecord, dict[str, Detail]]:
    """Revoke an approved digest: new batches under it are refused; stored ones stay (and say so)."""
    _not_deleted(tenant, name)
    if existing is None:
        raise NotFound("approved policy", digest)
    if existing.state == "revoked":
        raise Conflict(f"policy {digest[:16]} is already revoked for tenant {name!r}")
    return msgspec.structs.replace(existing, state="revoked", revoked=now), {"digest": digest}


def cap_details(tenant: Tenant | None, name: str, cap: PrivacyCap | None) -> dict[str, Detail]:
    """Check a cap can be set (None: lifted) and give its audit details."""
    _not_deleted(tenant, name)
    if cap is None:
        return {"rho_per_day": None, "per": None}
    if not (math.isfinite(cap.rho_per_day) and cap.rho_per_day > 0):
        raise Conflict(f"a privacy cap must be a positive finite rho, not {cap.rho_per_day}")
    return {"rho_per_day": cap.rho_per_day, "per": cap.per}
