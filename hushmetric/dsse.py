"""DSSE (Dead Simple Signing Envelope) with Ed25519, as the wire contract uses it.

``pae`` is the pure pre-authentication encoding; ``sign`` and ``verify`` wrap PyNaCl. The verifier
returns only bytes it verified, and rejects an unexpected payloadType before anything is decoded.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import msgspec
import nacl.exceptions
import nacl.signing

from hushmetric.errors import ContractError, SignatureError
from hushmetric.keys import key_id

__all__ = [
    "BATCH_PAYLOAD_TYPE",
    "MANIFEST_PAYLOAD_TYPE",
    "Envelope",
    "Signature",
    "Verified",
    "from_json",
    "pae",
    "sign",
    "to_json",
    "verify",
]

BATCH_PAYLOAD_TYPE = "application/vnd.hushmetric.batch.v1+msgpack"
MANIFEST_PAYLOAD_TYPE = "application/vnd.hushmetric.manifest.v1+json"
MAX_SIGNATURES = 8
_SIG_BYTES = 64


class Signature(msgspec.Struct, frozen=True):
    sig: bytes
    keyid: str


class Envelope(msgspec.Struct, frozen=True):
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]


class Verified(msgspec.Struct, frozen=True):
    """What a successful verification yields: the verified payload and the key that signed it."""

    payload: bytes
    keyid: str


def pae(payload_type: str, payload: bytes) -> bytes:
    """``"DSSEv1" SP len(type) SP type SP len(body) SP body`` with lengths in ASCII decimal bytes."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def sign(payload: bytes, payload_type: str, key: nacl.signing.SigningKey) -> Envelope:
    sig = key.sign(pae(payload_type, payload)).signature
    return Envelope(payload, payload_type, (Signature(sig, key_id(bytes(key.verify_key))),))


def verify(
    envelope: Envelope,
    expected_type: str,
    lookup: Callable[[str], bytes | None],
) -> Verified:
    """Verify ``envelope`` against the key that ``lookup(keyid)`` returns (raw 32 bytes, or None).

    The first signature by a known key that verifies wins. Raises ContractError for a wrong
    payloadType or malformed signature list, SignatureError when no signature verifies.
    """
    if envelope.payload_type != expected_type:
        raise ContractError(f"unexpected payloadType {envelope.payload_type[:80]!r}")
    if not envelope.signatures or len(envelope.signatures) > MAX_SIGNATURES:
        raise ContractError(f"envelope must carry 1..{MAX_SIGNATURES} signatures")
    message = pae(envelope.payload_type, envelope.payload)
    unknown: list[str] = []
    for s in envelope.signatures:
        public = lookup(s.keyid) if len(s.keyid) == 64 else None
        if public is None:
            unknown.append(s.keyid[:64])
            continue
        if len(s.sig) != _SIG_BYTES:
            continue
        try:
            nacl.signing.VerifyKey(public).verify(message, s.sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            continue
        return Verified(envelope.payload, s.keyid)
    if len(unknown) == len(envelope.signatures):
        raise SignatureError("signed by an unknown key", code="unknown_key")
    raise SignatureError("signature does not verify", code="bad_signature")


class _JsonSignature(msgspec.Struct, frozen=True):
    keyid: str
    sig: str


class _JsonEnvelope(msgspec.Struct, frozen=True, rename={"payload_type": "payloadType"}):
    payload: str
    payload_type: str
    signatures: list[_JsonSignature]


_json_decoder = msgspec.json.Decoder(_JsonEnvelope)
_json_encoder = msgspec.json.Encoder()


def _b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError(f"{what} is not standard base64") from exc


def to_json(envelope: Envelope) -> bytes:
    """DSSE's JSON form: base64 payload and signatures, ``payloadType`` spelled as in the spec."""
    return _json_encoder.encode(
        _JsonEnvelope(
            base64.b64encode(envelope.payload).decode("ascii"),
            envelope.payload_type,
            [_JsonSignature(s.keyid, base64.b64encode(s.sig).decode("ascii")) for s in envelope.signatures],
        )
    )


def from_json(data: bytes, *, max_bytes: int = 64 << 20) -> Envelope:
    if len(data) > max_bytes:
        raise ContractError(f"envelope larger than {max_bytes} bytes")
    try:
        raw = _json_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ContractError(f"not a DSSE JSON envelope: {exc}") from exc
    except UnicodeDecodeError as exc:  # msgspec raises it for a string that is not UTF-8
        raise ContractError("not a DSSE JSON envelope: a string is not valid UTF-8") from exc
    except RecursionError as exc:  # nesting (e.g. inside an ignored unknown key) past the stack
        raise ContractError("not a DSSE JSON envelope: nested too deeply") from exc
    if len(raw.signatures) > MAX_SIGNATURES:
        raise ContractError(f"envelope must carry at most {MAX_SIGNATURES} signatures")
    return Envelope(
        _b64(raw.payload, "payload"),
        raw.payload_type,
        tuple(Signature(_b64(s.sig, "signature"), s.keyid) for s in raw.signatures),
    )
