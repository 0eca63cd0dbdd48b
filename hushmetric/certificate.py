"""Agent certificates (issue 14): the statement ``hush-agent certify`` signs and the collector records.

A certificate says: *this agent key, under this policy, ran a config that passes these checks of
this deployment profile; its egress ledger stood at this head and its ledger had charged this much
privacy loss per budget period; valid from ``issued`` until ``valid_until``.* It is a DSSE JSON
envelope (payloadType :data:`CERTIFICATE_PAYLOAD_TYPE`) signed with the agent's Ed25519 key, so
anyone holding that public key can check it offline.

Every field is data-independent or a function of outputs that already left as DP releases: the
conformance result depends on the config only, the spend on the policy and the fixed window
schedule, and the egress head is a hash over batches that were released and charged already
(see docs/privacy.md). Nothing here counts events, units or redactions.

Decoding treats the bytes as hostile: the envelope and payload are size-bounded, every string and
list has a bound, numbers must be finite and non-negative, times must be RFC 3339 with an offset.
:func:`statement_problem` holds the pure checks a verifier runs on a decoded statement.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec
import nacl.signing

from hushmetric import dsse
from hushmetric.errors import ContractError
from hushmetric.keys import key_id
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "CERTIFICATE_PAYLOAD_TYPE",
    "MAX_CERTIFICATE_BYTES",
    "MAX_VALIDITY_SECONDS",
    "STATEMENT_VERSION",
    "Certificate",
    "Conformance",
    "EgressHead",
    "PeriodSpend",
    "ProfileCheck",
    "decode_statement",
    "encode_statement",
    "open_envelope",
    "sign_statement",
    "statement_problem",
    "verify_certificate",
]

CERTIFICATE_PAYLOAD_TYPE = "application/vnd.hushmetric.certificate.v1+json"
STATEMENT_VERSION = 1
#: A certificate file (the DSSE JSON envelope) is at most this large; real ones are about 2 KiB.
MAX_CERTIFICATE_BYTES = 64 << 10
#: The longest validity a statement may claim: a year and a month (renew at least yearly).
MAX_VALIDITY_SECONDS = 400 * 86400
_MAX_PERIODS = 400  # one entry per budget period the ledger has charged (days of a year and a bit)
_MAX_CHECKS = 32

_Hex64 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
# No control characters in any text (C0, DEL, C1): verifiers print these fields on terminals
# (``hush-collector certify verify|list``, reports), where an escape sequence could rewrite what an
# operator reads. ``\Z``, not ``$``, which would let a final newline through.
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f-\x9f]+\Z")]
_Time = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
_Text = Annotated[str, msgspec.Meta(max_length=300, pattern=r"^[^\x00-\x1f\x7f-\x9f]*\Z")]
_Amount = Annotated[float, msgspec.Meta(ge=0)]


class ProfileCheck(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One named rule of the profile and whether the config passed it (``problems``: config keys)."""

    name: _Name
    passed: bool
    problems: Annotated[list[_Text], msgspec.Meta(max_length=_MAX_CHECKS)] = []


class Conformance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    profile: _Name
    passed: bool
    checks: Annotated[list[ProfileCheck], msgspec.Meta(max_length=_MAX_CHECKS)]


