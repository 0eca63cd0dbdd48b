"""API tokens in both stores (schema v7): create/revoke audited, viewer/operator rules, the secret
check, and the agent-activity and audit-tail reads the HTTP API uses."""

from __future__ import annotations

import pytest

from collector.errors import Conflict, NotFound
from collector.store import ApiToken, Store
from collector.store.tokens import new_token, opens, parse_token
from tests.collector.collector_testkit import Agent, Clock, Server


def _token(role: str, tenant: str | None, expires: float | None, now: float) -> tuple[ApiToken, str]:
    token_id, secret, digest = new_token()
    return ApiToken(token_id, role, tenant, "note", now, expires, None, digest), secret  # type: ignore[arg-type]


async def test_create_check_revoke(store: Store, acme: Agent, clock: Clock) -> None:
    viewer, secret = _token("viewer", "acme", clock() + 3600, clock())
    created = await store.create_api_token(viewer, now=clock())
    assert created.secret_hash == b""  # never handed back
    stored = await store.get_api_token(viewer.token_id)
    assert stored is not None
    assert stored.role == "viewer"
    assert stored.tenant == "acme"
    parsed = parse_token(secret)
    assert parsed is not None
    assert parsed[0] == viewer.token_id
    assert opens(stored, parsed[1], clock())
    assert not opens(stored, parsed[1], clock() + 3600)  # expired
    _, other_secret = _token("viewer", "acme", None, clock())
    other = parse_token(other_secret)
    assert other is not None
    assert not opens(stored, other[1], clock())
    assert [t.token_id for t in await store.list_api_tokens()] == [viewer.token_id]
    assert all(t.secret_hash == b"" for t in await store.list_api_tokens())

    revoked = await store.revoke_api_token(viewer.token_id, now=clock())
    assert revoked.revoked == clock()
    again = await store.get_api_token(viewer.token_id)
    assert again is not None
    assert not opens(again, parsed[1], clock())
    with pytest.raises(Conflict, match="already revoked"):
        await store.revoke_api_token(viewer.token_id, now=clock())
    with pytest.raises(NotFound):
        await store.revoke_api_token("0" * 16, now=clock())
    actions = [e.action for e in await store.audit_entries()]
    assert actions[-2:] == ["api_token.create", "api_token.revoke"]
    assert all(secret not in str(e.details) for e in await store.audit_entries())


async def test_who_may_hold_a_token(store: Store, acme: Agent, clock: Clock) -> None:
    with pytest.raises(NotFound):
        await store.create_api_token(_token("viewer", "nope", None, clock())[0], now=clock())
    with pytest.raises(Conflict):
        await store.create_api_token(_token("viewer", None, None, clock())[0], now=clock())
    with pytest.raises(Conflict):
        await store.create_api_token(_token("operator", "acme", None, clock())[0], now=clock())
    await store.set_tenant_state("acme", "deleted", now=clock())
    with pytest.raises(Conflict, match="deleted"):
        await store.create_api_token(_token("viewer", "acme", None, clock())[0], now=clock())
    operator = await store.create_api_token(_token("operator", None, None, clock())[0], now=clock())
    assert operator.tenant is None
    assert [t.role for t in await store.list_api_tokens()] == ["operator"]  # refusals left nothing


def test_malformed_tokens_never_parse() -> None:
    _, secret, _ = new_token()
    assert parse_token(secret) is not None
    for bad in ("", "hmu_", secret[:-1], secret + "x", secret.replace("hmu_", "hmx_"), "Bearer " + secret):
        assert parse_token(bad) is None
    assert not opens(None, b"\0" * 32, 0.0)


async def test_agent_activity_and_audit_tail(store: Store, acme: Agent, server: Server, clock: Clock) -> None:
    assert await store.agent_activity("acme") == []
    for _ in range(3):
        await server.submit(acme.next(rows=2))
    [a1] = await store.agent_activity("acme")
    assert (a1.agent, a1.last_seq, a1.batches, a1.last_seen) == ("a1", 3, 3, clock())
    assert len(a1.policy) == 64
    await store.create_tenant("other", now=clock())
    tail = await store.audit_tail(2)
    assert [e.action for e in tail] == ["tenant.create", "key.add"]  # newest first
    assert [e.tenant for e in await store.audit_tail(10, "acme")] == ["acme", "acme"]
    assert await store.audit_tail(5, "nobody") == []
