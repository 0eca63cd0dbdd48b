"""Certified agents on the collector (issue 14): certificates submitted over the real ``SubmitCertificate``
RPC on loopback, recorded in SQLite and PostgreSQL, and their status computed from later batches —
forged, expired, another agent's, contradicted (policy change; spend over the attested cap),
superseded. Also the pure status rules and the badge."""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Any

import grpc
import msgspec
import nacl.signing
import pytest

import hushmetric.bundle
from collector import certs
from collector.importer import import_bundle
from collector.report.badge import certificate_badge
from collector.store import AgentCertificate, CertBatch, CertificateRecord, Store
from hushmetric import dsse
from hushmetric.bundle import CERTIFICATE_MEMBER, Manifest, write_bundle
from hushmetric.certificate import (
    CERTIFICATE_PAYLOAD_TYPE,
    Certificate,
    Conformance,
    EgressHead,
    ProfileCheck,
    encode_statement,
)
from hushmetric.timefmt import format_rfc3339
from hushmetric.wire import envelope_to_proto
from tests.batchkit import POLICY
from tests.collector.collector_testkit import T0, Agent, Clock, Server

DAY = 86400.0


def statement(who: Agent, /, **over: Any) -> Certificate:
    fields: dict[str, Any] = {
        "v": 1,
        "agent": who.agent,
        "tenant": who.tenant,
        "key_id": who.key_id,
        "public_key": who.public_key,
        "profile": "on-prem",
        "policy_name": "demo",
        "policy_digest": POLICY,
        "mechanism": "zcdp",
        "measure": "rho",
        "budget_period": "day",
        "cap": 0.05,
        "conformance": Conformance("on-prem", True, [ProfileCheck("collector-tls", True)]),
        "egress": EgressHead(0, ""),
        "spend": [],
        "issued": format_rfc3339(T0 - 60),
        "valid_until": format_rfc3339(T0 + 30 * DAY),
    }
    fields.update(over)
    return Certificate(**fields)


def signed(agent: Agent, cert: Certificate, key: nacl.signing.SigningKey | None = None) -> dsse.Envelope:
    return dsse.sign(encode_statement(cert), CERTIFICATE_PAYLOAD_TYPE, key or agent.key)


async def submit(server: Server, envelope: dsse.Envelope) -> Any:
    return await server.stub.SubmitCertificate(envelope_to_proto(envelope))


async def refused(server: Server, envelope: dsse.Envelope) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await submit(server, envelope)
    reason = dict(info.value.trailing_metadata() or ()).get("hush-reason")
    return info.value.code(), str(reason)


async def test_a_certificate_is_recorded_once_and_audited(server: Server, store: Store, acme: Agent) -> None:
    envelope = signed(acme, statement(acme))
    reply = await submit(server, envelope)
    assert (reply.tenant, reply.agent, reply.profile, reply.duplicate) == ("acme", "a1", "on-prem", False)
    assert reply.valid_until == format_rfc3339(T0 + 30 * DAY)
    assert (await submit(server, envelope)).duplicate
    [cert] = await store.agent_certificates("acme", now=T0)
    assert (cert.agent, cert.key_id, cert.profile, cert.policy_digest) == (
        "a1",
        acme.key_id,
        "on-prem",
        POLICY,
    )
    assert (cert.status, cert.expires) == ("valid", T0 + 30 * DAY)
    assert await store.agent_certificates(None, now=T0) == [cert]
    assert await store.agent_certificates("other", now=T0) == []
    recorded = [e for e in await store.audit_entries() if e.action == "certificate.record"]
    assert len(recorded) == 1
    assert recorded[0].details["agent"] == "a1"


