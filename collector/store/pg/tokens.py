"""What the read-only HTTP API (issue 14) needs from PostgreSQL beyond the reports' reads: its bearer
tokens, each agent's newest batch, and the tail of the audit log. The same statements and results as
:mod:`collector.store.sqlite.tokens`, in ``$n`` parameters.
"""

from __future__ import annotations

from typing import Any

from collector.store.pg.reads import Fetch
from collector.store.records import AgentActivity, ApiToken

__all__ = [
    "TOKEN_COLUMNS",
    "activity",
    "api_token",
    "audit_tail_sql",
    "insert_token",
    "list_tokens",
    "revoke",
]

Connection = Any  # asyncpg ships no type information
TOKEN_COLUMNS = "token_id, role, tenant, note, created, expires, revoked, secret_hash"


def _token(r: Any, *, with_hash: bool) -> ApiToken:
    return ApiToken(
        str(r[0]), r[1], r[2], str(r[3]), float(r[4]), r[5], r[6], bytes(r[7]) if with_hash else b""
    )


async def api_token(db: Connection, token_id: str) -> ApiToken | None:
    row = await db.fetchrow(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_id = $1", token_id)
    return _token(row, with_hash=True) if row is not None else None


async def insert_token(db: Connection, t: ApiToken) -> None:
    await db.execute(
        "INSERT INTO api_tokens (token_id, role, tenant, note, created, expires, revoked, secret_hash) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        t.token_id, t.role, t.tenant, t.note, t.created, t.expires, t.revoked, t.secret_hash,
    )  # fmt: skip


async def revoke(db: Connection, token_id: str, now: float) -> None:
    await db.execute("UPDATE api_tokens SET revoked = $1 WHERE token_id = $2", now, token_id)


async def list_tokens(fetch: Fetch) -> list[ApiToken]:
    rows = await fetch(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created, token_id")
    return [_token(r, with_hash=False) for r in rows]


async def activity(fetch: Fetch, tenant: str) -> list[AgentActivity]:
    """Per agent of ``tenant``: its highest-seq batch (received when, under which policy) and count."""
    rows = await fetch(
        "SELECT b.agent, b.seq, b.received, b.policy, m.n FROM batches b JOIN "
        "(SELECT agent, MAX(seq) AS top, COUNT(*) AS n FROM batches WHERE tenant = $1 GROUP BY agent) m "
        "ON b.agent = m.agent AND b.seq = m.top WHERE b.tenant = $1 ORDER BY b.agent",
        tenant,
    )
    return [AgentActivity(tenant, str(r[0]), int(r[1]), float(r[2]), str(r[3]), int(r[4])) for r in rows]


def audit_tail_sql(tenant: str | None, limit: int) -> tuple[str, tuple[Any, ...]]:
    """The newest ``limit`` audit entries (of ``tenant`` when given), newest first."""
    if tenant is None:
        return "SELECT i, ts, action, tenant, details, prev, hash, sig FROM audit ORDER BY i DESC LIMIT $1", (
            limit,
        )
    return (
        "SELECT i, ts, action, tenant, details, prev, hash, sig FROM audit WHERE tenant = $1 "
        "ORDER BY i DESC LIMIT $2",
        (tenant, limit),
    )
