"""Privacy attestations: a statement, signed with the agent's key, of what this agent released under
which policy — evidence a customer can hand to an auditor.

The statement holds the policy's name and digest, the budget spent and left per period, and the
egress ledger's size and head hash. Every figure in it is a function of public parameters (policy,
clock, declared range) or of released DP outputs: the ledger's charges follow the fixed window
schedule, and the egress figures count batches and bytes that already left. It carries no exact,
data-dependent count: redaction totals stay local (``redaction_totals`` below feeds ``status``);
a statement signed by an older agent may still hold a ``redactions`` map, which is ignored. It is a
DSSE JSON envelope (payloadType ``application/vnd.hushmetric.attestation.v1+json``), so anyone with
the agent's public key can verify it offline (``hush-agent attest --verify FILE --public-key B64``),
and the egress head ties it to the ledger the auditor can also be shown.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

import msgspec
import nacl.signing

from agent import egress, ledger
from agent.policy import Policy, policy_digest
from hushmetric import dsse
from hushmetric.errors import ContractError
from hushmetric.keys import key_id
from hushmetric.timefmt import format_rfc3339

__all__ = [
    "ATTESTATION_PAYLOAD_TYPE",
    "SCHEMA",
    "Attestation",
    "add_redactions",
    "build",
    "redaction_totals",
    "sign",
    "verify",
]

ATTESTATION_PAYLOAD_TYPE = "application/vnd.hushmetric.attestation.v1+json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS redaction_totals (
    detector TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
"""


class PolicyInfo(msgspec.Struct, frozen=True):
    name: str
    digest: str
    mechanism: str
    period: str
    cap: float


class PeriodSpend(msgspec.Struct, frozen=True):
    period: str
    spent: float
    cap: float
    left: float
    delta: float
    releases: int
    refusals: int


class EgressInfo(msgspec.Struct, frozen=True):
    entries: int
    head: str
    batches: int
    bytes: int
    rows: int
    stopped: bool


class Attestation(msgspec.Struct, frozen=True):
    v: int
    tenant: str
    agent: str
    key_id: str
    created: str
    policy: PolicyInfo
    periods: list[PeriodSpend]
    egress: EgressInfo


def add_redactions(conn: sqlite3.Connection, counts: Mapping[str, int]) -> None:
    """Add findings per detector to the running totals (in the caller's transaction)."""
    conn.executemany(
        "INSERT INTO redaction_totals (detector, count) VALUES (?, ?) "
        "ON CONFLICT (detector) DO UPDATE SET count = count + excluded.count",
        [(k, int(v)) for k, v in counts.items() if v],
    )


def redaction_totals(conn: sqlite3.Connection) -> dict[str, int]:
    """Findings per detector since the state was created: local only, never in a statement."""
    return {
        str(k): int(v) for k, v in conn.execute("SELECT detector, count FROM redaction_totals ORDER BY 1")
    }


def build(
    conn: sqlite3.Connection, policy: Policy, *, tenant: str, agent: str, public_key: bytes, now: float
) -> Attestation:
    entries = egress.entries(conn)
    count, head = egress.head(conn)
    sent = [e for e in entries if e.kind == "batch"]
    return Attestation(
        v=1,
        tenant=tenant,
        agent=agent,
        key_id=key_id(public_key),
        created=format_rfc3339(now),
        policy=PolicyInfo(
            policy.name,
            policy_digest(policy),
            policy.budget.mechanism,
            policy.budget.period,
            ledger.cap_of(policy),
        ),
        periods=[
            PeriodSpend(p.period, p.spent, p.cap, p.left, p.delta, p.releases, p.refusals)
            for p in ledger.summary(conn, policy)
        ],
        egress=EgressInfo(
            entries=count,
            head=head,
            batches=len(sent),
            bytes=sum(e.nbytes for e in sent),
            rows=sum(e.rows for e in sent),
            stopped=egress.is_stopped(conn),
        ),
    )


def sign(attestation: Attestation, key: nacl.signing.SigningKey) -> bytes:
    """The DSSE JSON envelope of the statement."""
    payload = msgspec.json.encode(attestation)
    return dsse.to_json(dsse.sign(payload, ATTESTATION_PAYLOAD_TYPE, key))


def verify(data: bytes, public_key: bytes) -> Attestation:
    """Verify an attestation file against the agent's public key; ContractError/SignatureError if not."""
    envelope = dsse.from_json(data, max_bytes=16 << 20)
    wanted = key_id(public_key)
    verified = dsse.verify(
        envelope, ATTESTATION_PAYLOAD_TYPE, lambda kid: public_key if kid == wanted else None
    )
    try:
        return msgspec.json.decode(verified.payload, type=Attestation)
    except msgspec.DecodeError as exc:
        raise ContractError(f"malformed attestation: {exc}") from exc