async def test_forged_and_unknown_signatures_are_refused(server: Server, store: Store, acme: Agent) -> None:
    forger = nacl.signing.SigningKey.generate()
    forged = signed(acme, statement(acme), forger)  # signature by another key, under a1's key id
    forged = dsse.Envelope(
        forged.payload, forged.payload_type, (dsse.Signature(forged.signatures[0].sig, acme.key_id),)
    )
    assert await refused(server, forged) == (grpc.StatusCode.UNAUTHENTICATED, "bad_signature")
    stranger = Agent("acme", "a1")  # a key nobody registered
    assert await refused(server, signed(stranger, statement(stranger))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "unknown_key",
    )
    wrong_type = dsse.sign(encode_statement(statement(acme)), dsse.BATCH_PAYLOAD_TYPE, acme.key)
    assert await refused(server, wrong_type) == (grpc.StatusCode.INVALID_ARGUMENT, "payload_type")
    malformed = dsse.sign(b"{not json", CERTIFICATE_PAYLOAD_TYPE, acme.key)
    assert await refused(server, malformed) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed")
    assert await store.agent_certificates("acme", now=T0) == []
    # a refusal behind a verified key is audited; junk without one is not written
    audited = [e.details["reason"] for e in await store.audit_entries() if e.action == "certificate.refused"]
    assert audited == ["malformed"]


async def test_expired_and_not_conforming_certificates_are_refused(
    server: Server, store: Store, acme: Agent
) -> None:
    expired = statement(acme, issued=format_rfc3339(T0 - 40 * DAY), valid_until=format_rfc3339(T0 - DAY))
    assert await refused(server, signed(acme, expired)) == (grpc.StatusCode.FAILED_PRECONDITION, "expired")
    failing = Conformance("on-prem", False, [ProfileCheck("collector-tls", False, ["collector.tls"])])
    assert await refused(server, signed(acme, statement(acme, conformance=failing))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "not_conforming",
    )
    assert await store.agent_certificates("acme", now=T0) == []


async def test_a_recorded_certificate_expires(server: Server, store: Store, acme: Agent) -> None:
    await submit(server, signed(acme, statement(acme, valid_until=format_rfc3339(T0 + DAY))))
    [cert] = await store.agent_certificates("acme", now=T0 + DAY)
    assert cert.status == "expired"
    assert cert.reason == f"expired at {format_rfc3339(T0 + DAY)}"


async def test_another_agents_certificate_is_refused(
    server: Server, store: Store, acme: Agent, clock: Clock
) -> None:
    b = Agent("acme", "b1")
    await store.add_key("acme", "b1", b.public_key, now=clock())
    # signed by a1, claiming to certify b1 (with b1's key in the statement, or a1's)
    assert await refused(server, signed(acme, statement(b))) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "key_mismatch",
    )
    claim = statement(acme, agent="b1")
    assert await refused(server, signed(acme, claim)) == (grpc.StatusCode.PERMISSION_DENIED, "agent_mismatch")
    other_tenant = statement(acme, tenant="globex")
    assert await refused(server, signed(acme, other_tenant)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "tenant_mismatch",
    )
    assert await store.agent_certificates("acme", now=T0) == []


async def test_revoked_key_and_suspended_tenant_are_refused(
    server: Server, store: Store, acme: Agent, clock: Clock
) -> None:
    await store.set_tenant_state("acme", "suspended", now=clock())
    assert await refused(server, signed(acme, statement(acme))) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "tenant_suspended",
    )
    await store.set_tenant_state("acme", "active", now=clock())
    await store.set_key_state(acme.key_id, "revoked", now=clock())
    assert await refused(server, signed(acme, statement(acme))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "revoked_key",
    )


async def test_a_later_batch_under_another_policy_contradicts(
    server: Server, store: Store, acme: Agent
) -> None:
    await submit(server, signed(acme, statement(acme)))
    await server.submit(acme.next())  # under the certified policy: still valid
    assert [c.status for c in await store.agent_certificates("acme", now=T0)] == ["valid"]
    await server.submit(acme.next(policy="cd" * 32))
    [cert] = await store.agent_certificates("acme", now=T0)
    assert cert.status == "contradicted"
    assert "cdcdcdcdcdcdcdcd" in cert.reason


async def test_spend_above_the_attested_cap_contradicts(server: Server, store: Store, acme: Agent) -> None:
    await submit(server, signed(acme, statement(acme, cap=0.025)))
    await server.submit(acme.next())  # batchkit declares rho 0.01 per batch
    await server.submit(acme.next())
    assert [c.status for c in await store.agent_certificates("acme", now=T0)] == ["valid"]
    await server.submit(acme.next())  # 0.03 in the day > 0.025
    [cert] = await store.agent_certificates("acme", now=T0)
    assert cert.status == "contradicted"
    assert "above the certified cap" in cert.reason


