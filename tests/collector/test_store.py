"""The Store contract, run against every store kind (the ``store`` fixture)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import nacl.signing
import pytest

from collector import enroll
from collector.errors import Conflict, NotFound
from collector.ingest import Rejected, Stored, ingest
from collector.store import Quota, Store
from collector.store.schema import MIGRATIONS
from collector.store.sqlite.store import SqliteStore
from hushmetric.batch import Noise, Row
from hushmetric.errors import ContractError
from tests import batchkit
from tests.collector.collector_testkit import Agent, Clock


async def test_tenant_lifecycle(store: Store, clock: Clock) -> None:
    await store.create_tenant("acme", now=clock())
    with pytest.raises(Conflict):
        await store.create_tenant("acme", now=clock())
    assert (await store.set_tenant_state("acme", "suspended", now=clock())).state == "suspended"
    assert (await store.set_tenant_state("acme", "active", now=clock())).state == "active"
    assert (await store.set_tenant_state("acme", "deleted", now=clock())).state == "deleted"
    with pytest.raises(Conflict):
        await store.set_tenant_state("acme", "active", now=clock())
    with pytest.raises(Conflict):
        await store.create_tenant("acme", now=clock())
    with pytest.raises(NotFound):
        await store.set_tenant_state("nope", "suspended", now=clock())
    assert [(t.name, t.state) for t in await store.list_tenants()] == [("acme", "deleted")]
    actions = [e.action for e in await store.audit_entries()]
    assert actions == ["tenant.create", "tenant.suspend", "tenant.resume", "tenant.delete"]


async def test_key_registry(store: Store, clock: Clock) -> None:
    agent = Agent("acme", "a1")
    with pytest.raises(NotFound):
        await store.add_key("acme", "a1", agent.public_key, now=clock())
    await store.create_tenant("acme", now=clock())
    record = await store.add_key("acme", "a1", agent.public_key, now=clock())
    assert record.key_id == agent.key_id
    assert record.state == "active"
    with pytest.raises(Conflict):
        await store.add_key("acme", "a2", agent.public_key, now=clock())
    clock.now += 10
    retired = await store.set_key_state(agent.key_id, "retired", now=clock())
    assert retired.state == "retired"
    assert retired.retired_at == clock.now
    revoked = await store.set_key_state(agent.key_id, "revoked", now=clock())
    assert revoked.state == "revoked"
    with pytest.raises(Conflict):
        await store.set_key_state(agent.key_id, "retired", now=clock())
    with pytest.raises(NotFound):
        await store.set_key_state("0" * 64, "revoked", now=clock())
    got = await store.get_key(agent.key_id)
    assert got is not None
    assert got.tenant == "acme"
    assert got.agent == "a1"
    assert got.public_key == agent.public_key
    assert [k.key_id for k in await store.list_keys("acme")] == [agent.key_id]
    assert await store.list_keys("other") == []
    await store.set_tenant_state("acme", "suspended", now=clock())
    with pytest.raises(Conflict):
        await store.add_key("acme", "a3", Agent("acme", "a3").public_key, now=clock())


async def test_enroll_token_is_one_time_and_stored_hashed(store: Store, clock: Clock, tmp_path: Path) -> None:
    await store.create_tenant("acme", now=clock())
    token = await enroll.issue_token(store, "acme", ttl_seconds=3600, now=clock())
    agent = Agent("acme", "a9")
    record = await enroll.redeem(store, token, "a9", agent.public_key, now=clock())
    assert (record.tenant, record.agent, record.key_id) == ("acme", "a9", agent.key_id)
    with pytest.raises(NotFound):
        await enroll.redeem(store, token, "a10", Agent("acme", "a10").public_key, now=clock())
    secret = token.rsplit("_", 1)[1].encode()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("collector.db*"))
    assert secret not in raw


async def test_enroll_tokens_bound_to_an_agent_and_rotation(store: Store, clock: Clock) -> None:
    """Issue 10: a token holder cannot add a key to an existing agent unless the token says so."""
    await store.create_tenant("acme", now=clock())
    first, intruder, second, third = (Agent("acme", "edge-1") for _ in range(4))
    bound = await enroll.issue_token(store, "acme", ttl_seconds=3600, now=clock(), agent="edge-1")
    with pytest.raises(NotFound):  # bound to edge-1: another agent id learns nothing
        await enroll.redeem(store, bound, "edge-2", Agent("acme", "edge-2").public_key, now=clock())
    assert (await enroll.redeem(store, bound, "edge-1", first.public_key, now=clock())).agent == "edge-1"
    anyone = await enroll.issue_token(store, "acme", ttl_seconds=3600, now=clock())
    with pytest.raises(Conflict, match="already has a key"):  # an unbound token cannot add a second key
        await enroll.redeem(store, anyone, "edge-1", intruder.public_key, now=clock())
    again = await enroll.issue_token(store, "acme", ttl_seconds=3600, now=clock(), agent="edge-1")
    with pytest.raises(Conflict):  # bound to the agent, but not a rotation token
        await enroll.redeem(store, again, "edge-1", intruder.public_key, now=clock())
    # the refused tokens were not used up: the unbound one still enrolls a new agent
    assert (
        await enroll.redeem(store, anyone, "edge-3", Agent("acme", "edge-3").public_key, now=clock())
    ).agent
    rotation = await enroll.issue_token(
        store, "acme", ttl_seconds=3600, now=clock(), agent="edge-1", rotate=True
    )
    assert (
        await enroll.redeem(store, rotation, "edge-1", second.public_key, now=clock())
    ).key_id == second.key_id
    with pytest.raises(NotFound):  # one-time, like every token
        await enroll.redeem(store, rotation, "edge-1", third.public_key, now=clock())
    keys = [(k.agent, k.key_id) for k in await store.list_keys("acme") if k.agent == "edge-1"]
    assert sorted(keys) == sorted([("edge-1", first.key_id), ("edge-1", second.key_id)])
    with pytest.raises(ContractError):
        await enroll.issue_token(store, "acme", ttl_seconds=60, now=clock(), rotate=True)
    tokens = [e.details for e in await store.audit_entries() if e.action == "enroll.token"]
    assert tokens[0]["agent"] == "edge-1"
    assert tokens[-1]["rotate"] is True
    assert "agent" not in tokens[1]


async def test_enroll_token_expiry_and_tampering(store: Store, clock: Clock) -> None:
    await store.create_tenant("acme", now=clock())
    token = await enroll.issue_token(store, "acme", ttl_seconds=60, now=clock())
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(NotFound):
        await enroll.redeem(store, tampered, "a1", Agent("acme", "a1").public_key, now=clock())
    with pytest.raises(NotFound):
        await enroll.redeem(store, "not-a-token", "a1", Agent("acme", "a1").public_key, now=clock())
    clock.now += 61
    with pytest.raises(NotFound):
        await enroll.redeem(store, token, "a1", Agent("acme", "a1").public_key, now=clock())
    with pytest.raises(NotFound):
        await enroll.issue_token(store, "nope", ttl_seconds=60, now=clock())


async def test_quotas(store: Store, clock: Clock) -> None:
    await store.create_tenant("acme", now=clock())
    assert await store.get_quota("acme") == Quota("acme")
    assert await store.largest_batch_limit() is None
    q = Quota("acme", rows_per_day=5, max_batch_bytes=2048, max_age_seconds=86400)
    assert await store.set_quota(q, now=clock()) == q
    assert await store.get_quota("acme") == q
    assert await store.largest_batch_limit() == 2048
    with pytest.raises(NotFound):
        await store.get_quota("nope")
    with pytest.raises(NotFound):
        await store.set_quota(Quota("nope"), now=clock())


async def test_replay_meters_once(store: Store, clock: Clock, acme: Agent) -> None:
    envelope = acme.next(rows=3)
    outcomes = [await ingest(store, envelope, now=clock()) for _ in range(101)]
    assert outcomes[0] == Stored("acme", "a1", 1)
    assert all(o == Stored("acme", "a1", 1, duplicate=True) for o in outcomes[1:])
    [day] = await store.usage("acme")
    assert (day.batches, day.rows, day.duplicates) == (1, 3, 100)
    assert len(await store.released_rows("acme", None, None)) == 3


async def test_gap_and_fork_are_recorded_not_refused(store: Store, clock: Clock, acme: Agent) -> None:
    first = acme.next()
    acme.next()  # seq 2 never arrives
    third = acme.next()
    assert await ingest(store, first, now=clock()) == Stored("acme", "a1", 1)
    assert await ingest(store, third, now=clock()) == Stored("acme", "a1", 3, gap=True)
    forked = acme.sign(acme.payload(seq=4, prev="cd" * 32))
    assert await ingest(store, forked, now=clock()) == Stored("acme", "a1", 4, fork=True)
    [day] = await store.usage("acme")
    assert day.gaps == 2
    assert day.batches == 3


async def test_late_predecessor_closes_the_gap(store: Store, clock: Clock, acme: Agent) -> None:
    first, second = acme.next(), acme.next()
    assert isinstance(await ingest(store, second, now=clock()), Stored)
    assert (await store.usage("acme"))[0].gaps == 1
    assert await ingest(store, first, now=clock()) == Stored("acme", "a1", 1)
    assert (await store.usage("acme"))[0].gaps == 0


async def test_released_rows_and_privacy(store: Store, clock: Clock, acme: Agent) -> None:
    await ingest(store, acme.next(rows=2), now=clock())
    rows = await store.released_rows("acme", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z")
    assert [(r.metric, r.stat, r.dims, r.value, r.mechanism, r.scale) for r in rows] == [
        ("metric0", "count", {"region": "r0"}, 10.0, "gaussian", 1.5),
        ("metric1", "count", {"region": "r1"}, 11.0, "gaussian", 1.5),
    ]
    assert await store.released_rows("acme", "2026-03-11T00:00:00Z", None) == []
    [privacy] = await store.batch_privacy("acme", None, None)
    assert (privacy.unit, privacy.rho, privacy.epsilon, privacy.seq) == ("user", 0.01, None, 1)


async def test_released_rows_keep_their_level(store: Store, clock: Clock, acme: Agent) -> None:
    """Issue 15: a period total's rows are stored with their level; rows without one are windows."""
    window = Row("signup", "count", {}, 5.0, Noise("gaussian", 1.0))
    period = Row("signup", "count", {}, 20.0, Noise("gaussian", 2.0), "period")
    payload = batchkit.payload(
        tenant="acme", agent=acme.agent, seq=1, prev="", created=acme.created, released=[window, period]
    )
    assert isinstance(await ingest(store, acme.sign(payload), now=clock()), Stored)
    rows = await store.released_rows("acme", None, None)
    assert [(r.value, r.level) for r in rows] == [(5.0, "window"), (20.0, "period")]


