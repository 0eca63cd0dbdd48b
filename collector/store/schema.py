"""The collector's relational schema as a versioned list of migrations (recorded in ``schema_version``).

Written in the SQL that SQLite and PostgreSQL share; a store applies each migration above its
current version in one transaction. Never edit a released migration: append a new one.
"""

from __future__ import annotations

from collector.store.records import BatchCommit, Quota
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "BATCH_COLUMNS",
    "CERT_COLUMNS",
    "CERT_NEWEST",
    "KEY_COLUMNS",
    "MIGRATIONS",
    "QUOTA_FIELDS",
    "batch_values",
    "statements",
]

# Column vocabulary both store implementations share.
QUOTA_FIELDS: tuple[str, ...] = Quota.__struct_fields__[1:]  # every limit, without the tenant
KEY_COLUMNS = "key_id, tenant, agent, public_key, state, added, retired_at, revoked_at"
BATCH_COLUMNS = (
    "tenant, agent, seq, key_id, digest, prev, created, received, window_start, "
    "window_end, window_start_epoch, policy, unit, epsilon, delta, rho, nbytes, nrows"
)


#: ``c`` is its agent's newest certificate (:func:`collector.certs.newest`'s order: issue time,
#: then receipt, newest first, then the least digest), the one whose status reads batches.
CERT_NEWEST = (
    "NOT EXISTS (SELECT 1 FROM certificates n WHERE n.tenant = c.tenant AND n.agent = c.agent AND "
    "(n.issued > c.issued OR (n.issued = c.issued AND (n.received > c.received "
    "OR (n.received = c.received AND n.digest < c.digest)))))"
)
CERT_COLUMNS = (
    "tenant, agent, digest, key_id, profile, policy_digest, issued, expires, measure, budget_period, cap, "
    "received, envelope"
)


def batch_values(b: BatchCommit, received: float) -> tuple[object, ...]:
    """The values of :data:`BATCH_COLUMNS` for one batch, in order."""
    return (
        b.tenant, b.agent, b.seq, b.key_id, b.digest, b.prev, b.created, received,
        b.window_start, b.window_end, parse_rfc3339(b.window_start), b.policy, b.unit,
        b.epsilon, b.delta, b.rho, b.nbytes, len(b.rows),
    )  # fmt: skip


_V1 = """
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'deleted')),
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (name),
    agent TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'retired', 'revoked')),
    added DOUBLE PRECISION NOT NULL,
    retired_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX keys_by_tenant ON keys (tenant, agent);
CREATE TABLE enroll_tokens (
    token_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (name),
    secret_hash BYTEA NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION,
    key_id TEXT
);
CREATE TABLE quotas (
    tenant TEXT PRIMARY KEY REFERENCES tenants (name),
    batches_per_second DOUBLE PRECISION,
    burst BIGINT,
    rows_per_day BIGINT,
    rows_per_month BIGINT,
    bytes_per_day BIGINT,
    max_batch_bytes BIGINT,
    max_age_seconds BIGINT
);
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    seq BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    prev TEXT NOT NULL,
    created TEXT NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    window_start_epoch DOUBLE PRECISION NOT NULL,
    policy TEXT NOT NULL,
    unit TEXT NOT NULL,
    epsilon DOUBLE PRECISION,
    delta DOUBLE PRECISION,
    rho DOUBLE PRECISION,
    nbytes BIGINT NOT NULL,
    nrows BIGINT NOT NULL,
    UNIQUE (tenant, agent, seq)
);
CREATE INDEX batches_by_window ON batches (tenant, window_start_epoch);
CREATE TABLE batch_rows (
    batch_id BIGINT NOT NULL REFERENCES batches (id),
    metric TEXT NOT NULL,
    stat TEXT NOT NULL,
    dims TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    mechanism TEXT NOT NULL,
    scale DOUBLE PRECISION NOT NULL
);
CREATE INDEX batch_rows_by_batch ON batch_rows (batch_id);
CREATE TABLE meter_day (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    batches BIGINT NOT NULL DEFAULT 0,
    rows BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    duplicates BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
CREATE TABLE meter_month (
    tenant TEXT NOT NULL,
    month TEXT NOT NULL,
    rows BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, month)
);
CREATE TABLE refusals (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day, reason)
);
CREATE TABLE refusal_minutes (
    tenant TEXT NOT NULL,
    minute BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (tenant, minute, reason)
);
CREATE TABLE chain_events (
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('gap', 'fork')),
    day TEXT NOT NULL,
    resolved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, agent, seq, kind)
);
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE audit (
    i BIGINT PRIMARY KEY,
    ts TEXT NOT NULL,
    action TEXT NOT NULL,
    tenant TEXT,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    sig TEXT NOT NULL
)
"""

