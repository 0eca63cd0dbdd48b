"""Certified agents on the collector (issue 14 part 3): verify a certificate, record it, and say what
it is worth today.

:func:`check` is the pure verification of a decoded statement against the key whose signature
verified (agent and tenant match, same key, conforming profile, validity window);
:func:`submit` is the edge both the ``SubmitCertificate`` RPC and the bundle importer call: it finds
the signing key in the registry exactly as batch ingest does (registered, the *active* key of an
*active* tenant), then records the certificate (audited as ``certificate.record``) or refuses it
(audited as ``certificate.refused`` when a verified key is behind it; otherwise not written, like
unattributed junk batches).

:func:`statuses` computes, at read time, each recorded certificate's status from the stored batch
rows: the newest certificate of an agent is ``valid``, ``expired`` or ``contradicted`` (a batch
received since it was issued declares another policy digest, or a budget period's declared spend
exceeds the attested cap); older ones are ``superseded``. Nothing of this runs on the ingest path.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Literal

import msgspec

from collector.audit import Detail
from collector.ingest import signers, speaker
from collector.store import UNATTRIBUTED, KeyRecord, Refusal, Store, Tenant
from collector.store.records import AgentCertificate, CertBatch, CertDay, CertificateRecord, CertStatus
from collector.store.vocab import BatchReason
from hushmetric import dsse
from hushmetric.certificate import (
    CERTIFICATE_PAYLOAD_TYPE,
    MAX_CERTIFICATE_BYTES,
    Certificate,
    decode_statement,
    statement_problem,
)
from hushmetric.errors import ContractError
from hushmetric.timefmt import format_rfc3339, parse_rfc3339

__all__ = [
    "LOOKBACK_SECONDS",
    "CertRejected",
    "Recorded",
    "RefusedLog",
    "audit_details",
    "certificate_doc",
    "check",
    "contradiction",
    "current",
    "day_contradiction",
    "days_of",
    "newest",
    "period_key",
    "record_of",
    "statuses",
    "submit",
]

CertKind = Literal["invalid_argument", "unauthenticated", "permission_denied", "failed_precondition"]

#: Why a certificate is refused, and the gRPC status kind of each reason.
REASONS: dict[str, CertKind] = {
    "payload_type": "invalid_argument",
    "too_large": "invalid_argument",
    "malformed": "invalid_argument",
    "unknown_key": "unauthenticated",
    "bad_signature": "unauthenticated",
    "revoked_key": "unauthenticated",
    "retired_key": "unauthenticated",
    "signer_mismatch": "permission_denied",
    "tenant_suspended": "permission_denied",
    "tenant_deleted": "permission_denied",
    "tenant_mismatch": "permission_denied",
    "agent_mismatch": "permission_denied",
    "key_mismatch": "permission_denied",
    "not_conforming": "failed_precondition",
    "overspent": "failed_precondition",
    "bad_validity": "failed_precondition",
    "not_yet_valid": "failed_precondition",
    "expired": "failed_precondition",
}
#: How far before a certificate's issue time the spend check reads batches: a whole budget period
#: (a month at most) so that a period's spend is summed in full.
LOOKBACK_SECONDS = 32 * 86400
_DAY = 86400
_SLACK = 1e-9  # relative: float sums of the same charges in another order
_PERIOD_FORMAT = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}


#: Refusals no verified key is behind, counted (under tenant ``-``) with the batch reason they share.
_COUNTED: dict[str, BatchReason] = {
    "unknown_key": "unknown_key",
    "bad_signature": "bad_signature",
    "malformed": "malformed",
    "payload_type": "payload_type",
    "too_large": "too_large",
    "signer_mismatch": "signer_mismatch",
}


class CertRejected(msgspec.Struct, frozen=True):
    reason: str
    message: str

    @property
    def kind(self) -> CertKind:
        return REASONS[self.reason]


class RefusedLog:
    """Which ``certificate.refused`` audits are due: at most one per (tenant, agent, reason) and
    minute, carrying how many refusals it stands for (like batch refusals, whose audit is once a
    minute too). A certificate is public once it left the site, and a refused one (expired, of a
    revoked key) stays refused: replayed in a loop, each refusal was an entry in the signed log.
    Bounded by the registered keys behind the refusals."""

    def __init__(self) -> None:
        self._minute = -1
        self._pending: dict[tuple[str, str, str], int] = {}  # refusals not yet in an entry
        self._written: set[tuple[str, str, str]] = set()  # keys with an entry this minute

    def due(self, key: tuple[str, str, str], now: float) -> int | None:
        """The count to audit now for ``key``, or None when this minute's entry was written."""
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._written = minute, set()
        self._pending[key] = self._pending.get(key, 0) + 1
        if key in self._written:
            return None
        self._written.add(key)
        return self._pending.pop(key)