async def _flood(store: Store, agents: list[Agent], clock: Clock) -> list[object]:
    envelopes = [a.next() for a in agents]
    return list(await asyncio.gather(*(ingest(store, e, now=clock()) for e in envelopes)))


async def test_concurrent_submissions_never_exceed_the_quota(store: Store, clock: Clock) -> None:
    await store.create_tenant("acme", now=clock())
    await store.set_quota(Quota("acme", rows_per_day=50), now=clock())
    agents = [Agent("acme", f"a{i}") for i in range(200)]
    for a in agents:
        await store.add_key("acme", a.agent, a.public_key, now=clock())
    outcomes = await _flood(store, agents, clock)
    assert sum(isinstance(o, Stored) for o in outcomes) == 50
    assert {o.reason for o in outcomes if isinstance(o, Rejected)} == {"quota_rows_day"}
    [day] = await store.usage("acme")
    assert (day.rows, day.batches, day.refused) == (50, 50, {"quota_rows_day": 150})


async def test_one_group_decides_each_batch_exactly(store: Store, clock: Clock) -> None:
    """Concurrent submissions share a commit (fewer transactions than batches), and inside the group
    each is decided as if alone: a duplicate and a seq conflict (tenant beta), quota refusals beside
    accepted batches (tenant acme); the refused ones leave no rows, their neighbours all of theirs."""
    for tenant in ("acme", "beta"):
        await store.create_tenant(tenant, now=clock())
    await store.set_quota(Quota("acme", rows_per_day=30), now=clock())
    agents = [Agent("acme", f"a{i}") for i in range(38)]
    twice, rival = Agent("beta", "b0"), Agent("beta", "b1")
    for a in [*agents, twice, rival]:
        await store.add_key(a.tenant, a.agent, a.public_key, now=clock())
    dup = twice.next()
    one, other = rival.sign(rival.payload(rows=1)), rival.sign(rival.payload(rows=1, policy="cd" * 32))
    envelopes = [dup, dup, one, other] + [a.next() for a in agents]
    before = store.commit_groups  # type: ignore[attr-defined]  # both stores have it
    outcomes = await asyncio.gather(*(ingest(store, e, now=clock()) for e in envelopes))
    assert store.commit_groups - before < len(envelopes)  # type: ignore[attr-defined]
    assert sorted(o == Stored("beta", "b0", 1, duplicate=True) for o in outcomes[:2]) == [False, True]
    assert sorted(isinstance(o, Stored) for o in outcomes[2:4]) == [False, True]
    assert {o.reason for o in outcomes[2:4] if isinstance(o, Rejected)} == {"conflict"}
    assert sum(isinstance(o, Stored) for o in outcomes[4:]) == 30
    assert {o.reason for o in outcomes[4:] if isinstance(o, Rejected)} == {"quota_rows_day"}
    [acme] = await store.usage("acme")
    assert (acme.batches, acme.rows, acme.duplicates, acme.refused) == (30, 30, 0, {"quota_rows_day": 8})
    [beta] = await store.usage("beta")
    assert (beta.batches, beta.rows, beta.duplicates, beta.refused) == (2, 2, 1, {"conflict": 1})
    assert len(await store.released_rows("acme", None, None)) == 30
    assert len(await store.released_rows("beta", None, None)) == 2


