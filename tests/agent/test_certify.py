"""``hush-agent certify``'s pure parts: every profile rule maps to a named check, and the statement is
built from the config, policy, ledger and egress ledger only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import nacl.signing
import pytest

from agent import egress, ledger
from agent.certify import build, check_names, conformance, sign
from agent.config import AgentConfig, CollectorConfig, MqttSource
from agent.policy import load_policy, policy_digest
from agent.profiles import PROFILES, Violation, check_profile
from agent.state import open_state
from hushmetric.certificate import decode_statement, open_envelope, statement_problem, verify_certificate
from hushmetric.keys import key_id
from hushmetric.timefmt import parse_rfc3339
from tests.integration.agentkit import exact_policy

T0 = parse_rfc3339("2026-03-10T12:00:00Z")


def _everything_wrong() -> AgentConfig:
    """A config that breaks as many rules as there are, for every profile."""
    return msgspec.structs.replace(
        AgentConfig(tenant="t", agent="a"),
        key_file="/tmp/agent.key",
        secret_file="/tmp/agent.key",
        metrics_listen="0.0.0.0:9464",
        collector=CollectorConfig(endpoints=["8.8.8.8:443", "127.0.0.1:1"], ca_file="ca.pem"),
        sources=[MqttSource(host="10.0.0.5", username="u", ca_file="ca.pem")],
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_every_violation_has_a_named_check(profile: str) -> None:
    violations = check_profile(_everything_wrong(), profile)
    assert violations
    result = conformance(profile, violations, [Violation("key_file", "mode 0644")])
    names = [c.name for c in result.checks]
    assert names == check_names(profile)  # no "other": each rule of agent.profiles is named
    assert not result.passed
    failed = {c.name for c in result.checks if not c.passed}
    assert "secret-files" in failed
    assert "secret-file-modes" in failed
    assert "metrics-listen" in failed
    clean = conformance(profile, [], [])
    assert clean.passed
    assert all(c.passed for c in clean.checks)
    assert not any(c.problems for c in clean.checks)


def test_an_unknown_rule_is_reported_not_passed() -> None:
    result = conformance("vpc", [Violation("limits.something_new", "broken")], [])
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == ["other"]


def test_build_signs_what_the_ledgers_say(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(exact_policy())
    policy = load_policy(tmp_path / "policy.toml")
    conn: sqlite3.Connection = open_state(tmp_path, [egress.SCHEMA, ledger.SCHEMA])
    key = nacl.signing.SigningKey.generate()
    public = bytes(key.verify_key)
    cert = build(
        conn,
        policy,
        conformance("air-gap", [], []),
        tenant="acme",
        agent="a1",
        public_key=public,
        now=T0,
        valid_seconds=86400,
    )
    assert (cert.agent, cert.tenant, cert.key_id, cert.profile) == ("a1", "acme", key_id(public), "air-gap")
    assert cert.policy_digest == policy_digest(policy)
    assert cert.measure == "rho"
    assert (cert.egress.entries, cert.egress.head) == egress.head(conn)
    assert cert.spend == []
    assert parse_rfc3339(cert.valid_until) - parse_rfc3339(cert.issued) == 86400
    data = sign(cert, key)
    assert (
        verify_certificate(open_envelope(data), public)
        == cert
        == decode_statement(open_envelope(data).payload)
    )
    assert statement_problem(cert, T0 + 1) is None
    conn.close()


def test_a_certificate_entry_is_chained_and_never_a_switch_change(tmp_path: Path) -> None:
    conn = open_state(tmp_path, [egress.SCHEMA])
    with conn:
        egress.stop(conn, reason="audit", at=T0)
        egress.record_certificate(conn, destination="bundle:b.tar", digest="ab" * 32, nbytes=900, at=T0 + 1)
    assert egress.state(conn).stopped
    with conn:
        egress.resume(conn, at=T0 + 2)
        entry = egress.record_certificate(
            conn, destination="grpc:c:443", digest="cd" * 32, nbytes=901, at=T0 + 3
        )
    assert not egress.state(conn).stopped
    assert egress.verify(conn).ok
    assert "certificate -> grpc:c:443  901 bytes" in egress.format_entry(entry)
    assert egress.from_jsonl(egress.to_jsonl(egress.entries(conn)))[-1] == entry
    conn.close()