class Recorded(msgspec.Struct, frozen=True):
    record: CertificateRecord
    duplicate: bool


def check(cert: Certificate, key: KeyRecord, tenant: Tenant | None, now: float) -> CertRejected | None:
    """Pure: is ``cert`` (signed by ``key``, verified) acceptable from ``key``'s agent at ``now``?"""
    if tenant is None or tenant.state != "active":
        state = tenant.state if tenant is not None else "deleted"
        reason = "tenant_suspended" if state == "suspended" else "tenant_deleted"
        return CertRejected(reason, f"tenant {key.tenant!r} is {state}")
    if key.state != "active":
        return CertRejected(
            f"{key.state}_key", f"key {key.key_id} is {key.state}; certify with the active key"
        )
    if cert.key_id != key.key_id or cert.public_key != key.public_key:
        return CertRejected("key_mismatch", "the statement names another key than the one that signed it")
    if cert.agent != key.agent:
        return CertRejected("agent_mismatch", "the certificate claims an agent its key does not belong to")
    if cert.tenant is not None and cert.tenant != key.tenant:
        return CertRejected("tenant_mismatch", "the certificate claims a tenant its key does not belong to")
    problem = statement_problem(cert, now)
    return CertRejected(*problem) if problem is not None else None


def record_of(
    cert: Certificate, key: KeyRecord, payload: bytes, envelope: bytes, now: float
) -> CertificateRecord:
    return CertificateRecord(
        tenant=key.tenant,
        agent=key.agent,
        key_id=key.key_id,
        digest=hashlib.sha256(payload).hexdigest(),
        profile=cert.profile,
        policy_digest=cert.policy_digest,
        issued=parse_rfc3339(cert.issued),
        expires=parse_rfc3339(cert.valid_until),
        measure=cert.measure,
        budget_period=cert.budget_period,
        cap=cert.cap,
        received=now,
        envelope=envelope,
    )


async def _verify(
    store: Store, envelope: dsse.Envelope, now: float
) -> tuple[KeyRecord | None, CertRejected | Certificate]:
    if envelope.payload_type != CERTIFICATE_PAYLOAD_TYPE:
        return None, CertRejected("payload_type", f"payloadType must be {CERTIFICATE_PAYLOAD_TYPE}")
    if not envelope.signatures or len(envelope.signatures) > dsse.MAX_SIGNATURES:
        return None, CertRejected("malformed", f"envelope must carry 1..{dsse.MAX_SIGNATURES} signatures")
    # the whole envelope, as stored and as a file holds it: signatures the checks skip (a key id of
    # another length) would otherwise carry any number of bytes into the certificates table
    if len(envelope.payload) > MAX_CERTIFICATE_BYTES or len(dsse.to_json(envelope)) > MAX_CERTIFICATE_BYTES:
        return None, CertRejected("too_large", f"certificate larger than {MAX_CERTIFICATE_BYTES} bytes")
    known, verified = await signers(store, envelope)
    if not known:
        return None, CertRejected("unknown_key", "signed by an unknown key")
    if not verified:
        return None, CertRejected("bad_signature", "signature does not verify")
    key = speaker(verified)
    if key is None:
        return None, CertRejected("signer_mismatch", "signatures by keys of different tenants or agents")
    try:
        cert = decode_statement(envelope.payload)  # verified above
    except ContractError as exc:
        return key, CertRejected("malformed", exc.message)
    refused = check(cert, key, await store.get_tenant(key.tenant), now)
    return key, refused if refused is not None else cert