async def test_an_acknowledged_group_is_on_disk(tmp_path: Path, clock: Clock, audit_key: nacl.signing.SigningKey) -> None:
    """A reply comes after COMMIT: another connection sees every batch acknowledged to a group."""
    path = tmp_path / "c.db"
    store = await SqliteStore.open(path, signing_key=audit_key, create=True)
    other = await SqliteStore.open(path)
    try:
        await store.create_tenant("acme", now=clock())
        agents = [Agent("acme", f"a{i}") for i in range(20)]
        for a in agents:
            await store.add_key("acme", a.agent, a.public_key, now=clock())
        outcomes = await asyncio.gather(*(ingest(store, a.next(rows=2), now=clock()) for a in agents))
        assert all(isinstance(o, Stored) for o in outcomes)
        assert store.commit_groups < len(agents)
        [day] = await other.usage("acme")
        assert (day.batches, day.rows) == (20, 40)
    finally:
        await other.close()
        await store.close()


async def test_two_store_instances_share_the_quota(
    tmp_path: Path, clock: Clock, audit_key: nacl.signing.SigningKey
) -> None:
    """Two connections on one file (as two collector processes would be) still admit exactly 50 rows."""
    path = tmp_path / "shared.db"
    one = await SqliteStore.open(path, signing_key=audit_key, create=True)
    two = await SqliteStore.open(path, signing_key=audit_key)
    try:
        await one.create_tenant("acme", now=clock())
        await one.set_quota(Quota("acme", rows_per_day=50), now=clock())
        agents = [Agent("acme", f"a{i}") for i in range(120)]
        for a in agents:
            await one.add_key("acme", a.agent, a.public_key, now=clock())
        envelopes = [a.next() for a in agents]
        outcomes = await asyncio.gather(
            *(ingest(one if i % 2 else two, e, now=clock()) for i, e in enumerate(envelopes))
        )
        assert sum(isinstance(o, Stored) for o in outcomes) == 50
        assert (await one.usage("acme"))[0].rows == 50
    finally:
        await one.close()
        await two.close()