async def test_a_newer_certificate_supersedes(server: Server, store: Store, acme: Agent) -> None:
    await submit(server, signed(acme, statement(acme, issued=format_rfc3339(T0 - 3600))))
    await submit(
        server,
        signed(
            acme,
            statement(
                acme,
                profile="vpc",
                conformance=Conformance("vpc", True, [ProfileCheck("collector-tls", True)]),
            ),
        ),
    )
    newer, older = await store.agent_certificates("acme", now=T0)
    assert (newer.profile, newer.status) == ("vpc", "valid")
    assert (older.profile, older.status) == ("on-prem", "superseded")


# -- pure rules --------------------------------------------------------------------------------


def record(**over: Any) -> CertificateRecord:
    fields: dict[str, Any] = {
        "tenant": "acme", "agent": "a1", "key_id": "00" * 32, "digest": "11" * 32, "profile": "on-prem",
        "policy_digest": POLICY, "issued": T0, "expires": T0 + DAY, "measure": "rho", "budget_period": "day",
        "cap": 0.05, "received": T0, "envelope": b"{}",
    }  # fmt: skip
    fields.update(over)
    return CertificateRecord(**fields)


def test_spend_sums_the_whole_period_including_batches_before_the_certificate() -> None:
    rec = record()
    before = CertBatch(1, POLICY, T0 - 3600, T0 - 3600, 0.03, None)
    after = CertBatch(2, POLICY, T0 + 60, T0 + 60, 0.03, None)
    assert certs.contradiction(rec, [before]) is None  # nothing received since: nothing to contradict
    assert certs.contradiction(rec, [before, after]) is not None
    next_day = CertBatch(3, POLICY, T0 + DAY, T0 + DAY, 0.03, None)
    assert certs.contradiction(rec, [before, next_day]) is None
    # an older policy on a batch received before the certificate is history, not a contradiction
    assert certs.contradiction(rec, [CertBatch(1, "ee" * 32, T0 - 60, T0 - 60, 0.01, None)]) is None
    assert certs.period_key("week", T0) == "2026-W11"
    assert certs.period_key("month", T0) == "2026-03"


def test_statuses_order_and_supersede() -> None:
    old, new = record(digest="aa" * 32, issued=T0 - DAY), record(digest="bb" * 32, issued=T0)
    other = record(agent="a2", expires=T0 - 1)
    out = certs.statuses([old, other, new], {}, T0)
    assert [(c.agent, c.status) for c in out] == [("a1", "valid"), ("a1", "superseded"), ("a2", "expired")]
    assert certs.newest([old, other, new]) == [new, other]


def _cert(status: str, expires: float = T0 + 30 * DAY) -> AgentCertificate:
    return AgentCertificate("acme", "a1", "00" * 32, "air-gap", POLICY, T0, expires, status, "why")  # type: ignore[arg-type]


def test_badge_states_differ_in_words_and_colour() -> None:
    badges = {
        "valid": certificate_badge(_cert("valid"), T0),
        "expired": certificate_badge(_cert("valid", T0 - 1), T0),  # expired since it was read
        "contradicted": certificate_badge(_cert("contradicted"), T0),
        "none": certificate_badge(None, T0),
    }
    assert "air-gap · until 2026-04-09" in badges["valid"]
    assert 'data-status="expired"' in badges["expired"]
    assert "expired 2026-03-10" in badges["expired"]
    assert "contradicted" in badges["contradicted"]
    assert ">no certificate<" in badges["none"]
    fills = {state: svg.split('fill="')[2][:7] for state, svg in badges.items()}
    assert len({fills["valid"], fills["expired"], fills["contradicted"]}) == 3
    for svg in badges.values():
        assert svg.startswith("<svg")
        assert "href" not in svg
        assert "<script" not in svg
    hostile = AgentCertificate("acme", "<a>", "00" * 32, '"><script>', POLICY, T0, T0 + DAY, "valid", "&")
    assert "<script>" not in certificate_badge(hostile, T0)


# -- air-gap bundles ---------------------------------------------------------------------------


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _bundle(agent: Agent, member: bytes | None, listed: bytes | None) -> bytes:
    """A bundle of ``agent`` with no batches, a certificate ``member`` and a manifest that lists the
    hash of ``listed``."""
    digest = hashlib.sha256(listed).hexdigest() if listed is not None else None
    manifest = msgspec.json.encode(Manifest(1, agent.tenant, agent.agent, format_rfc3339(T0), [], digest))
    signed_manifest = dsse.to_json(dsse.sign(manifest, dsse.MANIFEST_PAYLOAD_TYPE, agent.key))
    members = [("manifest.json", signed_manifest)]
    if member is not None:
        members.append((CERTIFICATE_MEMBER, member))
    return _tar(members)


