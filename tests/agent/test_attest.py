"""Privacy attestations: what they state matches the ledgers, and any change breaks the signature."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nacl.signing
import pytest

from agent import attest, egress, ledger
from agent.policy import load_policy
from agent.state import open_state, transaction
from hushmetric.errors import ContractError, SignatureError

POLICY = load_policy(Path(__file__).resolve().parents[2] / "configs" / "policy.toml")


def test_statement_reflects_the_state_and_verifies(tmp_path: Path) -> None:
    conn = open_state(tmp_path, (attest.SCHEMA, ledger.SCHEMA, egress.SCHEMA))
    with transaction(conn):
        attest.add_redactions(conn, {"email": 3, "card": 1})
    with transaction(conn):
        attest.add_redactions(conn, {"email": 2, "ipv4": 0})
        egress.record(
            conn, destination="grpc:127.0.0.1:1", seq=1, digest="ab" * 32, nbytes=100, rows=4, at=1.0
        )
    key = nacl.signing.SigningKey.generate()
    public = bytes(key.verify_key)
    statement = attest.build(conn, POLICY, tenant="acme", agent="a1", public_key=public, now=1767571200)
    # exact, data-dependent counts stay local: in the state db for `status`, never in the statement
    assert attest.redaction_totals(conn) == {"card": 1, "email": 5}
    assert "redactions" not in json.loads(
        base64.b64decode(json.loads(attest.sign(statement, key))["payload"])
    )
    assert statement.egress.batches == 1
    assert statement.egress.rows == 4
    assert statement.egress.head
    assert statement.policy.digest
    assert statement.policy.mechanism == "zcdp"
    signed = attest.sign(statement, key)
    assert attest.verify(signed, public) == statement


def test_any_edit_or_another_key_is_refused(tmp_path: Path) -> None:
    conn = open_state(tmp_path, (attest.SCHEMA, ledger.SCHEMA, egress.SCHEMA))
    key = nacl.signing.SigningKey.generate()
    statement = attest.build(conn, POLICY, tenant="acme", agent="a1", public_key=bytes(key.verify_key), now=0)
    signed = attest.sign(statement, key)
    doc = json.loads(signed)
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["policy"]["cap"] = 1e9  # someone trying to look better
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(SignatureError):
        attest.verify(json.dumps(doc).encode(), bytes(key.verify_key))
    other = nacl.signing.SigningKey.generate()
    with pytest.raises(SignatureError):
        attest.verify(signed, bytes(other.verify_key))
    with pytest.raises(ContractError):
        attest.verify(b"not json", bytes(key.verify_key))
