"""The gRPC service driven by a real client on loopback: one test per status code, tampering, replay,
concurrency against a quota, enrollment, health and reflection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from collector import enroll
from collector.ingest_refusals import RefusalBuffer
from collector.server import serve
from collector.store import Quota, Store
from collector.store.sqlite.store import SqliteStore
from hushmetric import dsse
from hushmetric.batch import payload_digest
from hushmetric.timefmt import format_rfc3339
from hushmetric.v1 import ingest_pb2, ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto
from tests.collector.collector_testkit import Agent, Clock, Server, flip

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def refused(server: Server, envelope: dsse.Envelope) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.submit(envelope)
    return info.value


def reason(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ())["hush-reason"]


def retry_delay(err: grpc.aio.AioRpcError) -> float:
    raw = dict(err.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


async def test_ok(server: Server, acme: Agent, store: Store) -> None:
    reply = await server.submit(acme.next(rows=2))
    assert (reply.seq, reply.duplicate) == (1, False)
    [day] = await store.usage("acme")
    assert (day.batches, day.rows) == (1, 2)


async def test_invalid_argument_malformed_payload(server: Server, acme: Agent) -> None:
    err = await refused(server, acme.sign(b"\xc1 not msgpack"))
    assert (err.code(), reason(err)) == (INVALID, "malformed")


async def test_invalid_argument_missing_key(server: Server, acme: Agent) -> None:
    payload = msgspec.msgpack.encode({"v": 1, "tenant": "acme", "agent": "a1", "seq": 1})
    err = await refused(server, acme.sign(payload))
    assert (err.code(), reason(err)) == (INVALID, "malformed")
    assert "required" in (err.details() or "")


async def test_invalid_argument_payload_type_swap(server: Server, acme: Agent) -> None:
    good = acme.next()
    swapped = dsse.Envelope(good.payload, dsse.MANIFEST_PAYLOAD_TYPE, good.signatures)
    err = await refused(server, swapped)
    assert (err.code(), reason(err)) == (INVALID, "payload_type")
    signed_as_other = acme.sign(good.payload, "application/json")
    assert (await refused(server, signed_as_other)).code() == INVALID
    assert (await server.submit(good)).seq == 1  # nothing was stored by the refusals


async def test_invalid_argument_too_large(server: Server, acme: Agent, store: Store, clock: Clock) -> None:
    await store.set_quota(Quota("acme", max_batch_bytes=1024), now=clock())
    err = await refused(server, acme.next(rows=40))
    assert (err.code(), reason(err)) == (INVALID, "too_large")


async def test_oversized_message_is_refused_before_decoding(server: Server, acme: Agent) -> None:
    huge = dsse.Envelope(b"\x00" * (5 << 20), dsse.BATCH_PAYLOAD_TYPE, acme.next().signatures)
    err = await refused(server, huge)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # gRPC's own receive limit
    assert (await server.submit(acme.next())).seq == 2  # and the server is fine


async def test_unauthenticated_unknown_key(server: Server, acme: Agent) -> None:
    err = await refused(server, Agent("acme", "a1").next())
    assert (err.code(), reason(err)) == (UNAUTH, "unknown_key")


async def test_unauthenticated_revoked_key(server: Server, acme: Agent, store: Store, clock: Clock) -> None:
    assert (await server.submit(acme.next())).seq == 1
    await store.set_key_state(acme.key_id, "revoked", now=clock())
    err = await refused(server, acme.next())
    assert (err.code(), reason(err)) == (UNAUTH, "revoked_key")


async def test_retired_key_accepts_only_older_batches(
    server: Server, acme: Agent, store: Store, clock: Clock
) -> None:
    old = acme.next()
    clock.now += 10
    await store.set_key_state(acme.key_id, "retired", now=clock())
    assert (await server.submit(old)).seq == 1
    acme.created = clock.now + 1
    err = await refused(server, acme.next())
    assert (err.code(), reason(err)) == (UNAUTH, "retired_key")


@pytest.mark.parametrize("part", ["payload", "signature"])
async def test_any_flipped_byte_is_refused(server: Server, acme: Agent, store: Store, part: str) -> None:
    good = acme.next()
    sig = good.signatures[0]
    size = len(good.payload) if part == "payload" else len(sig.sig)
    for i in range(size):
        if part == "payload":
            bad = dsse.Envelope(flip(good.payload, i), good.payload_type, good.signatures)
        else:
            bad = dsse.Envelope(
                good.payload, good.payload_type, (dsse.Signature(flip(sig.sig, i), sig.keyid),)
            )
        err = await refused(server, bad)
        assert (err.code(), reason(err)) == (UNAUTH, "bad_signature"), i
    assert await store.usage("acme") == [] or (await store.usage("acme"))[0].batches == 0
    assert (await server.submit(good)).duplicate is False


async def test_permission_denied_suspended_and_deleted(
    server: Server, acme: Agent, store: Store, clock: Clock
) -> None:
    await store.set_tenant_state("acme", "suspended", now=clock())
    err = await refused(server, acme.next())
    assert (err.code(), reason(err)) == (DENIED, "tenant_suspended")
    await store.set_tenant_state("acme", "active", now=clock())
    assert (await server.submit(acme.next())).seq == 2
    await store.set_tenant_state("acme", "deleted", now=clock())
    err = await refused(server, acme.next())
    assert (err.code(), reason(err)) == (DENIED, "tenant_deleted")


async def test_permission_denied_other_tenant_or_agent(
    server: Server, acme: Agent, store: Store, clock: Clock
) -> None:
    await store.create_tenant("globex", now=clock())
    err = await refused(server, acme.sign(acme.payload(tenant="globex")))
    assert (err.code(), reason(err)) == (DENIED, "tenant_mismatch")
    err = await refused(server, acme.sign(acme.payload(agent="a2")))
    assert (err.code(), reason(err)) == (DENIED, "agent_mismatch")


async def test_already_exists_on_conflict(server: Server, acme: Agent, store: Store) -> None:
    assert (await server.submit(acme.next(rows=1))).seq == 1
    err = await refused(server, acme.sign(acme.payload(seq=1, prev="", rows=2)))
    assert (err.code(), reason(err)) == (grpc.StatusCode.ALREADY_EXISTS, "conflict")
    [day] = await store.usage("acme")
    assert (day.rows, day.refused) == (1, {"conflict": 1})
    assert any(
        e.action == "batch.refused" and e.details["reason"] == "conflict" for e in await store.audit_entries()
    )


async def test_resource_exhausted_quota_with_retry_info(
    server: Server, acme: Agent, store: Store, clock: Clock
) -> None:
    await store.set_quota(Quota("acme", rows_per_day=3), now=clock())
    assert (await server.submit(acme.next(rows=3))).seq == 1
    err = await refused(server, acme.next(rows=1))
    assert (err.code(), reason(err)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota_rows_day")
    assert retry_delay(err) == pytest.approx(12 * 3600)


async def test_resource_exhausted_rate_limit_with_retry_info(
    server: Server, acme: Agent, store: Store, clock: Clock
) -> None:
    await store.set_quota(Quota("acme", batches_per_second=2, burst=1), now=clock())
    assert (await server.submit(acme.next())).seq == 1
    err = await refused(server, acme.next())
    assert (err.code(), reason(err)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")
    assert retry_delay(err) == pytest.approx(0.5)


async def test_failed_precondition_future_and_too_old(
    server: Server, acme: Agent, store: Store, clock: Clock
) -> None:
    acme.created = clock.now + 301
    err = await refused(server, acme.next())
    assert (err.code(), reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "future_dated")
    await store.set_quota(Quota("acme", max_age_seconds=3600), now=clock())
    acme.created = clock.now - 3601
    acme.seq, acme.prev = 0, ""
    err = await refused(server, acme.next())
    assert (err.code(), reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "too_old")
    [day] = await store.usage("acme")
    assert day.refused == {"future_dated": 1, "too_old": 1}


async def test_replay_100_times_meters_once(server: Server, acme: Agent, store: Store) -> None:
    envelope = acme.next(rows=2)
    replies = [await server.submit(envelope) for _ in range(101)]
    assert [r.duplicate for r in replies] == [False] + [True] * 100
    [day] = await store.usage("acme")
    assert (day.batches, day.rows, day.duplicates) == (1, 2, 100)


async def test_200_concurrent_submissions_against_50_rows(server: Server, store: Store, clock: Clock) -> None:
    await store.create_tenant("acme", now=clock())
    await store.set_quota(Quota("acme", rows_per_day=50), now=clock())
    agents = [Agent("acme", f"a{i}") for i in range(200)]
    for a in agents:
        await store.add_key("acme", a.agent, a.public_key, now=clock())
    envelopes = [a.next() for a in agents]
    results = await asyncio.gather(*(server.submit(e) for e in envelopes), return_exceptions=True)
    accepted = [r for r in results if isinstance(r, ingest_pb2.SubmitReply)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(accepted) == 50
    assert len(errors) == 150
    assert {e.code() for e in errors} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    [day] = await store.usage("acme")
    assert (day.rows, day.refused) == (50, {"quota_rows_day": 150})
    assert len(await store.released_rows("acme", None, None)) == 50


async def test_chain_gap_is_accepted_and_reported(server: Server, acme: Agent, store: Store) -> None:
    first = acme.next()
    acme.next()
    third = acme.next()
    await server.submit(first)
    assert (await server.submit(third)).seq == 3
    assert (await store.usage("acme"))[0].gaps == 1
    assert acme.prev == payload_digest(third.payload)


async def test_enroll_then_submit(server: Server, store: Store, clock: Clock) -> None:
    await store.create_tenant("acme", now=clock())
    token = await enroll.issue_token(store, "acme", ttl_seconds=3600, now=clock())
    agent = Agent("acme", "edge-7")
    reply = await server.stub.Enroll(
        ingest_pb2.EnrollRequest(token=token, agent="edge-7", public_key=agent.public_key)
    )
    assert (reply.tenant, reply.key_id) == ("acme", agent.key_id)
    assert (await server.submit(agent.next())).seq == 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.stub.Enroll(
            ingest_pb2.EnrollRequest(token=token, agent="x", public_key=Agent("acme", "x").public_key)
        )
    assert info.value.code() == UNAUTH
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.stub.Enroll(
            ingest_pb2.EnrollRequest(token=token, agent="bad agent!", public_key=b"short")
        )
    assert info.value.code() == INVALID


async def test_health_and_reflection(server: Server) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="hushmetric.v1.Ingest"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(server.channel)

    async def ask() -> object:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="hushmetric.v1.Ingest")

    answers = [a async for a in refl.ServerReflectionInfo(ask())]
    names = {s.name for s in answers[0].list_services_response.service}
    assert "hushmetric.v1.Ingest" in names
    proto = descriptor_pb2.FileDescriptorProto.FromString(
        answers[1].file_descriptor_response.file_descriptor_proto[0]
    )
    assert proto.package == "hushmetric.v1"


async def test_envelope_without_signatures_is_invalid(server: Server, acme: Agent) -> None:
    bare = ingest_pb2.Envelope(payload=acme.payload(), payload_type=dsse.BATCH_PAYLOAD_TYPE)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.stub.Submit(bare)
    assert info.value.code() == INVALID
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.stub.Submit(ingest_pb2.Envelope())
    assert info.value.code() == INVALID
    assert (await server.stub.Submit(envelope_to_proto(acme.next()))).seq == 1


async def test_clients_giving_up_mid_call_leave_the_store_consistent(
    server: Server, store: Store, clock: Clock
) -> None:
    await store.create_tenant("acme", now=clock())
    agents = [Agent("acme", f"a{i}") for i in range(40)]
    for a in agents:
        await store.add_key("acme", a.agent, a.public_key, now=clock())
    calls = [server.stub.Submit(envelope_to_proto(a.next(rows=2)), timeout=0.001) for a in agents]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ingest_pb2.SubmitReply | grpc.aio.AioRpcError) for r in results)
    for a in agents:  # every agent continues; whatever was half-done before is now whole
        a.seq, a.prev = 0, ""
        reply = await server.submit(a.next(rows=2))
        assert reply.seq == 1
    [day] = await store.usage("acme")
    assert day.batches == 40
    assert day.rows == 80
    assert len(await store.released_rows("acme", None, None)) == 80


async def test_health_turns_not_serving_while_the_database_is_unusable(
    tmp_path: Path, audit_key: Any
) -> None:
    """Readiness follows the store: a load balancer routes around a replica that lost its database."""
    store = await SqliteStore.open(tmp_path / "c.db", signing_key=audit_key, create=True)
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            store,
            "127.0.0.1:0",
            stop=stop,
            on_bound=bound.set_result,
            grace_seconds=1.0,
            readiness_seconds=0.05,
        )
    )
    address = await asyncio.wait_for(bound, 10)
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="hushmetric.v1.Ingest")
        assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.SERVING
        await store.close()  # the database is gone for this replica
        status = None
        for _ in range(200):  # bounded: 200 × 50 ms
            status = (await health.Check(request)).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.05)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_decoy_signature_under_another_tenants_key_decides_nothing(
    server: Server, store: Store, clock: Clock
) -> None:
    """Issue 10, defect 2: limits, state, metering and refusals follow the key whose signature
    verified, never the first registered key id in the envelope (key ids are public)."""
    big, small = Agent("big", "b1"), Agent("small", "s1")
    for a in (big, small):
        await store.create_tenant(a.tenant, now=clock())
        await store.add_key(a.tenant, a.agent, a.public_key, now=clock())
    await store.set_quota(
        Quota("small", max_batch_bytes=1024, rows_per_day=3, max_age_seconds=3600), now=clock()
    )
    await store.set_tenant_state("big", "suspended", now=clock())

    def decoyed(envelope: dsse.Envelope) -> dsse.Envelope:  # big's key id first, a signature that fails
        decoy = dsse.Signature(bytes(64), big.key_id)
        return dsse.Envelope(envelope.payload, envelope.payload_type, (decoy, *envelope.signatures))

    # big is suspended: its key id in front changes nothing for small's good batch
    assert (await server.submit(decoyed(small.next(rows=2)))).seq == 1
    err = await refused(server, decoyed(small.sign(small.payload(rows=40))))
    assert (err.code(), reason(err)) == (INVALID, "too_large")  # small's 1 KiB, not big's default
    old = small.payload(rows=1, created=format_rfc3339(clock.now - 7200))
    err = await refused(server, decoyed(small.sign(old)))
    assert reason(err) == "too_old"  # small's max age
    err = await refused(server, decoyed(small.next(rows=2)))
    assert reason(err) == "quota_rows_day"  # small's 3 rows a day, 2 used
    err = await refused(server, decoyed(small.sign(b"\xc1 junk")))
    assert reason(err) == "malformed"
    # a decoy alone is a bad signature charged to no tenant; two verifying keys of two tenants conflict
    err = await refused(
        server, dsse.Envelope(old, dsse.BATCH_PAYLOAD_TYPE, (dsse.Signature(bytes(64), big.key_id),))
    )
    assert (err.code(), reason(err)) == (UNAUTH, "bad_signature")
    both = small.payload(seq=9)
    cosigned = dsse.Envelope(
        both, dsse.BATCH_PAYLOAD_TYPE, (*big.sign(both).signatures, *small.sign(both).signatures)
    )
    err = await refused(server, cosigned)
    assert (err.code(), reason(err)) == (DENIED, "signer_mismatch")
    assert await server.flush() == 2  # the unattributed ones were held in memory
    usage = {(u.tenant, r): n for u in await store.usage() for r, n in u.refused.items()}
    assert usage == {
        ("small", "too_large"): 1,
        ("small", "too_old"): 1,
        ("small", "quota_rows_day"): 1,
        ("small", "malformed"): 1,
        ("-", "bad_signature"): 1,
        ("-", "signer_mismatch"): 1,
    }
    metered = {u.tenant: (u.batches, u.rows) for u in await store.usage()}
    assert metered.get("small") == (1, 2)
    assert metered.get("big", (0, 0)) == (0, 0)


async def test_junk_costs_no_database_write_each_and_is_flushed_once_per_reason(
    server: Server, acme: Agent, store: Store
) -> None:
    """Issue 10: unattributed refusals are counted in memory and written per (day, reason)."""
    stranger = Agent("acme", "a1")  # not registered
    for _ in range(30):
        await refused(server, stranger.next())  # unknown_key
        env = acme.sign(acme.payload())
        await refused(
            server, dsse.Envelope(env.payload, env.payload_type, (dsse.Signature(bytes(64), acme.key_id),))
        )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.channel.unary_unary("/hushmetric.v1.Ingest/Submit")(b"\xff\xff not protobuf")
    assert info.value.code() == INVALID
    audit_before = len(await store.audit_entries())
    assert not [u for u in await store.usage() if u.refused]  # nothing written yet
    assert server.refusals.pending() == 61
    assert await server.flush() == 61
    [day] = [u for u in await store.usage() if u.tenant == "-"]
    assert day.refused == {"unknown_key": 30, "bad_signature": 30, "malformed": 1}
    refused_audit = [e for e in (await store.audit_entries())[audit_before:] if e.action == "batch.refused"]
    assert sorted(e.details["reason"] for e in refused_audit) == ["bad_signature", "malformed", "unknown_key"]
    assert await server.flush() == 0


async def test_failed_enrollments_are_counted_audited_and_rate_limited(
    server: Server, store: Store, clock: Clock
) -> None:
    """Issue 10: every failed Enroll is counted and audited (coalesced per reason and minute); an
    address with 10 failures is told to wait (RetryInfo) and not even checked until it may retry."""
    await store.create_tenant("acme", now=clock())
    good = await enroll.issue_token(store, "acme", ttl_seconds=3600, now=clock())
    agent = Agent("acme", "edge-1")

    async def enroll_call(token: str, agent_id: str = "edge-1", key: bytes = agent.public_key) -> Any:
        request = ingest_pb2.EnrollRequest(token=token, agent=agent_id, public_key=key)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.stub.Enroll(request)
        return info.value

    guess = good[:-1] + ("A" if good[-1] != "A" else "B")
    for _ in range(8):
        err = await enroll_call(guess)
        assert (err.code(), reason(err)) == (UNAUTH, "enroll_token")
    err = await enroll_call(good, "bad agent!")
    assert (err.code(), reason(err)) == (INVALID, "enroll_malformed")
    err = await enroll_call("hmt_junk")
    assert reason(err) == "enroll_token"
    err = await enroll_call(good)  # the 11th call, with the right token: not looked at
    assert (err.code(), reason(err)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "enroll_rate_limited")
    assert 0 < retry_delay(err) <= 6.0
    clock.now += retry_delay(err)  # one failure's worth of refill
    reply = await server.stub.Enroll(
        ingest_pb2.EnrollRequest(token=good, agent="edge-1", public_key=agent.public_key)
    )
    assert reply.key_id == agent.key_id
    assert await server.flush() == 11
    [day] = [u for u in await store.usage() if u.tenant == "-"]
    assert day.refused == {"enroll_token": 9, "enroll_malformed": 1, "enroll_rate_limited": 1}
    audited = [e.details["reason"] for e in await store.audit_entries() if e.action == "enroll.refused"]
    assert sorted(audited) == ["enroll_malformed", "enroll_rate_limited", "enroll_token"]


@pytest.mark.postgres
async def test_clients_learn_only_that_storage_is_unavailable(
    tmp_path: Path, audit_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: while the database is down, any client gets UNAVAILABLE without the database URL;
    the detail goes to the log (without the URL either)."""
    from collector.store.pg.store import open_pg_store
    from tests.pg import temp_database

    async with temp_database() as url:
        store = await open_pg_store(url, signing_key=audit_key, create=True)
        await store.create_tenant("acme", now=0)
        agent = Agent("acme", "a1")
        await store.add_key("acme", "a1", agent.public_key, now=0)
        stop = asyncio.Event()
        bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(store, "127.0.0.1:0", stop=stop, on_bound=bound.set_result, grace_seconds=1.0)
        )
        address = await asyncio.wait_for(bound, 10)
        await store.close()  # the database is gone for this replica
        async with grpc.aio.insecure_channel(address) as channel:
            server = Server(address, channel, ingest_pb2_grpc.IngestStub(channel), RefusalBuffer(), store)
            errors = [await refused(server, agent.next()), await refused(server, Agent("x", "y").next())]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await server.stub.Enroll(
                    ingest_pb2.EnrollRequest(
                        token=f"hmt_{0:016x}_{'A' * 43}", agent="a", public_key=bytes(32)
                    )
                )
            errors.append(info.value)
        stop.set()
        await asyncio.wait_for(task, 10)
    name = url.rsplit("/", 1)[1]
    for err in errors:
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "storage is unavailable; retry later"
    logged = [r.getMessage() for r in caplog.records if "storage unavailable" in r.getMessage()]
    assert logged, logged
    assert not [m for m in logged if "postgresql://" in m or name in m], logged