# v2: an enrollment token may be bound to one agent id, and only a rotation token (``rotate``) may
# enroll a further key for an agent that already has one.
_V2 = """
ALTER TABLE enroll_tokens ADD COLUMN agent TEXT;
ALTER TABLE enroll_tokens ADD COLUMN rotate INTEGER NOT NULL DEFAULT 0
"""

# v3: one durable cursor per output (Prometheus remote-write, OTLP export): the id of the last batch
# it delivered, so an outage of the receiver loses nothing and a restart resends nothing.
_V3 = """
CREATE TABLE output_cursors (
    name TEXT PRIMARY KEY,
    batch_id BIGINT NOT NULL,
    updated DOUBLE PRECISION NOT NULL
)
"""


# v4 (issue 14, central governance): the policy digests each tenant approved (a revoked approval stays,
# stored batches name it), the tenant's central privacy cap, and the ρ admitted per agent and UTC day
# of the batches' windows, in integer units of 1e-12 ρ so that concurrent admissions add up exactly
# (``agent`` '' is the tenant's agents together).
_V4 = """
CREATE TABLE policies (
    tenant TEXT NOT NULL REFERENCES tenants (name),
    digest TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('approved', 'revoked')),
    note TEXT NOT NULL,
    approved DOUBLE PRECISION NOT NULL,
    revoked DOUBLE PRECISION,
    PRIMARY KEY (tenant, digest)
);
CREATE TABLE privacy_caps (
    tenant TEXT PRIMARY KEY REFERENCES tenants (name),
    rho_per_day DOUBLE PRECISION NOT NULL,
    per TEXT NOT NULL CHECK (per IN ('agent', 'tenant'))
);
CREATE TABLE privacy_spend (
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    day TEXT NOT NULL,
    units BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, agent, day)
)
"""

# v5: a row's release level (issue 15): "period" for a period total, "window" for everything else
# (and for every row stored before: older batches carry no level).
_V5 = """
ALTER TABLE batch_rows ADD COLUMN level TEXT NOT NULL DEFAULT 'window'
"""

# v6 (issue 14 part 3, certified agents): the certificates agents submitted, verified, one row per
# distinct statement (``digest``: SHA-256 of its payload); the status is computed when read, from the
# batches table through its (tenant, agent, seq) key: no index is added to batches, so ingest pays nothing.
_V6 = """
CREATE TABLE certificates (
    tenant TEXT NOT NULL REFERENCES tenants (name),
    agent TEXT NOT NULL,
    digest TEXT NOT NULL,
    key_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    policy_digest TEXT NOT NULL,
    issued DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    measure TEXT NOT NULL,
    budget_period TEXT NOT NULL,
    cap DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    envelope BYTEA NOT NULL,
    PRIMARY KEY (tenant, agent, digest)
);
CREATE INDEX certificates_by_issued ON certificates (tenant, agent, issued)
"""

# v7 (issue 14, HTTP API): bearer tokens of the read-only API, operator (all tenants) or viewer (one
# tenant); only a SHA-256 of each token's secret is kept. Needs nothing above v1, so it applies whether
# or not v6 exists.
_V7 = """
CREATE TABLE api_tokens (
    token_id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('operator', 'viewer')),
    tenant TEXT REFERENCES tenants (name),
    secret_hash BYTEA NOT NULL,
    note TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION,
    revoked DOUBLE PRECISION,
    CHECK ((role = 'viewer') = (tenant IS NOT NULL))
)
"""

MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _V2), (3, _V3), (4, _V4), (5, _V5), (6, _V6), (7, _V7)]


def statements(script: str) -> list[str]:
    """Split a migration into statements (the schema holds no semicolons inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
