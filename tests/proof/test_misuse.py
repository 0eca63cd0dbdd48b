"""Proof family 5 — misuse: every hostile submission to a real collector is refused, counted, audited
and never stored.

One ``hush-collector serve`` subprocess on 127.0.0.1:0 over a real SQLite file, a real gRPC client.
Attacks: tampered payloads (every byte position of a sample batch in long mode, a stratified sample
in short mode), tampered and forged signatures, unknown, retired (batch created after retirement)
and revoked keys, payloadType swaps, conflicting replays, batches claiming another tenant or agent,
suspended and deleted tenants, batches under an unapproved or revoked policy digest and over the
tenant's daily privacy cap, future-dated and expired batches (``--max-age`` set by ``quota set``),
oversize payloads (tenant limit and gRPC frame limit), floods past the rate limit, decoy signatures
under another tenant's public key id (to borrow its limits or charge it refusals) and keys of two
tenants co-signing, enrollment abuse (guessed tokens past the per-address limit, a second key for
an existing agent), and hostile bundles through ``hush-collector import`` (sparse members in both
GNU and PAX form among them). Byte-identical replays (online and by re-importing
bundles) are acknowledged as duplicates and metered once.

Figures: attempts vs refused (equal), stored beyond the legitimate batches (0), refusals counted in
``usage`` per reason (equal to what was sent), and every (tenant, reason) audited in a verified
``audit export`` (refusals are coalesced per reason per minute, so one entry per reason suffices).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import nacl.signing
import pytest

from hushmetric import bundle, dsse
from hushmetric.batch import payload_digest
from hushmetric.v1 import ingest_pb2, ingest_pb2_grpc
from tests import batchkit
from tests.collector.collector_testkit import gnu_sparse_member, pax_sparse_member, strip_end
from tests.proof.proofkit import LONG, Collector, Figures, Reply, Signer, now_s, pick, submit

pytestmark = pytest.mark.timeout(pick(300, 1500))

FAMILY = "5 misuse"
REVOKED_POLICY = "dd" * 32


@dataclass
class Ledger:
    """What the test sent and what it expects the collector to have done about it."""

    attempts: Counter[str] = field(default_factory=Counter)  # by category
    refused: Counter[str] = field(default_factory=Counter)  # by category
    reasons: Counter[str] = field(default_factory=Counter)  # expected usage refusals by reason
    wrong: list[str] = field(default_factory=list)  # unexpected outcomes, for the assertion message
    legit: set[tuple[str, str, int, str]] = field(default_factory=set)  # (tenant, agent, seq, digest)
    unaudited_transport: int = 0  # refused by gRPC before the collector saw them

    def expect(self, category: str, reply: Reply, code: str, reason: str | None) -> None:
        self.attempts[category] += 1
        ok = reply.code == code and (reason is None or reply.reason == reason)
        if ok:
            self.refused[category] += 1
            if reason is not None:
                self.reasons[reason] += 1
        elif len(self.wrong) < 20:
            self.wrong.append(f"{category}: got {reply}, want {code}/{reason}")


def positions(n: int) -> list[int]:
    """Every byte position in long mode; a stratified sample (ends, evenly spread) in short mode."""
    if LONG:
        return list(range(n))
    step = max(1, n // 48)
    return sorted({0, 1, 2, n // 2, n - 2, n - 1, *range(3, n, step)})


def flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


async def enroll_call(
    stub: ingest_pb2_grpc.IngestStub, token: str, agent: str, key: nacl.signing.SigningKey
) -> Reply:
    request = ingest_pb2.EnrollRequest(token=token, agent=agent, public_key=bytes(key.verify_key))
    try:
        await stub.Enroll(request, timeout=20)
    except grpc.aio.AioRpcError as exc:
        reason = dict(exc.trailing_metadata() or ()).get("hush-reason", "")
        return Reply(exc.code().name, reason if isinstance(reason, str) else reason.decode())
    return Reply("OK")


async def test_misuse_is_refused_counted_audited_never_stored(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    c = Collector(tmp_path / "collector")
    c.init()
    for name in ("acme", "globex", "flood", "paused", "gone", "ruled"):
        c.ok("tenant", "create", name)
    c.ok("quota", "set", "acme", "--max-age", "1h", "--max-batch-bytes", "8192")
    c.ok("quota", "set", "flood", "--batches-per-second", "0.0001", "--burst", "3")
    a1, a2 = Signer("acme", "a1"), Signer("acme", "a2")
    r1, v1 = Signer("acme", "r1"), Signer("acme", "v1")
    g1, f1 = Signer("globex", "g1"), Signer("flood", "f1")
    p1, d1 = Signer("paused", "p1"), Signer("gone", "d1")
    u1 = Signer("ruled", "u1")  # governed: one approved policy, a revoked one, a cap of 3 batches a day
    for s in (a1, a2, r1, v1, g1, f1, p1, d1, u1):
        c.add_agent(s)
    c.ok("policy", "approve", "ruled", "--digest", batchkit.POLICY)
    c.ok("policy", "approve", "ruled", "--digest", REVOKED_POLICY)
    c.ok("policy", "revoke", "ruled", "--digest", REVOKED_POLICY)
    c.ok("policy", "cap", "ruled", "--rho-per-day", "0.03")  # batchkit batches declare 0.01 each
    c.ok("tenant", "suspend", "paused")
    c.ok("tenant", "delete", "gone")
    c.ok("key", "revoke", v1.key_id)
    unbound_token = c.ok("enroll-token", "acme").strip()  # a token holder trying to add a key to a1
    led = Ledger()

    async with c.serving() as stub:

        async def legit(s: Signer, **kw: object) -> dsse.Envelope:
            seq, payload, env = s.next(**kw)
            reply = await submit(stub, env)
            assert reply == Reply("OK"), reply
            led.legit.add((s.tenant, s.agent, seq, payload_digest(payload)))
            return env

        originals = [await legit(a1) for _ in range(3)]
        await legit(a2)
        await legit(r1)

        # -- tampering: payload bytes, signature bytes, key id ---------------------------------
        sample = a1.payload(rows=2)
        signed = a1.sign(sample)
        sig = signed.signatures[0]
        for i in positions(len(sample)):
            env = dsse.Envelope(flip(sample, i), signed.payload_type, signed.signatures)
            led.expect("tampered payload byte", await submit(stub, env), "UNAUTHENTICATED", "bad_signature")
        for i in positions(len(sig.sig)):
            env = dsse.Envelope(sample, signed.payload_type, (dsse.Signature(flip(sig.sig, i), sig.keyid),))
            led.expect("tampered signature byte", await submit(stub, env), "UNAUTHENTICATED", "bad_signature")
        for i in pick([0, 31, 63], range(64)):
            kid = sig.keyid[:i] + ("0" if sig.keyid[i] != "0" else "1") + sig.keyid[i + 1 :]
            env = dsse.Envelope(sample, signed.payload_type, (dsse.Signature(sig.sig, kid),))
            led.expect("tampered key id", await submit(stub, env), "UNAUTHENTICATED", "unknown_key")

        # -- forged signatures ---------------------------------------------------------------------
        attacker = nacl.signing.SigningKey.generate()
        forged_sigs = [
            bytes(64),
            bytes(range(64)),
            attacker.sign(dsse.pae(dsse.BATCH_PAYLOAD_TYPE, sample)).signature,
            a1.key.sign(dsse.pae(dsse.BATCH_PAYLOAD_TYPE, a1.payload(rows=3))).signature,  # other payload
            b"",
            sig.sig[:63],
            sig.sig + b"\x00",
        ]
        for forged in forged_sigs:
            env = dsse.Envelope(sample, signed.payload_type, (dsse.Signature(forged, a1.key_id),))
            led.expect("forged signature", await submit(stub, env), "UNAUTHENTICATED", "bad_signature")
        for sigs in ((), (sig,) * 9):
            env = dsse.Envelope(sample, signed.payload_type, sigs)
            led.expect("signature count", await submit(stub, env), "INVALID_ARGUMENT", "malformed")

        # -- keys: unknown, retired (batch created after retirement), revoked ----------------------
        stranger = Signer("acme", "a1", key=attacker)
        led.expect(
            "unknown key", await submit(stub, stranger.sign(a1.payload())), "UNAUTHENTICATED", "unknown_key"
        )
        ghost = Signer("nobody", "n1")
        led.expect(
            "unknown key", await submit(stub, ghost.sign(ghost.payload())), "UNAUTHENTICATED", "unknown_key"
        )
        retired_at = time.time()
        await c.aok("key", "retire", r1.key_id)
        await legit(r1, created=float(int(retired_at)) - 30)  # rotation: signed before retirement
        for k in range(pick(3, 20)):
            env = r1.sign(r1.payload(created=now_s() + 2 + k))
            led.expect(
                "retired key (created after)", await submit(stub, env), "UNAUTHENTICATED", "retired_key"
            )
        for _ in range(pick(3, 20)):
            env = v1.sign(v1.payload())
            led.expect("revoked key", await submit(stub, env), "UNAUTHENTICATED", "revoked_key")

        # -- payloadType swaps ---------------------------------------------------------------------
        for ptype in (dsse.MANIFEST_PAYLOAD_TYPE, "application/json", dsse.BATCH_PAYLOAD_TYPE.upper(), ""):
            env = a1.sign(sample, ptype)  # validly signed, but under another type
            led.expect("payloadType swap", await submit(stub, env), "INVALID_ARGUMENT", "payload_type")
            env = dsse.Envelope(sample, ptype, signed.signatures)  # type changed after signing
            led.expect("payloadType swap", await submit(stub, env), "INVALID_ARGUMENT", "payload_type")

        # -- replays: identical bytes are duplicates, different bytes under a used seq conflict ----
        replays = pick(20, 200)
        dup = 0
        for k in range(replays):
            reply = await submit(stub, originals[k % len(originals)])
            assert reply.code == "OK", reply
            dup += reply.duplicate
        assert dup == replays
        for seq in (1, 2, 3):
            env = a1.sign(a1.payload(seq=seq, label="conflict"))
            led.expect("conflicting replay", await submit(stub, env), "ALREADY_EXISTS", "conflict")

        # -- another tenant / another agent, suspended and deleted tenants --------------------------
        for env in (
            a1.sign(a1.payload(tenant="globex")),
            g1.sign(g1.payload(tenant="acme")),
            a1.sign(a1.payload(tenant="nobody")),
        ):
            led.expect(
                "claims another tenant", await submit(stub, env), "PERMISSION_DENIED", "tenant_mismatch"
            )
        for env in (a1.sign(a1.payload(agent="a2")), a2.sign(a2.payload(agent="a1"))):
            led.expect("claims another agent", await submit(stub, env), "PERMISSION_DENIED", "agent_mismatch")
        led.expect(
            "suspended tenant",
            await submit(stub, p1.sign(p1.payload())),
            "PERMISSION_DENIED",
            "tenant_suspended",
        )
        led.expect(
            "deleted tenant", await submit(stub, d1.sign(d1.payload())), "PERMISSION_DENIED", "tenant_deleted"
        )

        # -- governance: unapproved and revoked policy digests, ρ over the tenant's daily cap ---------
        for _ in range(3):
            await legit(u1)  # 3 x 0.01 = the cap, exactly
        for digest in ("ee" * 32, REVOKED_POLICY):  # never approved; approved, then revoked
            env = u1.sign(u1.payload(policy=digest))
            reply = await submit(stub, env)
            led.expect("policy not approved", reply, "FAILED_PRECONDITION", "policy_unapproved")
        for k in range(pick(3, 20)):
            env = u1.sign(u1.payload(label=f"over{k}"))
            led.expect("over the privacy cap", await submit(stub, env), "FAILED_PRECONDITION", "privacy_cap")

        # -- time: future-dated beyond the skew, older than the tenant's max age (1h) ---------------
        for delta in (3600, 86400 * 365, 10 * 365 * 86400):
            env = a1.sign(a1.payload(created=now_s() + delta))
            led.expect("future-dated", await submit(stub, env), "FAILED_PRECONDITION", "future_dated")
        for delta in (3700, 86400 * 30):
            env = a1.sign(a1.payload(created=now_s() - delta))
            led.expect("expired (max age)", await submit(stub, env), "FAILED_PRECONDITION", "too_old")

        # -- oversize: over the tenant's max batch bytes; over gRPC's frame limit ------------------
        big = a1.payload(rows=100)
        assert len(big) > 8192
        led.expect(
            "oversize (tenant limit)", await submit(stub, a1.sign(big)), "INVALID_ARGUMENT", "too_large"
        )
        huge = a1.sign(b"\x00" * (6 << 20))
        reply = await submit(stub, huge)
        led.expect("oversize (gRPC frame)", reply, "RESOURCE_EXHAUSTED", None)
        led.unaudited_transport += reply.code == "RESOURCE_EXHAUSTED" and not reply.reason

        # -- decoys: another tenant's public key id with a signature that does not verify, placed
        #    first to borrow that tenant's limits (globex has none) or to charge it the refusal --------
        def decoyed(env: dsse.Envelope, *under: str) -> dsse.Envelope:
            decoys = tuple(dsse.Signature(bytes(64), kid) for kid in under)
            return dsse.Envelope(env.payload, env.payload_type, (*decoys, *env.signatures))

        for under in ((g1.key_id,), (g1.key_id, f1.key_id), (p1.key_id,)):
            env = decoyed(a1.sign(a1.payload(rows=100)), *under)  # over acme's 8 KiB
            led.expect(
                "decoy key id (borrow limits)", await submit(stub, env), "INVALID_ARGUMENT", "too_large"
            )
            env = decoyed(a1.sign(a1.payload(created=now_s() - 7200)), *under)  # over acme's max age
            led.expect(
                "decoy key id (borrow limits)", await submit(stub, env), "FAILED_PRECONDITION", "too_old"
            )
        for _ in range(pick(3, 20)):
            env = decoyed(dsse.Envelope(sample, dsse.BATCH_PAYLOAD_TYPE, ()), g1.key_id)
            led.expect(
                "decoy key id (charge another)", await submit(stub, env), "UNAUTHENTICATED", "bad_signature"
            )
        both = a1.payload(seq=99)
        cosigned = dsse.Envelope(
            both, dsse.BATCH_PAYLOAD_TYPE, (*g1.sign(both).signatures, *a1.sign(both).signatures)
        )
        led.expect(
            "keys of two tenants co-sign",
            await submit(stub, cosigned),
            "PERMISSION_DENIED",
            "signer_mismatch",
        )

        # -- enrollment abuse: a second key for an existing agent; guessed tokens past the limit -----
        reply = await enroll_call(stub, unbound_token, "a1", stranger.key)
        led.expect("enroll a key for an existing agent", reply, "FAILED_PRECONDITION", "enroll_conflict")
        guess = unbound_token[:-1] + ("A" if unbound_token[-1] != "A" else "B")
        for _ in range(pick(14, 40)):
            reply = await enroll_call(stub, guess, "x9", nacl.signing.SigningKey.generate())
            if reply.reason == "enroll_rate_limited":
                led.expect("enroll flood past the limit", reply, "RESOURCE_EXHAUSTED", "enroll_rate_limited")
            else:
                led.expect("enroll with a guessed token", reply, "UNAUTHENTICATED", "enroll_token")
        assert led.attempts["enroll flood past the limit"] >= 3, led.attempts

        # -- flood past the rate limit (burst 3, refill 1 per ~3 hours) ------------------------------
        for _ in range(3):
            await legit(f1)
        for _ in range(pick(30, 300)):
            _, _, env = f1.next()
            led.expect("flood past rate limit", await submit(stub, env), "RESOURCE_EXHAUSTED", "rate_limited")
        assert c.alive()

    # -- bundles through `hush-collector import`: replays and hostile bundles ------------------------
    stamp = "2026-03-10T12:00:00Z"
    a1_envs = [(i + 1, e) for i, e in enumerate(originals)]
    fresh = [a2.next() for _ in range(2)]
    for seq, payload, _ in fresh:
        led.legit.add(("acme", "a2", seq, payload_digest(payload)))
    a2_envs = [(seq, env) for seq, _, env in fresh]
    files: dict[str, bytes] = {
        "replay-online.tar": bundle.write_bundle(
            a1_envs, tenant="acme", agent="a1", created=stamp, key=a1.key
        ),
        "fresh.tar": bundle.write_bundle(a2_envs, tenant="acme", agent="a2", created=stamp, key=a2.key),
    }
    expected_lines = {
        "replay-online.tar": (0, 3, {}),
        "fresh.tar": (2, 0, {}),
    }
    hostile: dict[str, tuple[bytes, str, int]] = {
        "other-tenant.tar": (
            bundle.write_bundle(a1_envs, tenant="globex", agent="a1", created=stamp, key=a1.key),
            "bundle_mismatch",
            1,
        ),
        "other-agent.tar": (
            bundle.write_bundle(a1_envs, tenant="acme", agent="a2", created=stamp, key=a1.key),
            "bundle_mismatch",
            1,
        ),
        "unknown-key.tar": (
            bundle.write_bundle(a1_envs, tenant="acme", agent="a1", created=stamp, key=attacker),
            "bundle_unknown_key",
            1,
        ),
        "revoked-key.tar": (
            bundle.write_bundle(
                [(1, v1.sign(v1.payload(seq=1)))], tenant="acme", agent="v1", created=stamp, key=v1.key
            ),
            "bundle_revoked_key",
            1,
        ),
        "not-a-tar.tar": (b"\x00" * 1024, "bundle_malformed", 1),
    }
    members = pick(40, 200)  # 1 MiB each once expanded, a few hundred KiB in the file
    for form, make in (("gnu", gnu_sparse_member), ("pax", pax_sparse_member)):
        body = b"".join(make(f"batches/{100 + i}.dsse.json") for i in range(members))
        hostile[f"sparse-{form}.tar"] = (
            strip_end(files["fresh.tar"]) + body + bytes(1024),
            "bundle_malformed",
            1,
        )
    good = files["replay-online.tar"]
    member = b'"payload":"'
    at = good.index(member, good.index(b"batches/2.dsse.json")) + len(member) + 5
    hostile["tampered-batch.tar"] = (flip(good, at), "bundle_hash_mismatch", 1)
    conflicting = [(1, a1.sign(a1.payload(seq=1, label="bundle-conflict")))]
    hostile["conflicting.tar"] = (
        bundle.write_bundle(conflicting, tenant="acme", agent="a1", created=stamp, key=a1.key),
        "conflict",
        1,
    )
    for name, (data, reason, n) in hostile.items():
        files[name] = data
        expected_lines[name] = (0, 0, {reason: n})
    expected_lines["tampered-batch.tar"] = (0, 2, {"bundle_hash_mismatch": 1})  # the 2 intact ones replay
    for name, data in files.items():
        (c.workdir / name).write_bytes(data)
    rounds = pick(2, 5)
    bundle_dups = 0
    for round_ in range(rounds):
        r = c.cli("import", *files)
        assert "Traceback" not in r.err, r.err
        assert r.code == 1, r  # hostile bundles were refused
        got = {}
        for line in r.out.splitlines():
            m = re.match(r"^(\S+): accepted (\d+), duplicate (\d+), refused (\d+)(?: \(([^)]*)\))?", line)
            assert m, line
            reasons = dict(
                (kv.split("=")[0], int(kv.split("=")[1])) for kv in (m.group(5) or "").split(", ") if kv
            )
            got[m.group(1)] = (int(m.group(2)), int(m.group(3)), reasons)
        for name, (acc, dup_, reasons) in expected_lines.items():
            if round_ and name == "fresh.tar":
                acc, dup_ = 0, 2  # re-import: duplicates only
            category = (
                "bundle re-import" if name in ("replay-online.tar", "fresh.tar") else f"bundle {name[:-4]}"
            )
            led.attempts[category] += 1
            bundle_dups += dup_
            if got.get(name) == (acc, dup_, reasons):
                led.refused[category] += bool(reasons)
                led.reasons.update(reasons)
            else:
                led.wrong.append(f"{name} round {round_}: got {got.get(name)}, want {(acc, dup_, reasons)}")

    # -- the evidence: nothing stored beyond the legitimate batches, usage and audit agree ----------
    assert not led.wrong, led.wrong
    stored = set(c.query("SELECT tenant, agent, seq, digest FROM batches"))
    extra = stored - led.legit
    assert stored == led.legit, (extra, led.legit - stored)
    usage = c.usage()
    counted: Counter[str] = Counter()
    for day in usage:
        counted.update(day["refused"])
    assert counted == led.reasons, (counted, led.reasons)
    metered = sum(d["batches"] for d in usage)
    assert metered == len(led.legit)
    assert sum(d["duplicates"] for d in usage) == replays + bundle_dups
    lines = c.audit_lines()  # also runs `audit verify`
    refusal_actions = ("batch.refused", "enroll.refused")
    audited = {(e.get("tenant"), e["details"]["reason"]) for e in lines if e.get("action") in refusal_actions}
    refused_pairs = {(d["tenant"], reason) for d in usage for reason in d["refused"]}
    assert refused_pairs <= audited, refused_pairs - audited
    assert not c.tracebacks()

    elapsed = time.monotonic() - started
    for category in sorted(led.attempts):
        figures.record(
            FAMILY,
            category,
            runs=led.attempts[category],
            faults=0 if category == "bundle re-import" else led.attempts[category],
            refused=led.refused[category],
        )
    hostile_attempts = sum(n for k, n in led.attempts.items() if k != "bundle re-import")
    hostile_refused = sum(n for k, n in led.refused.items() if k != "bundle re-import")
    assert hostile_attempts == hostile_refused
    figures.record(
        FAMILY,
        "TOTAL hostile",
        runs=hostile_attempts,
        faults=hostile_attempts,
        refused=hostile_refused,
        seconds=elapsed,
        stored=len(extra),
        counted_in_usage=sum(counted.values()),
        audited_reasons=f"{len(refused_pairs & audited)}/{len(refused_pairs)}",
        transport_refusals_not_audited=led.unaudited_transport,
    )
    figures.record(
        FAMILY,
        "replays (online + bundle)",
        runs=replays + bundle_dups,
        duplicated=metered - len(led.legit),
        acked_as_duplicate=sum(d["duplicates"] for d in usage),
    )
