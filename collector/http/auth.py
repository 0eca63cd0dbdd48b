"""Who is asking: bearer tokens (``Authorization: Bearer …`` for the API, an HttpOnly cookie for the
dashboard) resolved to a :class:`Principal`, what each role may read, and the audit of denials.

Roles: an **operator** reads every tenant; a **viewer** reads one. A viewer naming another tenant is
refused 403 whether that tenant exists or not, so a viewer learns nothing about other tenants' names.
A missing, malformed, unknown, wrong, expired or revoked token is one 401 with one message.

Denied requests are **audit events** (``api.denied``), not metered refusals: the refusals table counts
batches and enrollments per tenant and feeds usage reports, while a denied read is an access event
an auditor looks for next to the token's creation. A flood of bad tokens must not flood the signed log,
so :class:`DeniedLog` writes at most one entry per (reason, token tenant) and minute, carrying how
many denials it stands for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec

from collector.errors import Unavailable
from collector.store import Store
from collector.store.records import ApiRole
from collector.store.tokens import opens, parse_token

__all__ = ["COOKIE", "DeniedLog", "Principal", "authenticate", "bearer", "may_read"]

log = logging.getLogger("hush.collector.http")

COOKIE = "hush_token"


class Principal(msgspec.Struct, frozen=True):
    token_id: str
    role: ApiRole
    tenant: str | None  # the viewer's tenant; None for an operator


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(store: Store, token: str | None, now: float) -> Principal | None:
    """The principal the token speaks for, or None (one answer for every kind of bad token)."""
    parsed = parse_token(token) if token else None
    if parsed is None:
        return None
    token_id, secret_hash = parsed
    record = await store.get_api_token(token_id)
    if not opens(record, secret_hash, now):
        return None
    assert record is not None  # opens() is False without a record
    return Principal(record.token_id, record.role, record.tenant)


def may_read(who: Principal, tenant: str) -> bool:
    return who.role == "operator" or who.tenant == tenant


class DeniedLog:
    """Audits denied requests as ``api.denied``, at most once per (reason, tenant) and minute."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._minute = -1
        self._pending: dict[tuple[str, str | None], int] = {}  # denials not yet in an entry
        self._written: set[tuple[str, str | None]] = set()  # keys with an entry this minute

    async def denied(self, reason: str, tenant: str | None, *, path: str, token_id: str | None) -> None:
        now = self._clock()
        minute = int(now // 60)
        if minute != self._minute:  # a new minute: every key may write again
            self._minute, self._written = minute, set()
        key = (reason, tenant)
        self._pending[key] = self._pending.get(key, 0) + 1
        if key in self._written:
            return
        self._written.add(key)
        count = self._pending.pop(key)
        details = {"reason": reason, "path": path[:200], "token_id": token_id, "count": count}
        try:
            await self._store.append_audit("api.denied", tenant, details, now=now)
        except Unavailable as exc:  # the answer to the client does not wait for the audit log
            log.warning("cannot audit a denied API request: %s", exc.message)