async def test_a_bundle_certificate_is_recorded_with_the_online_checks(
    store: Store, acme: Agent, clock: Clock
) -> None:
    cert = dsse.to_json(signed(acme, statement(acme)))
    written = write_bundle(
        [], tenant="acme", agent="a1", created=format_rfc3339(T0), key=acme.key, certificate=cert
    )
    assert (await import_bundle(store, written, now=T0)).certificate == "recorded"
    assert (await import_bundle(store, written, now=T0)).certificate == "duplicate"
    assert [c.status for c in await store.agent_certificates("acme", now=T0)] == ["valid"]
    old = write_bundle([], tenant="acme", agent="a1", created=format_rfc3339(T0), key=acme.key)
    assert b"certificate" not in old  # a bundle without one is byte for byte what it was
    assert (await import_bundle(store, old, now=T0)).certificate is None
    # tampered: the member is not what the signed manifest lists
    other = dsse.to_json(
        signed(
            acme,
            statement(
                acme,
                profile="vpc",
                conformance=Conformance("vpc", True, [ProfileCheck("collector-tls", True)]),
            ),
        )
    )
    report = await import_bundle(store, _bundle(acme, other, cert), now=T0)
    assert report.certificate == "refused: bundle_hash_mismatch"
    assert (await import_bundle(store, _bundle(acme, None, cert), now=T0)).certificate is not None
    assert (await import_bundle(store, _bundle(acme, cert, None), now=T0)).certificate is not None
    # another agent's genuine certificate smuggled into a1's bundle
    b = Agent("acme", "b1")
    await store.add_key("acme", "b1", b.public_key, now=clock())
    theirs = dsse.to_json(signed(b, statement(b)))
    report = await import_bundle(store, _bundle(acme, theirs, theirs), now=T0)
    assert report.certificate == "refused: bundle_mismatch (another agent's certificate)"
    assert [(c.agent, c.profile) for c in await store.agent_certificates("acme", now=T0)] == [
        ("a1", "on-prem")
    ]


async def test_a_certificate_signed_by_a_key_revoked_since_is_contradicted(
    server: Server, store: Store, acme: Agent, clock: Clock
) -> None:
    """Revoking a key (the kill switch for a stolen one) also withdraws what it certified."""
    await submit(server, signed(acme, statement(acme)))
    assert [c.status for c in await store.agent_certificates("acme", now=T0)] == ["valid"]
    await store.set_key_state(acme.key_id, "revoked", now=clock())
    [cert] = await store.agent_certificates("acme", now=T0)
    assert cert.status == "contradicted"
    assert "revoked" in cert.reason
    assert [c.status for c in await store.agent_certificates(None, now=T0)] == ["contradicted"]


def test_statuses_of_a_revoked_key() -> None:
    rec = record()
    assert [c.status for c in certs.statuses([rec], {}, T0, revoked={rec.key_id})] == ["contradicted"]
    assert [c.status for c in certs.statuses([rec], {}, T0, revoked={"ff" * 32})] == ["valid"]


