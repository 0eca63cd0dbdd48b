"""The certificate statement: codec round trips for any valid statement, hostile input refused with a
ContractError (never another exception), signature and statement checks."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import msgspec
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hushmetric import dsse
from hushmetric.certificate import (
    CERTIFICATE_PAYLOAD_TYPE,
    Certificate,
    Conformance,
    EgressHead,
    PeriodSpend,
    ProfileCheck,
    decode_statement,
    encode_statement,
    open_envelope,
    sign_statement,
    statement_problem,
    verify_certificate,
)
from hushmetric.errors import ContractError, SignatureError
from hushmetric.keys import key_id
from hushmetric.timefmt import format_rfc3339, parse_rfc3339

T0 = parse_rfc3339("2026-03-10T12:00:00Z")
names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
stamps = st.integers(0, 4_000_000_000).map(lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)))
amounts = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
checks = st.builds(ProfileCheck, name=names, passed=st.booleans(), problems=st.lists(names, max_size=3))
certificates = st.builds(
    Certificate,
    v=st.just(1),
    agent=names,
    tenant=st.one_of(st.none(), names),
    key_id=hex64,
    public_key=st.binary(min_size=32, max_size=32),
    profile=names,
    policy_name=names,
    policy_digest=hex64,
    mechanism=st.sampled_from(["zcdp", "pure"]),
    measure=st.sampled_from(["rho", "epsilon"]),
    budget_period=st.sampled_from(["day", "week", "month"]),
    cap=amounts,
    conformance=st.builds(
        Conformance, profile=names, passed=st.booleans(), checks=st.lists(checks, max_size=8)
    ),
    egress=st.builds(EgressHead, entries=st.integers(0, 2**40), head=st.one_of(st.just(""), hex64)),
    spend=st.lists(st.builds(PeriodSpend, period=names, spent=amounts, cap=amounts), max_size=5),
    issued=stamps,
    valid_until=stamps,
).map(lambda c: msgspec.structs.replace(c, measure="rho" if c.mechanism == "zcdp" else "epsilon"))


def make(key: nacl.signing.SigningKey, **over: Any) -> Certificate:
    public = bytes(key.verify_key)
    fields: dict[str, Any] = {
        "v": 1,
        "agent": "a1",
        "tenant": "acme",
        "key_id": key_id(public),
        "public_key": public,
        "profile": "air-gap",
        "policy_name": "demo",
        "policy_digest": "ab" * 32,
        "mechanism": "zcdp",
        "measure": "rho",
        "budget_period": "day",
        "cap": 1.0,
        "conformance": Conformance("air-gap", True, [ProfileCheck("secret-files", True)]),
        "egress": EgressHead(0, ""),
        "spend": [PeriodSpend("2026-03-10", 0.25, 1.0)],
        "issued": format_rfc3339(T0),
        "valid_until": format_rfc3339(T0 + 30 * 86400),
    }
    fields.update(over)
    return Certificate(**fields)


@given(certificates)
def test_any_valid_statement_round_trips(cert: Certificate) -> None:
    assert decode_statement(encode_statement(cert)) == cert


@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_refused_as_contract_errors(data: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode_statement(data)


_BAD: dict[str, Any] = {
    "v": 2,
    "agent": 7,
    "tenant": ["acme"],
    "key_id": "XYZ",
    "public_key": "AAAA",
    "issued": "yesterday",
    "cap": -1.0,
    "spend": [{"period": "d", "spent": "1", "cap": 1.0}],
    "conformance": {"profile": "p", "passed": True},
    "extra": 1,
    # the words the collector's contradiction check reads: unknown ones would make it sum nothing
    "mechanism": "gaussian",
    "measure": "Rho",
    "budget_period": "year",
}


@given(certificates, st.sampled_from(sorted(_BAD)))
def test_a_wrong_typed_or_unknown_field_is_refused(cert: Certificate, field: str) -> None:
    doc = msgspec.to_builtins(cert)
    doc[field] = _BAD[field]
    with pytest.raises(ContractError):
        decode_statement(msgspec.json.encode(doc))


def test_an_infinite_amount_is_refused() -> None:
    doc = msgspec.json.encode(make(nacl.signing.SigningKey.generate())).replace(b'"cap":1.0', b'"cap":1e999')
    with pytest.raises(ContractError, match="out of range"):
        decode_statement(doc)


def test_bounds_refuse_huge_fields() -> None:
    key = nacl.signing.SigningKey.generate()
    doc = msgspec.to_builtins(make(key))
    for field, value in (("agent", "x" * 129), ("public_key", "AAAA"), ("spend", [doc["spend"][0]] * 401)):
        bad = dict(doc, **{field: value})
        with pytest.raises(ContractError):
            decode_statement(msgspec.json.encode(bad))
    with pytest.raises(ContractError, match="larger"):
        decode_statement(b" " * (65 << 10))
    with pytest.raises(ContractError):
        open_envelope(b"{" * 100_000)


def test_signed_file_verifies_with_its_key_only() -> None:
    key, other = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    cert = make(key)
    data = sign_statement(cert, key)
    assert verify_certificate(open_envelope(data), bytes(key.verify_key)) == cert
    with pytest.raises(SignatureError):
        verify_certificate(open_envelope(data), bytes(other.verify_key))
    # signed by another key that names the first key's id: a forgery
    forged = dsse.sign(encode_statement(cert), CERTIFICATE_PAYLOAD_TYPE, other)
    forged = dsse.Envelope(
        forged.payload, forged.payload_type, (dsse.Signature(forged.signatures[0].sig, cert.key_id),)
    )
    with pytest.raises(SignatureError):
        verify_certificate(forged, bytes(key.verify_key))
    # a statement naming another key than the one that signed it
    with pytest.raises(ContractError, match="another key"):
        verify_certificate(open_envelope(sign_statement(make(other), key)), bytes(key.verify_key))


def test_statement_problems() -> None:
    key = nacl.signing.SigningKey.generate()
    assert statement_problem(make(key), T0 + 60) is None
    assert statement_problem(make(key), T0 + 31 * 86400) == (
        "expired",
        f"expired at {format_rfc3339(T0 + 30 * 86400)}",
    )
    failing = Conformance(
        "air-gap", False, [ProfileCheck("collector-endpoints", False, ["collector.endpoints[0]"])]
    )
    assert statement_problem(make(key, conformance=failing), T0)[0] == "not_conforming"  # type: ignore[index]
    assert statement_problem(make(key, valid_until=format_rfc3339(T0 + 401 * 86400)), T0)[0] == "bad_validity"  # type: ignore[index]
    assert statement_problem(make(key, issued=format_rfc3339(T0 + 3600)), T0)[0] == "not_yet_valid"  # type: ignore[index]
    assert statement_problem(make(key, key_id="00" * 32), T0)[0] == "key_mismatch"
    no_checks = Conformance("air-gap", True, [])
    assert statement_problem(make(key, conformance=no_checks), T0)[0] == "not_conforming"  # type: ignore[index]
    overspent = [PeriodSpend("2026-03-10", 1.5, 1.0)]
    assert statement_problem(make(key, spend=overspent), T0)[0] == "overspent"  # type: ignore[index]  # type: ignore[index]


@pytest.mark.parametrize(("mechanism", "measure"), [("zcdp", "epsilon"), ("pure", "rho")])
def test_a_measure_the_mechanism_does_not_count_is_refused(mechanism: str, measure: str) -> None:
    """A zCDP statement whose spend is "epsilon" would escape the collector's spend check (it sums
    what the batches declare in the named measure, and zCDP batches declare no epsilon)."""
    doc = msgspec.to_builtins(make(nacl.signing.SigningKey.generate()))
    doc["mechanism"], doc["measure"] = mechanism, measure
    with pytest.raises(ContractError, match="counts"):
        decode_statement(msgspec.json.encode(doc))


@pytest.mark.parametrize("text", ["on-prem\x1b[2J", "a\n", "a\x00", "a\x7f", "a\x9b31m"])
@pytest.mark.parametrize("where", ["agent", "tenant", "profile", "policy_name", "check", "problem", "period"])
def test_control_characters_are_refused_in_every_text(text: str, where: str) -> None:
    """Verifiers print these fields on terminals: an escape sequence there could rewrite what an
    operator reads (C0, DEL and C1, including a final newline, which ``$`` would have let through)."""
    doc = msgspec.to_builtins(make(nacl.signing.SigningKey.generate()))
    if where == "check":
        doc["conformance"]["checks"][0]["name"] = text
    elif where == "problem":
        doc["conformance"]["checks"][0]["problems"] = [text]
    elif where == "period":
        doc["spend"][0]["period"] = text
    else:
        doc[where] = text
    with pytest.raises(ContractError):
        decode_statement(msgspec.json.encode(doc))