async def test_refusals_are_counted_and_audited_once_per_minute(
    store: Store, clock: Clock, acme: Agent
) -> None:
    stranger = Agent("acme", "a1")
    for _ in range(10):
        await ingest(store, stranger.next(), now=clock())
    clock.now += 60
    await ingest(store, stranger.next(), now=clock())
    usage = await store.usage()
    assert sum(u.refused.get("unknown_key", 0) for u in usage) == 11
    refused = [e for e in await store.audit_entries() if e.action == "batch.refused"]
    assert len(refused) == 2


async def test_calendar_quota_resets_next_day(store: Store, clock: Clock, acme: Agent) -> None:
    await store.set_quota(Quota("acme", rows_per_day=2), now=clock())
    assert isinstance(await ingest(store, acme.next(rows=2), now=clock()), Stored)
    refused = await ingest(store, acme.next(rows=1), now=clock())
    assert isinstance(refused, Rejected)
    assert refused.reason == "quota_rows_day"
    assert refused.retry_after == pytest.approx(12 * 3600)
    clock.now += 12 * 3600
    acme.created = clock.now
    assert isinstance(await ingest(store, acme.next(rows=1), now=clock()), Stored)


async def test_month_and_bytes_quotas(store: Store, clock: Clock, acme: Agent) -> None:
    await store.set_quota(Quota("acme", rows_per_month=3), now=clock())
    assert isinstance(await ingest(store, acme.next(rows=3), now=clock()), Stored)
    out = await ingest(store, acme.next(rows=1), now=clock())
    assert isinstance(out, Rejected)
    assert out.reason == "quota_rows_month"
    await store.set_quota(Quota("acme", bytes_per_day=10), now=clock())
    out = await ingest(store, acme.next(rows=1), now=clock())
    assert isinstance(out, Rejected)
    assert out.reason == "quota_bytes_day"


async def test_rate_limit_bucket(store: Store, clock: Clock, acme: Agent) -> None:
    await store.set_quota(Quota("acme", batches_per_second=1, burst=2), now=clock())
    assert isinstance(await ingest(store, acme.next(), now=clock()), Stored)
    assert isinstance(await ingest(store, acme.next(), now=clock()), Stored)
    out = await ingest(store, acme.next(), now=clock())
    assert isinstance(out, Rejected)
    assert out.reason == "rate_limited"
    assert out.retry_after == pytest.approx(1.0)
    clock.now += 1
    acme.created = clock.now
    acme.seq -= 1  # the refused batch was not stored: resend that seq
    assert isinstance(await ingest(store, acme.next(), now=clock()), Stored)


async def test_schema_version_recorded_once(tmp_path: Path, audit_key: nacl.signing.SigningKey) -> None:
    path = tmp_path / "v.db"
    for _ in range(2):
        s = await SqliteStore.open(path, signing_key=audit_key, create=True)
        await s.close()
    with sqlite3.connect(path) as db:
        versions = db.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(v,) for v, _ in MIGRATIONS]
