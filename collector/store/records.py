"""The records the collector's store trades in: tenants, keys, quotas, the ingest commit and its
outcomes, refusals, and what it hands to reports (released rows, declared privacy, usage)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

import msgspec

from collector.store.vocab import BatchReason, CapScope, KeyState, PolicyState, RefusalReason, TenantState
from hushmetric.batch import Row

__all__ = [
    "API_ROLES",
    "UNATTRIBUTED",
    "Accepted",
    "AgentActivity",
    "AgentCertificate",
    "ApiRole",
    "ApiToken",
    "BatchCommit",
    "BatchPrivacy",
    "CertBatch",
    "CertDay",
    "CertStatus",
    "CertificateRecord",
    "CommitOutcome",
    "CommitRefused",
    "Conflicting",
    "Duplicate",
    "KeyRecord",
    "OutputPage",
    "OutputRow",
    "PolicyRecord",
    "PrivacyCap",
    "Quota",
    "Refusal",
    "SpendDay",
    "Stale",
    "StoredRow",
    "Tenant",
    "UsageDay",
    "usage_days",
]


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


class PolicyRecord(msgspec.Struct, frozen=True):
    """A policy digest a tenant approved (and maybe revoked since: the record stays, stored batches
    name it). A tenant with at least one approved digest admits batches under approved digests only."""

    tenant: str
    digest: str  # hex SHA-256 of the agent's canonical policy, as ``hush-agent validate`` prints it
    state: PolicyState
    note: str
    approved: float  # epoch seconds of the (latest) approval
    revoked: float | None = None


class PrivacyCap(msgspec.Struct, frozen=True):
    """The most zCDP ρ a tenant's batches may declare per UTC day of their windows, summed per agent
    or over the whole tenant (``per``)."""

    tenant: str
    rho_per_day: float
    per: CapScope = "agent"


class SpendDay(msgspec.Struct, frozen=True):
    """ρ admitted for one agent (``agent`` is None: the tenant's agents together) and UTC day, in
    the exact units the cap is checked in (:func:`collector.store.rules.rho_units`) and as ρ."""

    tenant: str
    agent: str | None
    day: str
    units: int
    rho: float


#: Who an HTTP API token speaks for: an operator reads every tenant, a viewer one tenant.
ApiRole = Literal["operator", "viewer"]
API_ROLES: tuple[ApiRole, ...] = get_args(ApiRole)


class ApiToken(msgspec.Struct, frozen=True):
    """A bearer token of the read-only HTTP API (issue 14). Only a SHA-256 of its secret is stored;
    ``tenant`` is set for a viewer and None for an operator."""

    token_id: str
    role: ApiRole
    tenant: str | None
    note: str
    created: float  # epoch seconds
    expires: float | None  # None: until revoked
    revoked: float | None = None
    secret_hash: bytes = b""  # left empty when listed


class AgentActivity(msgspec.Struct, frozen=True):
    """What the stored batches say about one agent: when its newest batch arrived, under which
    policy digest, and how many it sent."""

    tenant: str
    agent: str
    last_seq: int
    last_seen: float  # epoch seconds the newest (highest seq) batch was received
    policy: str  # the policy digest that batch declared
    batches: int


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

    reason: BatchReason
    retry_after: float | None = None


class Stale(msgspec.Struct, frozen=True, tag="stale"):
    """The tenant's limits in the transaction are not the ones the batch was checked against (the
    caller used a cached copy and the quota changed since): nothing stored; check it again."""


CommitOutcome = Accepted | Duplicate | Conflicting | CommitRefused | Stale


class Refusal(msgspec.Struct, frozen=True):
    """A refused submission (or enrollment: reasons ``enroll_*``), counted by tenant/day/reason and
    audited once per reason per minute."""

    tenant: str  # UNATTRIBUTED when unknown
    reason: RefusalReason
    agent: str | None = None
    seq: int | None = None
    key_id: str | None = None


class StoredRow(msgspec.Struct, frozen=True):
    """One released row as stored, with the batch it came from.

    ``stat`` is one of: ``count``, ``sum``, ``mean``, ``histogram`` (bucket in ``dims["bucket"]``),
    ``distinct_units``, or a quantile ``p50``/``p90``/``p99``…. ``mechanism`` is ``gaussian`` (scale =
    σ), ``laplace`` (scale = b) or ``derived`` (scale = approximate standard deviation of a value
    computed from other noisy values, e.g. mean = sum / count).
    """

    tenant: str
    agent: str
    seq: int
    window_start: str  # RFC 3339 UTC
    window_end: str
    metric: str
    stat: str
    dims: dict[str, str]
    value: float
    mechanism: str
    scale: float
    level: str = "window"  # "period": a period total (wire `level`); absent in older batches


class OutputRow(msgspec.Struct, frozen=True):
    """A released row with the id of its stored batch: what an output's cursor advances over."""

    batch_id: int
    row: StoredRow