async def test_a_full_bundle_with_a_certificate_is_read(
    store: Store, acme: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hush-agent export`` packs up to MAX_BUNDLE_MEMBERS batches *and* the certificate: the reader
    must take that many members plus the manifest and the certificate, or the whole bundle (whose
    batches already left the agent's outbox) is refused. The bound is lowered so the test is small."""
    monkeypatch.setattr(hushmetric.bundle, "MAX_BUNDLE_MEMBERS", 2)
    batches = [(n, acme.next()) for n in (1, 2)]
    cert = dsse.to_json(signed(acme, statement(acme)))
    written = write_bundle(
        batches, tenant="acme", agent="a1", created=format_rfc3339(T0), key=acme.key, certificate=cert
    )
    report = await import_bundle(store, written, now=T0)
    assert report.error is None, report
    assert report.certificate == "recorded"
    assert report.accepted == 2


async def test_a_replayed_refused_certificate_is_audited_once_a_minute(
    server: Server, store: Store, acme: Agent, clock: Clock
) -> None:
    """An expired certificate is public and stays refused: replaying it in a loop must not write an
    entry of the signed audit log per call (batch refusals are audited once a minute too)."""
    expired = signed(
        acme, statement(acme, issued=format_rfc3339(T0 - 40 * DAY), valid_until=format_rfc3339(T0 - DAY))
    )
    for _ in range(5):
        assert (await refused(server, expired))[1] == "expired"
    audited = [e for e in await store.audit_entries() if e.action == "certificate.refused"]
    assert [e.details["reason"] for e in audited] == ["expired"]
    clock.now += 60
    assert (await refused(server, expired))[1] == "expired"
    audited = [e for e in await store.audit_entries() if e.action == "certificate.refused"]
    assert [e.details.get("count", 1) for e in audited] == [1, 5]  # the next minute's entry counts them


async def test_an_envelope_larger_than_a_certificate_file_is_refused(
    server: Server, store: Store, acme: Agent
) -> None:
    """A genuine statement with a junk signature beside it (a key id the checks skip) must not carry
    its bytes into the certificates table: the envelope is bounded like a certificate file."""
    genuine = signed(acme, statement(acme))
    junk = dsse.Signature(b"\0" * 64, "k" * 100_000)
    bloated = dsse.Envelope(genuine.payload, genuine.payload_type, (*genuine.signatures, junk))
    assert await refused(server, bloated) == (grpc.StatusCode.INVALID_ARGUMENT, "too_large")
    assert await store.agent_certificates("acme", now=T0) == []
    assert (await submit(server, genuine)).duplicate is False


def counting_batch_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the real store's read method: the number of rows of each query on the batches table."""
    name = "_read" if hasattr(store, "_read") else "_fetch"
    inner = getattr(store, name)
    rows: list[int] = []

    async def counted(sql: str, *args: Any) -> Any:
        out = await inner(sql, *args)
        if " batches " in sql:
            rows.append(len(out))
        return out

    monkeypatch.setattr(store, name, counted)
    return rows


async def test_statuses_read_the_batches_once_per_tenant_summed_per_day(
    server: Server, store: Store, acme: Agent, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = [acme, Agent("acme", "a2"), Agent("acme", "a3")]
    for a in agents[1:]:
        await store.add_key("acme", a.agent, a.public_key, now=clock())
    for a in agents:
        await submit(server, signed(a, statement(a, issued=format_rfc3339(T0 - 3600))))  # superseded
        await submit(server, signed(a, statement(a)))
        for _ in range(3):  # three batches in the same UTC day
            await server.submit(a.next())
    await server.submit(agents[2].next(policy="cd" * 32))
    reads = counting_batch_reads(store, monkeypatch)
    found = await store.agent_certificates("acme", now=T0)
    assert [(c.agent, c.status) for c in found] == [
        ("a1", "valid"), ("a1", "superseded"), ("a2", "valid"), ("a2", "superseded"),
        ("a3", "contradicted"), ("a3", "superseded"),
    ]  # fmt: skip
    assert reads == [3]  # one grouped query for the tenant, one row per agent and day (not 10 batches)


def test_day_sums_give_the_batches_contradiction() -> None:
    rec = record(cap=0.05, budget_period="week")
    batches = [
        CertBatch(1, POLICY, T0 - 2 * DAY, T0 - 2 * DAY, 0.02, None),  # same ISO week as T0? summed if so
        CertBatch(2, POLICY, T0 + 60, T0 + 60, 0.02, 0.5),
        CertBatch(3, POLICY, T0 + 120, T0 + 120, None, None),  # no declared spend counts 0
        CertBatch(4, "ee" * 32, T0 - 60, T0 - 60, 0.01, None),  # another policy before issue: history
    ]
    days = certs.days_of(rec, batches)
    assert sum(1 for d in days if d.since) == 1
    assert all(d.other_policy is None for d in days)
    assert certs.day_contradiction(rec, days) == certs.contradiction(rec, batches)
    later = [*batches, CertBatch(5, "ee" * 32, T0 + DAY, T0 + DAY, 0.0, None)]
    assert certs.days_of(rec, later)[-1].other_policy == "ee" * 32
    assert "eeeeeeeeeeeeeeee" in str(certs.contradiction(rec, later))
