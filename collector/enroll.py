"""One-time enrollment tokens: ``hmt_<id>_<secret>``. Only the SHA-256 of the secret is stored.

The id finds the row; the secret's hash is compared in constant time by the store. A token may be
bound to one agent id; a key for an agent that already has one is enrolled only with a token that
says so (``rotate``), so a token holder cannot add a key to someone else's agent.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from collector.errors import NotFound
from collector.store import KeyRecord, Store
from hushmetric.errors import ContractError
from hushmetric.keys import PUBLIC_KEY_BYTES, parse_public_key, public_key_b64

__all__ = ["TOKEN_PATTERN", "issue_token", "parse_token", "redeem"]

TOKEN_PATTERN = re.compile(r"^hmt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_AGENT = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def parse_token(token: str) -> tuple[str, bytes]:
    """``(token_id, sha256(secret))``; NotFound for anything that is not a token (learns nothing)."""
    match = TOKEN_PATTERN.match(token.strip())
    if match is None:
        raise NotFound("enroll token", "(malformed)")
    return match.group(1), hashlib.sha256(match.group(2).encode("ascii")).digest()


async def issue_token(
    store: Store,
    tenant: str,
    *,
    ttl_seconds: int,
    now: float,
    agent: str | None = None,
    rotate: bool = False,
) -> str:
    """A new token for ``tenant``. Bound to ``agent`` when given (then only that agent id can use
    it); ``rotate`` (which needs ``agent``) lets it add a key to an agent that already has one —
    without it, a token holder can never add a key to an existing agent."""
    if agent is not None and not _AGENT.match(agent):
        raise ContractError("agent id must be 1..128 characters of [A-Za-z0-9._:@-]")
    if rotate and agent is None:
        raise ContractError("a rotation token must be bound to an agent id")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode("ascii")).digest()
    await store.create_enroll_token(
        tenant, token_id, digest, expires=now + ttl_seconds, now=now, agent=agent, rotate=rotate
    )
    return f"hmt_{token_id}_{secret}"


async def redeem(store: Store, token: str, agent: str, public_key: bytes, *, now: float) -> KeyRecord:
    """Validate the request, then atomically use the token and register the key."""
    if not _AGENT.match(agent):
        raise ContractError("agent id must be 1..128 characters of [A-Za-z0-9._:@-]")
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ContractError(f"public key must be {PUBLIC_KEY_BYTES} raw bytes")
    parse_public_key(public_key_b64(public_key))  # a valid Ed25519 point
    token_id, digest = parse_token(token)
    return await store.redeem_enroll_token(token_id, digest, agent, public_key, now=now)
