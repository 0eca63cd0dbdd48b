"""DSSE and Ed25519 against published vectors: the DSSE spec's PAE example, RFC 8032 §7.1."""

from __future__ import annotations

import nacl.signing
import pytest

from hushmetric import dsse
from hushmetric.errors import ContractError, SignatureError
from hushmetric.keys import key_id

# RFC 8032 §7.1, TEST 1-3: (secret key, public key, message, signature), all hex.
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


def test_pae_vector_from_the_dsse_spec() -> None:
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert dsse.pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"
    assert dsse.pae("", b"") == b"DSSEv1 0  0 "


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    key = nacl.signing.SigningKey(bytes.fromhex(secret))
    assert bytes(key.verify_key).hex() == public
    assert key.sign(bytes.fromhex(message)).signature.hex() == signature
    key.verify_key.verify(bytes.fromhex(message), bytes.fromhex(signature))


def test_sign_verify_and_key_lookup() -> None:
    key = nacl.signing.SigningKey(bytes.fromhex(RFC8032[0][0]))
    public = bytes(key.verify_key)
    envelope = dsse.sign(b"payload", dsse.BATCH_PAYLOAD_TYPE, key)
    assert envelope.signatures[0].keyid == key_id(public)
    keys = {key_id(public): public}
    verified = dsse.verify(envelope, dsse.BATCH_PAYLOAD_TYPE, keys.get)
    assert (verified.payload, verified.keyid) == (b"payload", key_id(public))
    with pytest.raises(ContractError):
        dsse.verify(envelope, dsse.MANIFEST_PAYLOAD_TYPE, keys.get)
    with pytest.raises(SignatureError) as info:
        dsse.verify(envelope, dsse.BATCH_PAYLOAD_TYPE, {}.get)
    assert info.value.code == "unknown_key"
    tampered = dsse.Envelope(b"payloaD", envelope.payload_type, envelope.signatures)
    with pytest.raises(SignatureError) as info:
        dsse.verify(tampered, dsse.BATCH_PAYLOAD_TYPE, keys.get)
    assert info.value.code == "bad_signature"


def test_json_form_round_trips() -> None:
    key = nacl.signing.SigningKey.generate()
    envelope = dsse.sign(b"\x00\x01binary", dsse.BATCH_PAYLOAD_TYPE, key)
    text = dsse.to_json(envelope)
    assert b'"payloadType"' in text
    assert dsse.from_json(text) == envelope
    with pytest.raises(ContractError):
        dsse.from_json(b'{"payload": "***", "payloadType": "x", "signatures": []}')