class OutputPage(msgspec.Struct, frozen=True):
    """The next stored batches after a cursor and their rows; ``upto`` is the last batch id the page
    covers (also when its batches released no rows), ``after`` when there is nothing new."""

    upto: int
    rows: list[OutputRow]
    batches: list[BatchPrivacy] = []  # what each batch declared it spent, in id order
    nrows: list[int] = []  # rows per batch, same order (usage panels)
    ids: list[int] = []  # the batch ids, same order


class BatchPrivacy(msgspec.Struct, frozen=True):
    """The privacy spend a stored batch declared."""

    tenant: str
    agent: str
    seq: int
    window_start: str
    window_end: str
    unit: str
    epsilon: float | None
    delta: float | None
    rho: float | None


class UsageDay(msgspec.Struct, frozen=True):
    """Metering per tenant and UTC day; also the JSON form of ``hush-collector usage``."""

    tenant: str
    day: str  # YYYY-MM-DD
    batches: int
    rows: int
    bytes: int
    duplicates: int
    refused: dict[str, int]
    gaps: int


def usage_days(
    meter: Iterable[Sequence[Any]], refusals: Iterable[Sequence[Any]], gaps: Iterable[Sequence[Any]]
) -> list[UsageDay]:
    """Merge the three metering reads into one record per (tenant, day), sorted.

    ``meter`` rows are (tenant, day, batches, rows, bytes, duplicates); ``refusals`` rows (tenant,
    day, reason, count); ``gaps`` rows (tenant, day, open chain gaps). Shared by both stores.
    """
    days: dict[tuple[str, str], dict[str, Any]] = {}

    def slot(tenant: str, day: str) -> dict[str, Any]:
        return days.setdefault(
            (tenant, day), {"batches": 0, "rows": 0, "bytes": 0, "duplicates": 0, "refused": {}, "gaps": 0}
        )

    for t, d, batches, rows, nbytes, duplicates in meter:
        slot(t, d).update(batches=batches, rows=rows, bytes=nbytes, duplicates=duplicates)
    for t, d, reason, count in refusals:
        slot(t, d)["refused"][reason] = count
    for t, d, open_gaps in gaps:
        slot(t, d)["gaps"] = open_gaps
    return [
        UsageDay(
            t,
            d,
            v["batches"],
            v["rows"],
            v["bytes"],
            v["duplicates"],
            dict(sorted(v["refused"].items())),
            v["gaps"],
        )
        for (t, d), v in sorted(days.items())
    ]


# -- certified agents (issue 14 part 3) ----------------------------------------------------------

#: What a recorded certificate says today: ``valid``; ``expired`` (past its validity);
#: ``contradicted`` (batches received since it was issued declare another policy digest or more
#: spend than its caps); ``superseded`` (the agent has a newer certificate).
CertStatus = Literal["valid", "expired", "contradicted", "superseded"]


class CertificateRecord(msgspec.Struct, frozen=True):
    """A verified certificate as the store keeps it (``envelope``: the DSSE JSON as received)."""

    tenant: str
    agent: str
    key_id: str
    digest: str  # hex SHA-256 of the statement payload: the same certificate twice is one record
    profile: str
    policy_digest: str
    issued: float  # epoch seconds
    expires: float
    measure: str  # "rho" or "epsilon": what ``cap`` counts
    budget_period: str  # "day", "week" or "month"
    cap: float  # attested cap per budget period
    received: float
    envelope: bytes


class CertBatch(msgspec.Struct, frozen=True):
    """A stored batch of a certified agent, as the certificate checks read it."""

    seq: int
    policy: str
    window_start: float  # epoch seconds
    received: float
    rho: float | None
    epsilon: float | None


class CertDay(msgspec.Struct, frozen=True):
    """One UTC day (of window starts) of a certified agent's stored batches, summed by the store in
    one grouped query per read: what the certificate checks need, whatever the number of batches."""

    day: int  # whole days since the epoch of the batches' window starts
    since: bool  # a batch of that day was received at or after the certificate's issue time
    rho: float  # declared spend summed (a batch without one counts 0)
    epsilon: float
    other_policy: str | None  # the least digest other than the certified one, on batches since issue


class AgentCertificate(msgspec.Struct, frozen=True):
    """A recorded certificate with its status computed at read time (``reason`` says why)."""

    tenant: str
    agent: str
    key_id: str
    profile: str
    policy_digest: str
    issued: float
    expires: float
    status: CertStatus
    reason: str
    measure: str = "rho"
    budget_period: str = "day"
    cap: float = 0.0
    received: float = 0.0
