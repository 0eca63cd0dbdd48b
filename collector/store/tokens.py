"""Decisions about the HTTP API's bearer tokens (issue 14), shared by both stores: who may hold one,
revoking it, and whether a presented secret opens it. Pure: records in, records or errors out.

A token is ``hmu_<id>_<secret>``: the id finds the row, the 32-byte secret is checked against the
stored SHA-256 in constant time (the id alone opens nothing, and a wrong secret takes as long as a
right one). Token creation and revocation are audited by the stores (``api_token.create``,
``api_token.revoke``) in the same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

import msgspec

from collector.audit import Detail
from collector.errors import Conflict, NotFound
from collector.store.records import ApiToken, Tenant
from hushmetric.timefmt import format_rfc3339

__all__ = [
    "PREFIX",
    "hash_secret",
    "new_token",
    "opens",
    "parse_token",
    "token_creation",
    "token_doc",
    "token_revocation",
]

PREFIX = "hmu_"
_SHAPE = re.compile(r"^hmu_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def new_token() -> tuple[str, str, bytes]:
    """(token id, the whole token to hand out once, the SHA-256 of its secret to store)."""
    token_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return token_id, f"{PREFIX}{token_id}_{secret}", hash_secret(secret)


def parse_token(text: str) -> tuple[str, bytes] | None:
    """(token id, SHA-256 of the secret) of a well-formed token, else None."""
    m = _SHAPE.match(text.strip())
    return (m.group(1), hash_secret(m.group(2))) if m else None


def opens(token: ApiToken | None, secret_hash: bytes, now: float) -> bool:
    """Whether the presented secret opens ``token`` now (not revoked, not expired)."""
    stored = token.secret_hash if token is not None else b"\0" * 32
    same = hmac.compare_digest(stored, secret_hash)  # compared even for an unknown id: same work
    if token is None or not same or token.revoked is not None:
        return False
    return token.expires is None or now < token.expires


def token_creation(tenant: Tenant | None, token: ApiToken) -> dict[str, Detail]:
    """The audit details of a new token; NotFound/Conflict when a viewer's tenant cannot hold one."""
    if token.role == "viewer":
        if token.tenant is None:
            raise Conflict("a viewer token needs a tenant")
        if tenant is None:
            raise NotFound("tenant", token.tenant)
        if tenant.state == "deleted":
            raise Conflict(f"tenant {token.tenant!r} is deleted")
    elif token.tenant is not None:
        raise Conflict("an operator token reads every tenant; give no tenant")
    return {"token_id": token.token_id, "role": token.role, "expires": token.expires, "note": token.note}


def token_revocation(
    existing: ApiToken | None, token_id: str, now: float
) -> tuple[ApiToken, dict[str, Detail]]:
    if existing is None:
        raise NotFound("API token", token_id)
    if existing.revoked is not None:
        raise Conflict(f"API token {token_id} is already revoked")
    revoked = msgspec.structs.replace(existing, revoked=now, secret_hash=b"")
    return revoked, {"token_id": token_id, "role": existing.role}


def token_doc(t: ApiToken) -> dict[str, object]:
    """A token as listed (never its hash)."""
    return {
        "id": t.token_id,
        "role": t.role,
        "tenant": t.tenant,
        "note": t.note,
        "created": format_rfc3339(t.created),
        "expires": format_rfc3339(t.expires) if t.expires is not None else None,
        "revoked": format_rfc3339(t.revoked) if t.revoked is not None else None,
    }