class PeriodSpend(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the agent's ledger charged in one budget period (``measure``: rho or epsilon)."""

    period: _Name
    spent: _Amount
    cap: _Amount


class EgressHead(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    entries: Annotated[int, msgspec.Meta(ge=0)]
    head: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")]  # "" for an empty ledger


class Certificate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    agent: _Name
    tenant: _Name | None
    key_id: _Hex64
    public_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    profile: _Name
    policy_name: _Name
    policy_digest: _Hex64
    # closed vocabularies: the collector's contradiction check reads ``measure`` and
    # ``budget_period``, and an unknown word there would make it sum nothing
    mechanism: Literal["zcdp", "pure"]
    measure: Literal["rho", "epsilon"]  # what ``cap`` and ``spend`` count (zcdp: rho, pure: epsilon)
    budget_period: Literal["day", "week", "month"]  # the policy's budget period
    cap: _Amount  # the policy's cap per budget period
    conformance: Conformance
    egress: EgressHead
    spend: Annotated[list[PeriodSpend], msgspec.Meta(max_length=_MAX_PERIODS)]
    issued: _Time
    valid_until: _Time


_MEASURE = {"zcdp": "rho", "pure": "epsilon"}
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Certificate)


def encode_statement(cert: Certificate) -> bytes:
    return _encoder.encode(cert)


def decode_statement(payload: bytes) -> Certificate:
    """Decode a (verified) payload with bounds; ContractError for anything malformed."""
    if len(payload) > MAX_CERTIFICATE_BYTES:
        raise ContractError(f"certificate statement larger than {MAX_CERTIFICATE_BYTES} bytes")
    try:
        cert = _decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ContractError(f"malformed certificate: {exc}") from exc
    except UnicodeDecodeError as exc:  # msgspec raises it for a string that is not UTF-8
        raise ContractError("malformed certificate: a string is not valid UTF-8") from exc
    except RecursionError as exc:
        raise ContractError("malformed certificate: nested too deeply") from exc
    if cert.v != STATEMENT_VERSION:
        raise ContractError(f"unsupported certificate statement version {cert.v}")
    if cert.measure != _MEASURE[cert.mechanism]:
        raise ContractError(
            f"malformed certificate: mechanism {cert.mechanism} counts {_MEASURE[cert.mechanism]}"
        )
    for value in (cert.cap, *(x for p in cert.spend for x in (p.spent, p.cap))):
        if not math.isfinite(value):
            raise ContractError("malformed certificate: a privacy amount is not finite")
    for what, text in (("issued", cert.issued), ("valid_until", cert.valid_until)):
        try:
            parse_rfc3339(text)
        except ValueError as exc:
            raise ContractError(f"malformed certificate: {what} is not an RFC 3339 time") from exc
    return cert


def sign_statement(cert: Certificate, key: nacl.signing.SigningKey) -> bytes:
    """The DSSE JSON envelope of the statement, as written to a file or sent."""
    return dsse.to_json(dsse.sign(encode_statement(cert), CERTIFICATE_PAYLOAD_TYPE, key))


def open_envelope(data: bytes) -> dsse.Envelope:
    """Parse a certificate file (DSSE JSON) with bounds; nothing is verified yet."""
    return dsse.from_json(data, max_bytes=MAX_CERTIFICATE_BYTES)


def verify_certificate(envelope: dsse.Envelope, public_key: bytes) -> Certificate:
    """Check the signature against ``public_key`` and decode; ContractError/SignatureError if not."""
    wanted = key_id(public_key)
    verified = dsse.verify(
        envelope, CERTIFICATE_PAYLOAD_TYPE, lambda kid: public_key if kid == wanted else None
    )
    cert = decode_statement(verified.payload)
    if cert.key_id != wanted or cert.public_key != public_key:
        raise ContractError("the statement names another key than the one that signed it")
    return cert


def statement_problem(cert: Certificate, now: float) -> tuple[str, str] | None:
    """(reason code, one-line message) of what is wrong with a decoded statement at ``now``, or None.

    Codes: ``key_mismatch``, ``not_conforming``, ``overspent``, ``bad_validity``, ``not_yet_valid``,
    ``expired``.
    """
    if cert.key_id != key_id(cert.public_key):
        return "key_mismatch", "key_id is not the id of the public key in the statement"
    failed = [c.name for c in cert.conformance.checks if not c.passed]
    c = cert.conformance
    if not c.passed or failed or not c.checks or c.profile != cert.profile:
        return "not_conforming", f"config does not conform to {cert.profile}: {', '.join(failed) or '?'}"
    over = [p.period for p in cert.spend if p.spent > p.cap * (1 + 1e-9)]
    if over:  # the agent's ledger never charges past its cap: a statement saying so is inconsistent
        return "overspent", f"the statement's own spend exceeds its cap in {over[0][:40]}"
    issued, until = parse_rfc3339(cert.issued), parse_rfc3339(cert.valid_until)
    if not issued < until <= issued + MAX_VALIDITY_SECONDS:
        return "bad_validity", "valid_until must be after issued and at most 400 days later"
    if issued > now + 300:  # the clock skew online ingest allows
        return "not_yet_valid", f"issued in the future ({cert.issued})"
    if now >= until:
        return "expired", f"expired at {cert.valid_until}"
    return None