async def submit(
    store: Store,
    envelope: dsse.Envelope,
    *,
    now: float,
    unattributed: Callable[[Refusal, float], None] | None = None,
    refused_log: RefusedLog | None = None,
) -> Recorded | CertRejected:
    """Verify and record one certificate envelope. Never raises for bad input (Unavailable for
    storage). A refusal behind a verified key is audited (with ``refused_log``, the server's, at
    most once a minute per agent and reason); one without goes to ``unattributed`` (the server's
    refusal buffer, counted under tenant ``-``) with the batch reason it shares."""
    key, outcome = await _verify(store, envelope, now)
    if isinstance(outcome, CertRejected):
        count = (
            1
            if key is None or refused_log is None
            else refused_log.due((key.tenant, key.agent, outcome.reason), now)
        )
        if key is not None and count is not None:
            details: dict[str, Detail] = {"agent": key.agent, "key_id": key.key_id, "reason": outcome.reason}
            if count > 1:
                details["count"] = count
            await store.append_audit("certificate.refused", key.tenant, details, now=now)
        elif unattributed is not None and outcome.reason in _COUNTED:
            unattributed(Refusal(UNATTRIBUTED, _COUNTED[outcome.reason]), now)
        return outcome
    assert key is not None  # a Certificate comes only with the key that signed it
    record = record_of(outcome, key, envelope.payload, dsse.to_json(envelope), now)
    fresh = await store.record_certificate(record, now=now)
    return Recorded(record, duplicate=not fresh)


def audit_details(rec: CertificateRecord) -> dict[str, Detail]:
    """What ``certificate.record`` audits: enough to find the certificate, nothing it does not say."""
    return {
        "agent": rec.agent,
        "key_id": rec.key_id,
        "profile": rec.profile,
        "policy": rec.policy_digest,
        "issued": format_rfc3339(rec.issued),
        "expires": format_rfc3339(rec.expires),
        "digest": rec.digest,
    }


def certificate_doc(c: AgentCertificate) -> dict[str, object]:
    """The JSON form of a recorded certificate (``certify list --json``; for the HTTP API too)."""
    return {
        "tenant": c.tenant,
        "agent": c.agent,
        "key_id": c.key_id,
        "profile": c.profile,
        "policy_digest": c.policy_digest,
        "issued": format_rfc3339(c.issued),
        "expires": format_rfc3339(c.expires),
        "status": c.status,
        "reason": c.reason,
        "measure": c.measure,
        "budget_period": c.budget_period,
        "cap": c.cap,
    }


def current(found: Sequence[AgentCertificate]) -> dict[tuple[str, str], AgentCertificate]:
    """Each agent's current certificate (its newest: valid, expired or contradicted) by (tenant, agent),
    from :meth:`Store.agent_certificates`; an agent without one is absent (badge: none)."""
    return {(c.tenant, c.agent): c for c in found if c.status != "superseded"}


def period_key(period: str, ts: float) -> str:
    """The UTC budget period containing ``ts``, as the agent's ledger names it."""
    return time.strftime(_PERIOD_FORMAT.get(period, "%Y-%m-%d"), time.gmtime(int(ts)))


def days_of(rec: CertificateRecord, batches: Sequence[CertBatch]) -> list[CertDay]:
    """Pure: ``batches`` summed per UTC day of their windows, as the stores' grouped query returns them
    (:func:`contradiction` of single batches, in tests and tools, goes through the same sums)."""
    days: dict[int, CertDay] = {}
    for b in batches:
        day = int(b.window_start) // _DAY
        since = b.received >= rec.issued
        other = b.policy if since and b.policy != rec.policy_digest else None
        seen = days.get(day, CertDay(day, False, 0.0, 0.0, None))
        others = [p for p in (seen.other_policy, other) if p is not None]
        days[day] = CertDay(
            day, seen.since or since, seen.rho + (b.rho or 0.0), seen.epsilon + (b.epsilon or 0.0),
            min(others) if others else None,
        )  # fmt: skip
    return [days[d] for d in sorted(days)]


