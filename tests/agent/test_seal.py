"""agent.seal: a release becomes a signed v1 batch that verifies, decodes and chains."""

from __future__ import annotations

import itertools

import nacl.signing
import pytest

from agent.seal import Sealed, seal
from hushmetric import dsse
from hushmetric.batch import Noise, Privacy, Row, decode_batch, payload_digest
from hushmetric.errors import ContractError, SignatureError
from hushmetric.keys import key_id
from hushmetric.timefmt import parse_rfc3339

KEY = nacl.signing.SigningKey(b"\x01" * 32)
START = 1_767_225_600  # 2026-01-01T00:00:00Z


def make(seq: int, prev: str, *, key: nacl.signing.SigningKey = KEY, tenant: str = "acme") -> Sealed:
    return seal(
        tenant=tenant,
        agent="edge-1",
        seq=seq,
        prev=prev,
        created=START + 3600 + seq + 0.75,
        window=(START, START + 3600),
        policy_digest="ab" * 32,
        privacy=Privacy("user", rho=0.01),
        rows=[
            Row("visits", "count", {"page": "/home"}, 41.0, Noise("gaussian", 3.5)),
            Row("latency", "sum", {}, 1234.0, Noise("gaussian", 80.0)),
        ],
        key=key,
    )


def lookup(keyid: str) -> bytes | None:
    public = bytes(KEY.verify_key)
    return public if keyid == key_id(public) else None


def test_sealed_batch_verifies_and_decodes_to_what_was_released() -> None:
    sealed = make(1, "")
    assert sealed.envelope.payload_type == dsse.BATCH_PAYLOAD_TYPE
    assert sealed.envelope.payload == sealed.payload
    assert sealed.digest == payload_digest(sealed.payload)
    verified = dsse.verify(sealed.envelope, dsse.BATCH_PAYLOAD_TYPE, lookup)
    assert verified.keyid == key_id(bytes(KEY.verify_key))
    batch = decode_batch(verified.payload)
    assert (batch.v, batch.tenant, batch.agent, batch.seq, batch.prev) == (1, "acme", "edge-1", 1, "")
    assert batch.created == "2026-01-01T01:00:01Z"
    assert parse_rfc3339(batch.window.start) == START
    assert parse_rfc3339(batch.window.end) == START + 3600
    assert batch.policy == "ab" * 32
    assert batch.privacy == Privacy("user", rho=0.01)
    assert batch.redactions == {}  # exact counters never leave the site (wire v1 keeps the field)
    assert [r.metric for r in batch.rows] == ["visits", "latency"]
    assert batch.rows[0].noise == Noise("gaussian", 3.5)
    assert (sealed.seq, sealed.rows, sealed.window_start, sealed.window_end) == (1, 2, START, START + 3600)


def test_batches_chain_by_the_digest_of_the_previous_payload() -> None:
    chain: list[Sealed] = []
    prev = ""
    for seq in range(1, 5):
        chain.append(make(seq, prev))
        prev = chain[-1].digest
    for before, after in itertools.pairwise(chain):
        assert decode_batch(after.payload).prev == payload_digest(before.payload)
    assert len({s.digest for s in chain}) == 4


def test_sealing_is_deterministic_so_a_reseal_is_byte_identical() -> None:
    assert make(3, "cd" * 32) == make(3, "cd" * 32)


def test_a_flipped_payload_byte_no_longer_verifies() -> None:
    sealed = make(1, "")
    payload = bytearray(sealed.payload)
    payload[-1] ^= 1
    forged = dsse.Envelope(bytes(payload), sealed.envelope.payload_type, sealed.envelope.signatures)
    with pytest.raises(SignatureError):
        dsse.verify(forged, dsse.BATCH_PAYLOAD_TYPE, lookup)


@pytest.mark.parametrize(("seq", "prev"), [(0, ""), (1, "ab" * 32), (2, "")])
def test_impossible_chain_positions_are_refused(seq: int, prev: str) -> None:
    with pytest.raises(ValueError, match="seq"):
        make(seq, prev)


def test_a_batch_the_contract_would_refuse_is_refused_before_signing() -> None:
    with pytest.raises(ContractError):
        make(1, "", tenant="not a valid id")