async def test_calls_beyond_maximum_concurrent_rpcs_are_refused(tmp_path: Path, audit_key: Any) -> None:
    """Issue 10: the server bounds concurrent calls instead of queueing without limit."""
    store = await SqliteStore.open(tmp_path / "c.db", signing_key=audit_key, create=True)
    await store.create_tenant("acme", now=0)
    agent = Agent("acme", "a1", created=0.0)
    await store.add_key("acme", "a1", agent.public_key, now=0)
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            store,
            "127.0.0.1:0",
            stop=stop,
            on_bound=bound.set_result,
            clock=lambda: 0.0,
            grace_seconds=1.0,
            max_concurrent_rpcs=1,
        )
    )
    address = await asyncio.wait_for(bound, 10)
    blocker = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer: the submission below waits for it
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = ingest_pb2_grpc.IngestStub(channel)
            envelope = envelope_to_proto(agent.next())
            pending = asyncio.ensure_future(stub.Submit(envelope))
            health = health_pb2_grpc.HealthStub(channel)
            exhausted = None
            for _ in range(500):  # bounded: until a probe finds the one slot taken by the submission
                if pending.done():  # a probe held the slot when it arrived: it was refused, send again
                    assert isinstance(pending.exception(), grpc.aio.AioRpcError)
                    pending = asyncio.ensure_future(stub.Submit(envelope))
                else:
                    try:
                        await health.Check(health_pb2.HealthCheckRequest())
                    except grpc.aio.AioRpcError as exc:
                        if not pending.done():
                            exhausted = exc
                            break
                await asyncio.sleep(0.01)
            blocker.execute("ROLLBACK")
            assert (await pending).seq == 1  # the call in flight completes
            assert exhausted is not None
            assert exhausted.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        blocker.close()
        stop.set()
        await asyncio.wait_for(task, 10)
        await store.close()
