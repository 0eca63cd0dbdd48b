"""The collector's closed vocabularies, as ``Literal`` types the store, ingest, importer and reports share.

A ``Literal`` (not an enum) because the values are also the strings stored in the database, shown in
reports and sent as ``hush-reason`` metadata: the type checker holds callers to the list, and nothing
converts at the boundaries. Each tuple below is the run-time list of its type (``typing.get_args``),
checked against it by the unit tests.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "BATCH_REASONS",
    "ENROLL_REASONS",
    "IMPORT_REASONS",
    "KNOWN_MECHANISMS",
    "ROW_STATS",
    "BatchReason",
    "EnrollReason",
    "ImportReason",
    "KeyState",
    "Mechanism",
    "RefusalReason",
    "RowStat",
    "TenantState",
]

TenantState = Literal["active", "suspended", "deleted"]
KeyState = Literal["active", "retired", "revoked"]

#: Why a batch was refused (online ingest and import); each maps to one gRPC status (collector.ingest).
BatchReason = Literal[
    "malformed",
    "payload_type",
    "too_large",
    "bad_signature",
    "unknown_key",
    "revoked_key",
    "retired_key",
    "tenant_suspended",
    "tenant_deleted",
    "tenant_mismatch",
    "agent_mismatch",
    "signer_mismatch",
    "conflict",
    "future_dated",
    "too_old",
    "rate_limited",
    "quota_rows_day",
    "quota_rows_month",
    "quota_bytes_day",
]
#: Why a bundle (or one of its entries) was refused on import, beyond the batch reasons.
ImportReason = Literal[
    "bundle_malformed",
    "bundle_bad_signature",
    "bundle_unknown_key",
    "bundle_revoked_key",
    "bundle_mismatch",
    "bundle_hash_mismatch",
]
#: Why an enrollment failed (audited as ``enroll.refused``).
EnrollReason = Literal["enroll_rate_limited", "enroll_malformed", "enroll_token", "enroll_conflict"]
#: Everything counted in the ``refusals`` table and shown in usage.
RefusalReason = BatchReason | ImportReason | EnrollReason

#: The statistics of released rows, besides quantiles named ``p50``, ``p90``, ``p99.9``… (a histogram
#: row carries its bucket in ``dims["bucket"]``). Stored rows may carry another name; reports skip it.
RowStat = Literal["count", "sum", "mean", "histogram", "distinct_units"]

#: Noise mechanisms the reports know how to turn into intervals. Stored rows may carry another name
#: (the wire allows any short string); the reports then note it and treat the scale as a std.
Mechanism = Literal["gaussian", "laplace", "derived"]

BATCH_REASONS: tuple[BatchReason, ...] = get_args(BatchReason)
IMPORT_REASONS: tuple[ImportReason, ...] = get_args(ImportReason)
ENROLL_REASONS: tuple[EnrollReason, ...] = get_args(EnrollReason)
KNOWN_MECHANISMS: frozenset[str] = frozenset(get_args(Mechanism))
ROW_STATS: tuple[RowStat, ...] = get_args(RowStat)
