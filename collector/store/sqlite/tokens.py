"""What the read-only HTTP API (issue 14) needs from SQLite beyond the reports' reads: its bearer
tokens, each agent's newest batch, and the tail of the audit log. The decisions are
:mod:`collector.store.rules`'; the PostgreSQL twin is :mod:`collector.store.pg.tokens`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiosqlite

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

Read = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
TOKEN_COLUMNS = "token_id, role, tenant, note, created, expires, revoked, secret_hash"


def _token(r: Any, *, with_hash: bool) -> ApiToken:
    return ApiToken(
        str(r[0]), r[1], r[2], str(r[3]), float(r[4]), r[5], r[6], bytes(r[7]) if with_hash else b""
    )


async def api_token(db: aiosqlite.Connection, token_id: str) -> ApiToken | None:
    rows = list(
        await db.execute_fetchall(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_id = ?", (token_id,))
    )
    return _token(rows[0], with_hash=True) if rows else None


async def insert_token(db: aiosqlite.Connection, t: ApiToken) -> None:
    await db.execute(
        "INSERT INTO api_tokens (token_id, role, tenant, note, created, expires, revoked, secret_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (t.token_id, t.role, t.tenant, t.note, t.created, t.expires, t.revoked, t.secret_hash),
    )


async def revoke(db: aiosqlite.Connection, token_id: str, now: float) -> None:
    await db.execute("UPDATE api_tokens SET revoked = ? WHERE token_id = ?", (now, token_id))


async def list_tokens(read: Read) -> list[ApiToken]:
    rows = await read(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created, token_id", ())
    return [_token(r, with_hash=False) for r in rows]


async def activity(read: Read, tenant: str) -> list[AgentActivity]:
    """Per agent of ``tenant``: its highest-seq batch (received when, under which policy) and count."""
    rows = await read(
        "SELECT b.agent, b.seq, b.received, b.policy, m.n FROM batches b JOIN "
        "(SELECT agent, MAX(seq) AS top, COUNT(*) AS n FROM batches WHERE tenant = ? GROUP BY agent) m "
        "ON b.agent = m.agent AND b.seq = m.top WHERE b.tenant = ? ORDER BY b.agent",
        (tenant, tenant),
    )
    return [AgentActivity(tenant, str(r[0]), int(r[1]), float(r[2]), str(r[3]), int(r[4])) for r in rows]


def audit_tail_sql(tenant: str | None, limit: int) -> tuple[str, tuple[Any, ...]]:
    """The newest ``limit`` audit entries (of ``tenant`` when given), newest first."""
    where, params = ("WHERE tenant = ? ", (tenant,)) if tenant is not None else ("", ())
    return (
        f"SELECT i, ts, action, tenant, details, prev, hash, sig FROM audit {where}ORDER BY i DESC LIMIT ?",
        (*params, limit),
    )