def contradiction(rec: CertificateRecord, batches: Sequence[CertBatch]) -> str | None:
    """Pure: why batches received since ``rec`` was issued contradict it, or None.

    ``batches`` are the agent's stored batches received since the issue time, plus those whose
    windows start up to :data:`LOOKBACK_SECONDS` earlier (so that a period's spend sums in full)."""
    return day_contradiction(rec, days_of(rec, batches))


def day_contradiction(rec: CertificateRecord, days: Sequence[CertDay]) -> str | None:
    """Pure: :func:`contradiction` from the agent's batches summed per UTC day (:class:`CertDay`):
    budget periods are whole UTC days, so the per-day sums give each period's spend exactly as the
    batches did (up to the order of float additions, which :data:`_SLACK` absorbs)."""
    other = sorted(d.other_policy for d in days if d.other_policy is not None)
    if other:
        return (
            f"batches since issue declare policy {other[0][:16]}, not the certified {rec.policy_digest[:16]}"
        )
    periods = {period_key(rec.budget_period, d.day * _DAY) for d in days if d.since}
    spent: dict[str, float] = {}
    for d in days:
        p = period_key(rec.budget_period, d.day * _DAY)
        if p in periods:
            spent[p] = spent.get(p, 0.0) + (d.rho if rec.measure == "rho" else d.epsilon)
    over = sorted(p for p, s in spent.items() if s > rec.cap * (1 + _SLACK))
    if over:
        p = over[0]
        return f"{rec.measure} declared in {p} is {spent[p]:.6g}, above the certified cap {rec.cap:.6g}"
    return None


def newest(records: Sequence[CertificateRecord]) -> list[CertificateRecord]:
    """Each agent's newest record (the one whose status needs the agent's batches)."""
    best: dict[tuple[str, str], CertificateRecord] = {}
    for rec in records:
        seen = best.get((rec.tenant, rec.agent))
        if seen is None or _order(rec) < _order(seen):
            best[(rec.tenant, rec.agent)] = rec
    return [best[k] for k in sorted(best)]


def _order(rec: CertificateRecord) -> tuple[str, str, float, float, str]:
    return (rec.tenant, rec.agent, -rec.issued, -rec.received, rec.digest)


def statuses(
    records: Sequence[CertificateRecord],
    days: Mapping[tuple[str, str], Sequence[CertDay]],
    now: float,
    revoked: Collection[str] = frozenset(),
) -> list[AgentCertificate]:
    """Every record with its status, by tenant, agent, then newest first. ``days`` holds, per
    (tenant, agent), the day sums :func:`day_contradiction` needs for that agent's newest record;
    ``revoked``, the ids of revoked keys: a certificate signed by one is contradicted, because a key
    is revoked when it is no longer trusted (stolen, say), and whoever held it could have signed
    the statement."""
    out: list[AgentCertificate] = []
    current: tuple[str, str] | None = None
    for rec in sorted(records, key=_order):
        status: CertStatus
        if (rec.tenant, rec.agent) == current:
            status, reason = "superseded", "the agent has a newer certificate"
        else:
            current = (rec.tenant, rec.agent)
            why = (
                f"its signing key {rec.key_id[:16]} was revoked"
                if rec.key_id in revoked
                else day_contradiction(rec, days.get(current, ()))
            )
            if why is not None:
                status, reason = "contradicted", why
            elif now >= rec.expires:
                status, reason = "expired", f"expired at {format_rfc3339(rec.expires)}"
            else:
                status, reason = "valid", f"valid until {format_rfc3339(rec.expires)}"
        out.append(
            AgentCertificate(
                rec.tenant, rec.agent, rec.key_id, rec.profile, rec.policy_digest, rec.issued, rec.expires,
                status, reason, rec.measure, rec.budget_period, rec.cap, rec.received,
            )
        )  # fmt: skip
    return out
